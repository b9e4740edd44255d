"""The parts of `learn()` tested directly: which batches each stage sees (tagged batches), the step's mixing
probability, early stopping counted exactly, the report's fields against independent values, the L1/L2 offset,
and a resumed run's whole history."""

from __future__ import annotations

import math
import sys

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st
from scipy.stats import kendalltau, spearmanr

import metricloss as ml
import metricloss._checkpoint  # the kill hook patches its write_atomic
import metricloss.learning.batches as batches_module
from metricloss._checks import check_int
from metricloss.evaluation import gradient_agreement, measure
from metricloss.learning import EarlyStopping, LearnSettings, TimedMetric, Trainer, prepare_batches
from metricloss.metrics.base import as_metric
from metricloss.metrics.classification import accuracy
from metricloss.objectives import approximation_objective
from metricloss.tasks.base import DEFAULT_STEPS, MIN_DEFAULT_STEPS, capped_steps
from metricloss.tasks.classification import ClassificationTask

C, B = 5, 16
TASK = ClassificationTask(C)
TAG = 1000.0  # pred[n, 0, 0] = TAG + batch id: a logit no random batch reaches, kept by relabelling


def _tagged_outputs(n: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    pred, target = TASK.random_batches(n, B, torch.Generator().manual_seed(5))
    pred[:, 0, 0] = TAG + torch.arange(n, dtype=pred.dtype)
    return list(zip(pred, target, strict=True))


def _tags(pred: torch.Tensor) -> set[int]:
    marks = pred[:, 0, 0]
    return {int(x - TAG) for x in marks[marks >= TAG]}


def _prepared(n_outputs: int | None = 40, **kw):
    settings = LearnSettings.resolve(TASK, **{"batch_size": B, "batches_per_step": 8, "pool_size": 32,
                                              "validation_batches": 64, **kw})
    metric = TimedMetric(as_metric("accuracy", None, TASK.metrics))
    outputs = _tagged_outputs(n_outputs) if n_outputs else None
    return settings, metric, prepare_batches(TASK, metric, settings, outputs, torch.Generator().manual_seed(0))


# ---------------------------------------------------------------------------------------------------------
# batch preparation: which batches each stage sees


@pytest.fixture
def regime_calls(monkeypatch) -> list:
    """The trained-model regime's inputs and outputs, ``(pred, made_pred, made_target)`` per call (its perturbations
    move the tags, so the tests look at what it was fed)."""
    calls = []

    def recorded(task, pred, target, generator):
        out = real(task, pred, target, generator)
        calls.append((pred.clone(), *out))
        return out

    real = batches_module.trained_regime
    monkeypatch.setattr(batches_module, "trained_regime", recorded)
    return calls


def test_heldout_model_outputs_are_never_learned_from(regime_calls):
    _, _, batches = _prepared()
    held, learning = _tags(batches.heldout[0]), _tags(batches.model[0])
    assert len(held) == 10 and len(learning) == 30  # a quarter held out
    assert held.isdisjoint(learning) and held | learning == set(range(40))
    assert len(regime_calls) == 1 and _tags(regime_calls[0][0]) <= learning  # the regime is fed the learning part


def test_half_the_pool_relabels_model_outputs_and_the_rest_is_random(regime_calls):
    _, _, batches = _prepared()
    pool_pred, pool_target, pool_values = batches.pool
    half = pool_pred.shape[0] // 2
    assert batches.relabelled == half == 16
    (fed, made_pred, made_target), = regime_calls
    assert all(int(p[0, 0]) >= TAG for p in fed) and fed.shape[0] == half  # the first half: made from model outputs
    assert torch.equal(pool_pred[:half], made_pred) and torch.equal(pool_target[:half], made_target)
    assert not any(int(p[0, 0]) >= TAG for p in pool_pred[half:])
    # the stored metric values are those of the (relabelled) pool batches, computed independently here
    expected = torch.tensor([accuracy(p, t) for p, t in zip(pool_pred, pool_target, strict=True)], dtype=torch.float64)
    torch.testing.assert_close(pool_values, expected, rtol=0, atol=0)


def test_without_outputs_every_batch_is_random_and_the_heldout_ones_are_fresh():
    _, _, batches = _prepared(n_outputs=None, validation_batches=12)
    assert batches.model is None and batches.p_random == 1.0 and batches.relabelled == 0
    assert batches.heldout[0].shape[0] == 12 and batches.validation == "random batches (G_R)"
    flat = {tuple(p.flatten()[:4].tolist()) for p in batches.pool[0]}
    assert not any(tuple(p.flatten()[:4].tolist()) in flat for p in batches.heldout[0])
    step = batches.draw(64, torch.Generator().manual_seed(1))
    assert bool(step.from_random.all())


@pytest.mark.parametrize("p_random", [0.0, 0.2, 0.9])
def test_each_step_draws_from_the_pool_with_probability_p_random(p_random):
    _, _, batches = _prepared(p_random=p_random)
    assert batches.p_random == p_random
    gen = torch.Generator().manual_seed(2)
    draws = [batches.draw(50, gen) for _ in range(40)]
    share = float(torch.cat([d.from_random for d in draws]).float().mean())
    assert abs(share - p_random) < 0.04  # 2000 Bernoulli draws: 4 standard deviations at p = 0.5 is 0.045
    for d in draws[:5]:  # each batch is exactly the indexed pool / learning batch, with its metric value
        for k in range(50):
            src = batches.pool if bool(d.from_random[k]) else batches.model
            assert torch.equal(d.pred[k], src[0][d.index[k]]) and torch.equal(d.target[k], src[1][d.index[k]])
            assert d.values[k] == src[2][d.index[k]]
        assert _tags(d.pred[~d.from_random]).isdisjoint(_tags(batches.heldout[0]))


def test_l1_l2_offset_is_the_best_learning_metric_value():
    _, _, batches = _prepared()
    values = [accuracy(p, t) for part in (batches.pool, batches.model) for p, t in zip(part[0], part[1], strict=True)]
    assert batches.offset == max(values)
    losses = batches.offset - batches.pool[2]  # the exact fit: error zero
    assert float(approximation_objective(losses.float(), batches.pool[2], "l2", batches.offset)) == 0.0
    assert float(approximation_objective(losses.float(), batches.pool[2], "l1", batches.offset)) == 0.0


def test_learn_reports_the_offset_fit_on_learning_batches():
    # An L2 surrogate fits `offset - metric`: on the held-out batches its losses must sit near 1 - accuracy
    # (the best learning batch has accuracy 1 in this pool), not near -accuracy or 2 - accuracy.
    sur = ml.learn("accuracy", num_classes=C, batch_size=B, objective="l2", steps=80, batches_per_step=16,
                   pool_size=128, validation_batches=32, eval_every=20, patience=3, penalty=0.0, progress=False,
                   gradient_probe=0, seed=0)
    pred, target = TASK.random_batches(64, B, torch.Generator().manual_seed(77))
    err = sur.batch_losses(pred, target) - (1 - torch.tensor([accuracy(p, t) for p, t in zip(pred, target,
                                                                                           strict=True)]))
    assert float(err.abs().mean()) < 0.2


# ---------------------------------------------------------------------------------------------------------
# the trainer: validation batches, early stopping


def _trainer(**kw) -> Trainer:
    settings, metric, batches = _prepared(**kw)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = TASK.build_net(**settings.net_config)
    return Trainer(model, metric, batches, settings, torch.Generator().manual_seed(0))


def test_validation_scores_the_heldout_batches():
    trainer = _trainer()
    v_pred, v_target, _ = trainer.batches.heldout
    trainer.model.eval()
    with torch.no_grad():
        losses = trainer.model(v_pred, v_target)
    trainer.model.train()
    acc = [accuracy(p, t) for p, t in zip(v_pred, v_target, strict=True)]
    assert trainer.validate() == pytest.approx(spearmanr(-losses.numpy(), acc)[0], abs=1e-9)


def test_step_moves_the_weights_and_counts():
    trainer = _trainer()
    before = [p.detach().clone() for p in trainer.model.parameters()]
    obj = trainer.step()
    assert trainer.steps == 1 and torch.isfinite(obj)
    assert any(not torch.equal(a, b) for a, b in zip(before, trainer.model.parameters(), strict=True))


@pytest.mark.parametrize(("scores", "patience", "stops_after", "best"), [
    ([0.1, 0.2, 0.2, 0.2], 2, 4, 2),          # two evaluations without improvement: stop at the 4th
    ([0.1, 0.2, 0.25, 0.2, 0.2, 0.2], 3, 6, 3),
    ([0.5, 0.5 + 5e-5, 0.4], 2, 3, 1),         # an improvement below min_delta (1e-4) does not count
    ([0.3, 0.2, 0.4, 0.3], 2, None, 3),       # the count restarts at an improvement
])
def test_early_stopping_counts_exactly(scores, patience, stops_after, best):
    stop = EarlyStopping(patience)
    calls = []
    for i, s in enumerate(scores, start=1):
        done = stop.update(i, s, 0.0, lambda i=i: calls.append(i) or {"w": torch.tensor(float(i))})
        assert done == (stops_after is not None and i >= stops_after)
        if done:
            break
    assert stop.best_step == best and float(stop.best_state["w"]) == best and calls[-1] == best
    assert [h["step"] for h in stop.history] == list(range(1, (stops_after or len(scores)) + 1))


def test_trainer_stops_after_patience_evaluations(monkeypatch):
    trainer = _trainer(eval_every=3, patience=2, steps=100)
    scores = iter([0.1, 0.2, 0.15, 0.19, 0.3])
    monkeypatch.setattr(trainer, "validate", lambda: next(scores))
    trainer.run()
    assert trainer.steps == 12  # evaluations at 3, 6 (best), 9, 12: stop
    assert trainer.stopping.best_step == 6 and [h["step"] for h in trainer.stopping.history] == [3, 6, 9, 12]


# ---------------------------------------------------------------------------------------------------------
# measure(): the report's fields against independent values


def _neg_ce(pred: torch.Tensor, target: torch.Tensor) -> float:
    return -float(F.cross_entropy(pred, target))


def test_measure_matches_scipy_and_direct_gradient_probes():
    metric = as_metric(_neg_ce, None, TASK.metrics)
    pred, target = TASK.random_batches(40, B, torch.Generator().manual_seed(3))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        sur = ml.Surrogate(TASK, TASK.build_net(**TASK.default_net_config()), TASK.default_net_config())
    rep = measure(sur, TASK, metric, (pred, target), method="spearman", validation="test", gradient_batches=12,
                  gradient_loss=sur.net, sigma=0.3, seed=4)
    m = [_neg_ce(p, t) for p, t in zip(pred, target, strict=True)]
    ours = -sur.batch_losses(pred, target).numpy()
    assert rep.spearman == pytest.approx(spearmanr(ours, m)[0], abs=1e-9)
    assert rep.kendall == pytest.approx(kendalltau(ours, m)[0], abs=1e-9)
    # the metric is minus the baseline loss: the baseline orders the batches exactly
    assert rep.baseline_spearman == pytest.approx(1.0, abs=1e-12) and rep.baseline_kendall == pytest.approx(1.0)
    assert rep.baseline_gradient_agreement == gradient_agreement(TASK.baseline, metric, pred[:12], target[:12],
                                                                 sigma=0.3, seed=4)
    assert rep.gradient_agreement == gradient_agreement(sur.net, metric, pred[:12], target[:12], sigma=0.3, seed=4)
    assert rep.baseline_gradient_agreement > 0.9 > rep.gradient_agreement  # the CE gradient predicts -CE's change
    assert (rep.n_validation_batches, rep.batch_size, rep.baseline) == (40, B, "cross-entropy")


def test_learn_report_baseline_is_measured_on_its_heldout_batches():
    # With a metric equal to minus the baseline loss, the baseline ranks the report's batches perfectly, and
    # its gradient agreement is that of cross-entropy, not of the surrogate.
    outputs = _tagged_outputs(40)
    for p, _ in outputs:
        p[0, 0] = 0.0  # no tags here: real logits
    sur = ml.learn(_neg_ce, num_classes=C, outputs=outputs, steps=10, batch_size=B, batches_per_step=8,
                   pool_size=32, eval_every=5, progress=False, gradient_probe=8, seed=0)
    rep = sur.report
    assert rep.baseline_spearman == pytest.approx(1.0, abs=1e-12) and rep.baseline_kendall == pytest.approx(1.0)
    assert rep.validation == "held-out model outputs" and rep.n_validation_batches == 10
    assert rep.baseline_gradient_agreement > 0.9
    assert rep.gradient_agreement != rep.baseline_gradient_agreement


# ---------------------------------------------------------------------------------------------------------
# checkpoints: a resumed run is the uninterrupted one


class _Killed(Exception):
    pass


def test_resume_from_a_kill_point_that_is_not_the_best_step_repeats_the_whole_history(tmp_path, monkeypatch):
    kw = {"num_classes": C, "batch_size": B, "steps": 60, "batches_per_step": 8, "pool_size": 32,
          "validation_batches": 16, "eval_every": 4, "patience": 1000, "progress": False, "gradient_probe": 0,
          "seed": 2, "outputs": [(p, t) for p, t in zip(*TASK.random_batches(40, B, torch.Generator().manual_seed(8)),
                                                        strict=True)]}
    fresh = ml.learn("accuracy", **kw)
    kill_after = 2  # the 2nd checkpoint is written at step 8
    assert fresh.report.best_step > kill_after * kw["eval_every"]  # the best step comes after the kill point

    module = sys.modules["metricloss._checkpoint"]
    real, writes = module.write_atomic, []

    def dying_write(*args, **kwargs):
        real(*args, **kwargs)
        writes.append(1)
        if len(writes) == kill_after:
            raise _Killed

    ckpt = tmp_path / "progress.safetensors"
    monkeypatch.setattr(module, "write_atomic", dying_write)
    with pytest.raises(_Killed):
        ml.learn("accuracy", checkpoint=ckpt, **kw)
    monkeypatch.setattr(module, "write_atomic", real)
    resumed = ml.learn("accuracy", checkpoint=ckpt, **kw)
    assert resumed.report.history == fresh.report.history  # every step, score and objective value
    assert resumed.report.best_step == fresh.report.best_step
    sa, sb = resumed.net.state_dict(), fresh.net.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


# ---------------------------------------------------------------------------------------------------------
# settings


@pytest.mark.parametrize(("kw", "name"), [
    ({"lr": -5}, "lr"), ({"weight_decay": -1e-4}, "weight_decay"), ({"penalty": float("nan")}, "penalty"),
    ({"steps": True}, "steps"), ({"seed": 1.5}, "seed"), ({"progress": "yes"}, "progress"),
    ({"pool_size": 1}, "pool_size"), ({"gradient_weight": -1}, "gradient_weight"), ({"net": [1]}, "net"),
    ({"p_random": 1.5}, "p_random"), ({"eval_every": 0}, "eval_every"), ({"objective": "mse"}, "objective"),
])
def test_settings_reject_nonsense_naming_the_argument(kw, name):
    with pytest.raises((TypeError, ValueError), match=f"`{name}`"):
        LearnSettings.resolve(TASK, **kw)


def test_settings_fill_the_task_defaults():
    s = LearnSettings.resolve(TASK)
    assert (s.batch_size, s.batches_per_step, s.max_steps) == (TASK.default_batch_size,
                                                               TASK.default_batches_per_step, 2000)
    assert s.net_config == TASK.default_net_config() and s.report_method == "spearman"
    g = LearnSettings.resolve(TASK, objective="gradient")
    assert g.gradient_weight == 1.0 and g.net_config["absolute"] is False and g.report_method == "gradient"


@pytest.mark.parametrize(("family", "kw", "expected"), [
    ("classification", {"num_classes": 10}, 2000), ("classification", {"num_classes": 1000}, 100),
    ("classification", {"num_classes": (2, 1000)}, 100), ("classification", {"num_classes": 100_000}, 50),
    ("ordinal", {"num_classes": 20}, 2000), ("set", {}, 2000),
    ("pose", {"num_keypoints": 17, "heatmap_size": (64, 48)}, 80),
    ("pose", {"num_keypoints": 17, "heatmap_size": (96, 72)}, 50),
    ("sequence", {"vocab_size": 32000, "max_length": 128}, 100),
    ("sequence", {"vocab_size": 32, "max_length": 24}, 533),
])
def test_default_steps_shrink_with_the_size_of_a_steps_batches(family, kw, expected):
    """The bound ``learn`` uses without ``steps=``: elements per step (N x B x C logits, N x B x K x H x W pixels,
    N x B x T positions) times the steps within the family's budget, between 50 and 2000 (hand-computed values)."""
    task = ml.tasks.get_task(family, **kw)
    assert task.default_steps == expected
    assert LearnSettings.resolve(task).max_steps == expected
    assert LearnSettings.resolve(task, steps=7).max_steps == 7


@given(st.integers(1, 10**12), st.integers(1, 10**12), st.floats(1.0, 1e13))
def test_capped_steps_is_bounded_and_never_grows_with_the_step(a, b, budget):
    small, large = sorted((a, b))
    assert MIN_DEFAULT_STEPS <= capped_steps(large, budget) <= capped_steps(small, budget) <= DEFAULT_STEPS
    assert LearnSettings.resolve(TASK, gradient_weight=0.5).report_method == "spearman+gradient"


def test_check_int():
    assert check_int(0, "n", 0) == 0 and check_int(-3, "n") == -3
    for bad in (True, 1.0, "1", None, -1):
        with pytest.raises(ValueError, match=r"`n` must be an integer >= 0"):
            check_int(bad, "n", 0)
    assert math.isfinite(check_int(10**9, "n", 1))
