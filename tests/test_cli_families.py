"""Issue 13, item 5 (part): ``metricloss learn`` on every family, its help, user metrics and outputs files."""

from __future__ import annotations

import sys

import pytest
import torch

import metricloss as ml
from metricloss import cli
from metricloss.tasks.base import TASKS, get_task

TINY = ["--steps", "2", "--batches-per-step", "8", "--pool-size", "16", "--validation-batches", "8", "--quiet"]
SHAPES = {
    "classification": (["--num-classes", "6"], {"num_classes": 6}),
    "ordinal": (["--num-classes", "4"], {"num_classes": 4}),
    "set": (["--num-labels", "3"], {"num_labels": 3}),
    "pose": (["--num-keypoints", "3", "--heatmap-size", "12", "10"], {"num_keypoints": 3, "heatmap_size": [12, 10]}),
    "sequence": (["--vocab-size", "12", "--max-length", "9"], {"vocab_size": 12, "max_length": 9}),
}


def test_learn_help_lists_every_family_its_metrics_and_every_shape_option(capsys):
    with pytest.raises(SystemExit):
        cli.main(["learn", "--help"])
    text = capsys.readouterr().out
    for option in cli.SHAPE_OPTIONS:
        assert option in text
    assert "module:function" in text
    for name in TASKS:
        assert name in text
    for name, (_, config) in SHAPES.items():
        for metric in get_task(name, **config).metrics:
            assert metric in text, (name, metric)


@pytest.mark.parametrize("family", sorted(SHAPES))
def test_cli_learn_every_family_with_its_shape_options(family, tmp_path, capsys):
    options, config = SHAPES[family]
    out = tmp_path / "s.safetensors"
    batch = ["--batch-size", "4"] if family in ("pose", "sequence") else []
    assert cli.main(["learn", "--task", family, *options, *batch, *TINY, "--out", str(out)]) == 0
    sur = ml.load(out)
    assert sur.task.name == family
    assert {k: sur.task.config()[k] for k in config} == config
    assert sur.report.metric == get_task(family, **{k: tuple(v) if isinstance(v, list) else v
                                                    for k, v in config.items()}).default_metric


def test_cli_rejects_a_shape_option_of_another_family(tmp_path, capsys):
    code = cli.main(["learn", "--task", "classification", "--vocab-size", "10", *TINY,
                     "--out", str(tmp_path / "s.safetensors")])
    assert code == 2
    err = capsys.readouterr().err
    assert "`--vocab-size` is not a shape option of task 'classification'" in err and "--num-classes" in err


def test_cli_user_metric_and_outputs_file_infer_the_shapes(tmp_path, monkeypatch, capsys):
    (tmp_path / "my_metrics.py").write_text(
        "def error_rate(pred, target):\n"
        "    return float((pred.argmax(-1) != target).float().mean())\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.delitem(sys.modules, "my_metrics", raising=False)
    g = torch.Generator().manual_seed(0)
    task = get_task("classification", num_classes=9)
    batches = [(p[0], t[0]) for p, t in (task.random_batches(1, 40, g) for _ in range(12))]
    torch.save(batches, tmp_path / "outputs.pt")
    out = tmp_path / "s.safetensors"
    code = cli.main(["learn", "--metric", "my_metrics:error_rate", "--lower-is-better", "--outputs", "outputs.pt",
                     "--batch-size", "16", *TINY, "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    sur = ml.load(out)
    assert sur.task.config() == {"num_classes": 9}
    assert sur.report.metric == "error_rate"


@pytest.mark.parametrize("spec,match", [
    ("no_such_module_xyz:f", "cannot import module 'no_such_module_xyz'"),
    ("metricloss:no_such_function", "has no callable 'no_such_function'"),
    (":f", "expected a built-in name or module:function"),
])
def test_cli_bad_user_metric_is_a_clear_error(spec, match, tmp_path, capsys):
    assert cli.main(["learn", "--metric", spec, "--num-classes", "3", *TINY,
                     "--out", str(tmp_path / "s.safetensors")]) == 2
    assert match in capsys.readouterr().err


def test_cli_outputs_file_that_is_not_batches(tmp_path, capsys):
    torch.save({"a": torch.zeros(2)}, tmp_path / "bad.pt")
    assert cli.main(["learn", "--outputs", str(tmp_path / "bad.pt"), *TINY,
                     "--out", str(tmp_path / "s.safetensors")]) == 2
    assert "expected a list of (pred, target) batches" in capsys.readouterr().err


def test_cli_evaluate_with_a_user_metric_matches_the_builtin(tmp_path, monkeypatch, capsys):
    (tmp_path / "my_err.py").write_text(
        "def error_rate(pred, target):\n"
        "    return float((pred.argmax(-1) != target).float().mean())\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delitem(sys.modules, "my_err", raising=False)
    ml.pretrained("classification-accuracy").save(tmp_path / "acc.safetensors")
    common = ["evaluate", str(tmp_path / "acc.safetensors"), "--batches", "32", "--batch-size", "64"]
    assert cli.main([*common, "--metric", "accuracy"]) == 0
    builtin = capsys.readouterr().out.split("Stored report card")[0]
    assert cli.main([*common, "--metric", "my_err:error_rate", "--lower-is-better"]) == 0
    user = capsys.readouterr().out.split("Stored report card")[0]
    # error rate = 1 - accuracy, lower is better: the same order, so the same table rows
    assert builtin.split("\n\n", 1)[1] == user.split("\n\n", 1)[1]
