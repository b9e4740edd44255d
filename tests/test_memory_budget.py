"""Issue 13, items 4 and 5 (core): learning and measurement sized by bytes against a memory budget, learned weights
never lost when measuring fails, and ``metricloss evaluate`` reproducing a report card exactly."""

from __future__ import annotations

import importlib

import pytest
import torch

import metricloss as ml
from metricloss import cli
from metricloss._memory import CHUNK_SHARE, DEFAULT_MEMORY_BUDGET, HELDOUT_SHARE, POOL_SHARE, parse_budget
from metricloss.evaluation import gradient_agreement, measure
from metricloss.metrics.base import as_metric
from metricloss.replay import card_batches, remeasure
from metricloss.tasks.base import get_task

learn_module = importlib.import_module("metricloss.learn")  # the module (``metricloss.learn`` is the function)
SMALL = {"steps": 6, "batches_per_step": 8, "validation_batches": 12, "eval_every": 3, "gradient_probe": 4,
         "progress": False}


@pytest.mark.parametrize(("given", "expected"), [
    (None, 2 * 1024**3), (1000, 1000), ("2GiB", 2 * 1024**3), ("512MiB", 512 * 1024**2), ("1.5 GB", 1_500_000_000),
    ("64kib", 65536), (3e6, 3_000_000)])
def test_parse_budget_reads_bytes_and_units(given, expected):
    assert parse_budget(given) == expected


@pytest.mark.parametrize(("given", "error"), [("2 parsecs", ValueError), ("", ValueError), (0, ValueError),
                                              (True, TypeError), ([1], TypeError)])
def test_parse_budget_refuses_bad_values_naming_the_argument(given, error):
    with pytest.raises(error, match="memory_budget"):
        parse_budget(given)


@pytest.mark.parametrize(("name", "kw", "batch"), [
    ("classification", {"num_classes": 7}, 16), ("pose", {"num_keypoints": 3, "heatmap_size": (8, 6)}, 4),
    ("set", {"num_labels": 3}, 10)])
def test_batch_nbytes_is_the_size_of_one_drawn_batch(name, kw, batch):
    task = get_task(name, **kw)
    pred, target = task.random_batches(3, batch, torch.Generator().manual_seed(0))
    assert task.batch_nbytes(batch) == pred[0].nbytes + target[0].nbytes
    if name == "classification":  # float32 logits and int64 targets
        assert task.batch_nbytes(batch) == batch * 7 * 4 + batch * 8


def test_a_tiny_budget_shrinks_the_pool_and_held_out_set_and_learning_still_works():
    task = get_task("classification", num_classes=5)
    nbytes = task.batch_nbytes(16)  # 16 * 5 * 4 + 16 * 8 = 448 bytes
    budget = 40 * nbytes  # the pool may take 20 batches, the held-out set 10
    sur = ml.learn("accuracy", num_classes=5, batch_size=16, memory_budget=budget, **SMALL)
    assert sur.report.settings["pool_size"] == int(budget * POOL_SHARE) // nbytes == 20
    assert sur.report.n_validation_batches == int(budget * HELDOUT_SHARE) // nbytes == 10
    assert sur.report.settings["memory_budget"] == budget
    assert -1 <= sur.report.spearman <= 1 and sur.report.steps == 6
    roomy = ml.learn("accuracy", num_classes=5, batch_size=16, pool_size=24, **SMALL)  # the default budget: as asked
    assert roomy.report.settings["pool_size"] == 24 and roomy.report.n_validation_batches == 12
    assert roomy.report.settings["memory_budget"] == DEFAULT_MEMORY_BUDGET


def test_a_budget_too_small_for_two_batches_is_a_clear_error():
    with pytest.raises(ValueError, match=r"`memory_budget` .* too small.*larger `memory_budget`"):
        ml.learn("accuracy", num_classes=5, batch_size=16, memory_budget=1000, **SMALL)


class _Counting:
    """A stacked loss that records how many batches each call saw."""

    def __init__(self, fn):
        self.fn, self.sizes = fn, []

    def __call__(self, pred, target):
        self.sizes.append(pred.shape[0])
        return self.fn(pred, target)


@pytest.mark.parametrize(("name", "kw", "batch", "directions"), [
    ("classification", {"num_classes": 6}, 8, 16), ("set", {}, 5, 5), ("sequence", {"vocab_size": 7, "max_length": 5},
                                                                       3, 3)])
def test_the_gradient_probe_under_a_budget_gives_the_unchunked_numbers(name, kw, batch, directions):
    task = get_task(name, **kw)
    met = as_metric(task.default_metric, None, task.metrics)
    pred, target = task.random_batches(40, batch, torch.Generator().manual_seed(2))
    with ml._rng.private_rng(0):
        net = task.build_net(**task.default_net_config())
    whole = _Counting(net)
    unchunked = gradient_agreement(whole, met, pred, target, directions=directions, chunk=64)
    tight = _Counting(net)
    budget = int(pred[0].nbytes * (5 * directions + 4) * 2 / CHUNK_SHARE)  # two batches' probe per chunk
    chunked = gradient_agreement(tight, met, pred, target, directions=directions, chunk=64, memory_budget=budget)
    assert whole.sizes == [40] and len(tight.sizes) > 2 and max(tight.sizes) <= 16  # it did run in chunks
    assert chunked == pytest.approx(unchunked, rel=1e-5, abs=1e-6)


def test_measure_under_a_tiny_budget_equals_the_default_measurement():
    task = get_task("classification", num_classes=6)
    met = as_metric("accuracy", None, task.metrics)
    heldout = task.random_batches(30, 16, torch.Generator().manual_seed(3))
    loss = _Counting(task.baseline)
    args = {"method": "baseline", "validation": "random batches (G_R)", "gradient_batches": 12}
    roomy = measure(loss, task, met, heldout, **args)
    assert loss.sizes[0] == 30
    loss.sizes.clear()
    tight = measure(loss, task, met, heldout, memory_budget=(heldout[0][0].nbytes + heldout[1][0].nbytes) * 4 * 3 * 8,
                    **args)
    assert loss.sizes[0] == 3 and sum(loss.sizes[:10]) == 30  # the stack's losses in chunks of 3
    for field in ("spearman", "kendall", "baseline_spearman", "gradient_agreement", "baseline_gradient_agreement"):
        assert getattr(tight, field) == pytest.approx(getattr(roomy, field), abs=1e-6), field


def test_the_verdict_under_a_tiny_budget_equals_the_default_one():
    # The verdict's random check and gradient comparison run in chunks sized by the budget; the numbers must not move.
    task = get_task("classification", num_classes=6)
    met = as_metric("accuracy", None, task.metrics)
    heldout = task.random_batches(30, 16, torch.Generator().manual_seed(3))
    rp, rt = task.random_batches(20, 16, torch.Generator().manual_seed(4))
    check = (rp, rt, met.oriented(met.evaluate(rp, rt)))
    with ml._rng.private_rng(0):
        net = task.build_net(**task.default_net_config())
    loss = _Counting(net)
    args = {"method": "surrogate", "validation": "held-out model outputs", "gradient_batches": 0,
            "real_outputs": True, "random_check": check}
    roomy = measure(loss, task, met, heldout, **args).verdict
    loss.sizes.clear()
    tight = measure(loss, task, met, heldout, memory_budget=(heldout[0][0].nbytes + heldout[1][0].nbytes) * 4 * 3 * 8,
                    **args).verdict
    assert max(loss.sizes) <= 3  # every forward, the random check's included, ran in chunks of at most 3 batches
    assert (tight.outcome, tight.real.outcome, tight.random.outcome) == (roomy.outcome, roomy.real.outcome,
                                                                         roomy.random.outcome)
    for part in ("real", "random"):
        for field in ("spearman", "baseline_spearman", "difference", "standard_error"):
            assert getattr(getattr(tight, part), field) == pytest.approx(getattr(getattr(roomy, part), field),
                                                                         abs=1e-6), (part, field)
    assert tight.gradient.norm_ratio == pytest.approx(roomy.gradient.norm_ratio, rel=1e-5)
    assert tight.gradient.cosine == pytest.approx(roomy.gradient.cosine, abs=1e-6)


def test_a_failure_measuring_the_report_keeps_the_learned_weights(monkeypatch, tmp_path):
    def out_of_memory(*args, **kwargs):
        raise MemoryError("simulated: the gradient probe could not allocate")

    monkeypatch.setattr(learn_module, "measure", out_of_memory)
    with pytest.raises(ml.MeasurementError, match=r"saved to .*metricloss\.load") as info:
        ml.learn("accuracy", num_classes=5, batch_size=16, pool_size=32, **SMALL)
    err = info.value
    assert isinstance(err.__cause__, MemoryError) and err.surrogate.report is None
    again = ml.load(err.path)
    for key, value in err.surrogate.net.state_dict().items():
        assert torch.equal(again.net.state_dict()[key], value)
    monkeypatch.undo()  # the same run measured normally ends with the same weights
    sur = ml.learn("accuracy", num_classes=5, batch_size=16, pool_size=32, **SMALL)
    assert all(torch.equal(sur.net.state_dict()[k], v) for k, v in again.net.state_dict().items())
    err.path.unlink()

    monkeypatch.setattr(learn_module, "measure", out_of_memory)
    with pytest.raises(ml.MeasurementError) as info:  # with a checkpoint: saved beside it
        ml.learn("accuracy", num_classes=5, batch_size=16, pool_size=32, checkpoint=tmp_path / "run.ckpt", **SMALL)
    assert info.value.path == tmp_path / "run.unmeasured.safetensors" and info.value.path.exists()


def _outputs(n=40, batch=16):
    pred, target = get_task("classification", num_classes=5).random_batches(n, batch,
                                                                            torch.Generator().manual_seed(7))
    return list(zip(pred, target, strict=True))


FIELDS = ("spearman", "kendall", "baseline_spearman", "baseline_kendall", "gradient_agreement",
          "baseline_gradient_agreement", "n_validation_batches", "batch_size", "validation")


@pytest.mark.parametrize("case", ["learned", "learned-outputs", "macro-f1", "uniloss", "nonparametric-outputs"])
def test_remeasure_reproduces_every_kind_of_report_exactly(case, tmp_path):
    outputs = _outputs() if case.endswith("outputs") else None
    common = {"num_classes": 5, "batch_size": 16}
    if case.startswith("learned") or case == "macro-f1":
        metric = "macro_f1" if case == "macro-f1" else "accuracy"
        loss = ml.learn(metric, outputs=outputs, pool_size=24, **common, **SMALL)
    elif case == "uniloss":
        loss = ml.build_uniloss("accuracy", validation_batches=6, **common)
    else:
        loss = ml.fit_nonparametric("accuracy", validation_batches=8, outputs=outputs,
                                    grid={"temperature": [1.0], "bandwidth": [1.0]}, **common)
    loss.save(tmp_path / "loss.safetensors")
    loaded = ml.load(tmp_path / "loss.safetensors")
    again = remeasure(loaded, outputs=outputs)
    tight = remeasure(loaded, outputs=outputs, memory_budget=4096)  # many chunks: the same up to float rounding
    for field in FIELDS:
        assert getattr(again, field) == getattr(loss.report, field), field
        if case.startswith("nonparametric") and "gradient" in field:
            continue  # its anchors are drawn per call of the loss: other chunks of the probe, other draws
        expected = getattr(loss.report, field)
        assert getattr(tight, field) == (pytest.approx(expected, abs=1e-6) if isinstance(expected, float) else expected)


def test_card_batches_of_an_outputs_card_need_the_outputs():
    sur = ml.learn("accuracy", outputs=_outputs(), pool_size=24, num_classes=5, batch_size=16, **SMALL)
    with pytest.raises(ValueError, match="--outputs FILE"):
        card_batches(sur)


def test_cli_evaluate_reproduces_the_card_by_default(tmp_path, capsys):
    path = tmp_path / "acc.safetensors"
    sur = ml.learn("accuracy", num_classes=5, batch_size=16, pool_size=24, **SMALL)
    sur.save(path)
    assert cli.main(["evaluate", str(path)]) == 0
    out = capsys.readouterr().out
    assert "Reproduces the stored card" in out and "12 batches of 16" in out
    assert f"| surrogate | {sur.report.spearman:.4f} | {sur.report.kendall:.4f} |" in out


def test_cli_evaluate_outputs_card_with_and_without_the_outputs(tmp_path, capsys):
    path, data = tmp_path / "acc.safetensors", tmp_path / "outputs.pt"
    outputs = _outputs()
    torch.save(outputs, data)
    sur = ml.learn("accuracy", outputs=outputs, num_classes=5, batch_size=16, pool_size=24, **SMALL)
    sur.save(path)
    assert cli.main(["evaluate", str(path), "--outputs", str(data)]) == 0
    assert "Reproduces the stored card" in capsys.readouterr().out
    assert cli.main(["evaluate", str(path)]) == 0
    out = capsys.readouterr().out
    assert "note: its card was measured on held-out model outputs" in out
    assert f"{sur.report.n_validation_batches} batches of 16 (random batches (G_R), seed 0)" in out


def test_cli_evaluate_fresh_batches_fit_the_budget(tmp_path, capsys):
    path = tmp_path / "acc.safetensors"
    ml.learn("accuracy", num_classes=5, batch_size=16, pool_size=24, **SMALL).save(path)
    nbytes = get_task("classification", num_classes=5).batch_nbytes(16)
    assert cli.main(["evaluate", str(path), "--batches", "100", "--memory-budget", str(40 * nbytes)]) == 0
    out = capsys.readouterr().out
    assert "note: 10 of the 100 batches asked for fit" in out and "10 batches of 16 (random batches (G_R)" in out
    assert cli.main(["evaluate", str(path), "--memory-budget", "lots"]) == 2
    assert "`--memory-budget` must be a number of bytes" in capsys.readouterr().err


def test_a_batch_too_large_for_the_budget_is_probed_a_group_of_directions_at_a_time(monkeypatch):
    task = get_task("classification", num_classes=8)
    met = as_metric("accuracy", None, task.metrics)
    pred, target = task.random_batches(6, 16, torch.Generator().manual_seed(0))
    with ml._rng.private_rng(0):
        net = task.build_net(**task.default_net_config())
    unchunked = gradient_agreement(net, met, pred, target, directions=16)
    evaluation = importlib.import_module("metricloss.evaluation")
    groups, original = [], evaluation.metric_changes

    def recording(metric, p, t, directions, sigma, gen):
        groups.append((p.shape[0], directions))
        return original(metric, p, t, directions, sigma, gen)

    monkeypatch.setattr(evaluation, "metric_changes", recording)
    budget = int(pred[0].nbytes * 24 / CHUNK_SHARE)  # room for 4 directions beside the batch's gradient and graph
    grouped = gradient_agreement(net, met, pred, target, directions=16, memory_budget=budget)
    assert groups == [(1, 4)] * 24  # each batch alone, 4 groups of 4 directions
    assert grouped == pytest.approx(unchunked, abs=1e-6)


def test_a_step_larger_than_the_budget_is_warned_about():
    nbytes = get_task("classification", num_classes=5).batch_nbytes(16)
    settings = {**SMALL, "steps": 1, "batches_per_step": 16}
    with pytest.warns(UserWarning, match=r"batches_per_step=16 .* more than `memory_budget`"):  # 16 > 10 batches
        ml.learn("accuracy", num_classes=5, batch_size=16, memory_budget=10 * nbytes, **settings)
