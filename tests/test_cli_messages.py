"""Issue 22, item 4: the command's messages name command-line options, not Python signatures."""

from __future__ import annotations

import sys

import pytest
from torchmetrics.classification import MulticlassAccuracy

import metricloss as ml
from metricloss import cli
from metricloss.tasks.base import TASKS
from metricloss.tasks.classification import ClassificationTask

TINY = ["--steps", "2", "--batches-per-step", "8", "--pool-size", "16", "--validation-batches", "8", "--quiet"]
SMALL = {"steps": 2, "batches_per_step": 8, "validation_batches": 8, "pool_size": 16, "gradient_probe": 0,
         "progress": False}
#: What each built-in family cannot be learned without, as its documentation states it.
REQUIRED = {"classification": ["--num-classes"], "ordinal": ["--num-classes"], "set": [],
            "pose": ["--num-keypoints", "--heatmap-size"], "sequence": ["--vocab-size", "--max-length"]}


def _learn_error(argv, tmp_path, capsys):
    code = cli.main(["learn", *argv, *TINY, "--out", str(tmp_path / "s.safetensors")])
    return code, capsys.readouterr().err


@pytest.mark.parametrize("family", sorted(f for f, flags in REQUIRED.items() if flags))
def test_learn_without_shape_options_names_the_options_the_family_needs(family, tmp_path, capsys):
    code, err = _learn_error(["--task", family], tmp_path, capsys)
    assert code == 2
    flags = " and ".join(REQUIRED[family])
    verb = "is" if len(REQUIRED[family]) == 1 else "are"
    assert f"{flags} {verb} required for --task {family} (or give --outputs FILE to read" in err
    assert "__init__" not in err and "positional argument" not in err


@pytest.mark.parametrize("family", sorted(TASKS))
def test_no_family_answers_a_missing_option_with_a_python_signature(family, tmp_path, capsys):
    """Every registered family, those added later included: the message names options, or learning starts."""
    code, err = _learn_error(["--task", family, "--batch-size", "8"], tmp_path, capsys)
    assert "__init__" not in err and "positional argument" not in err
    if code == 2:
        assert f"required for --task {family}" in err


def test_only_the_missing_options_are_named(tmp_path, capsys):
    code, err = _learn_error(["--task", "sequence", "--vocab-size", "12"], tmp_path, capsys)
    assert code == 2
    assert "--max-length is required for --task sequence (or give --outputs FILE to read it)" in err
    assert "--vocab-size" not in err


def test_a_new_family_gets_the_message_from_its_signature(monkeypatch, tmp_path, capsys):
    class TiledTask(ClassificationTask):
        name = "tiled"

        def __init__(self, num_classes: int, tile_size: int, stride: int = 1) -> None:
            super().__init__(num_classes)
            self.tile_size, self.stride = tile_size, stride

    monkeypatch.setitem(TASKS, "tiled", TiledTask)
    code, err = _learn_error(["--task", "tiled"], tmp_path, capsys)
    assert code == 2
    assert ("--num-classes and `tile_size` (no command-line option) are required for --task tiled (or give "
            "--outputs FILE to read them)") in err
    assert "stride" not in err


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    (tmp_path / "my_err.py").write_text(
        "from torchmetrics.classification import MulticlassAccuracy\n"
        "def error_rate(pred, target):\n"
        "    return float((pred.argmax(-1) != target).float().mean())\n"
        "acc = MulticlassAccuracy(num_classes=5, average='micro')\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.delitem(sys.modules, "my_err", raising=False)
    return tmp_path


def test_evaluate_a_user_function_file_says_how_to_give_it_and_accepts_it(user_module, capsys):
    out = user_module / "err.safetensors"
    assert cli.main(["learn", "--metric", "my_err:error_rate", "--lower-is-better", "--num-classes", "5", *TINY,
                     "--out", str(out)]) == 0
    capsys.readouterr()
    assert cli.main(["evaluate", str(out)]) == 2
    err = capsys.readouterr().err
    assert "learned for the metric 'error_rate', which is not a built-in metric of task 'classification'" in err
    assert "pass it with --metric module:function" in err
    # given again (its direction from the card: lower is better), it reproduces the card
    assert cli.main(["evaluate", str(out), "--metric", "my_err:error_rate"]) == 0
    assert "Reproduces the stored card" in capsys.readouterr().out


def test_evaluate_a_torchmetrics_file_says_how_to_give_it_and_accepts_an_object(user_module, capsys):
    sur = ml.learn(MulticlassAccuracy(num_classes=5, average="micro"), num_classes=5, seed=0, **SMALL)
    path = user_module / "tm.safetensors"
    sur.save(path)
    assert cli.main(["evaluate", str(path)]) == 2
    err = capsys.readouterr().err
    assert "'MulticlassAccuracy'" in err and "--metric module:function" in err
    assert cli.main(["evaluate", str(path), "--metric", "my_err:acc"]) == 0
    assert "Reproduces the stored card" in capsys.readouterr().out


def test_evaluate_names_the_fix_when_given_a_metric_class(user_module, capsys):
    ml.pretrained("classification-accuracy").save(user_module / "acc.safetensors")
    code = cli.main(["evaluate", str(user_module / "acc.safetensors"), "--metric",
                     "torchmetrics.classification:MulticlassAccuracy"])
    assert code == 2
    assert "is a class; name a function fn(pred, target) -> float or a metric object" in capsys.readouterr().err


def test_evaluate_of_a_builtin_file_needs_no_metric(tmp_path, capsys):
    ml.pretrained("classification-accuracy").save(tmp_path / "acc.safetensors")
    assert cli.main(["evaluate", str(tmp_path / "acc.safetensors"), "--batches", "16", "--batch-size", "32"]) == 0
    assert "metric accuracy" in capsys.readouterr().out


def test_learn_help_marks_the_options_each_family_needs(capsys):
    with pytest.raises(SystemExit):
        cli.main(["learn", "--help"])
    text = capsys.readouterr().out
    assert "shape options: --vocab-size (required) --max-length (required)" in text
    assert "shape options: --num-keypoints (required) --heatmap-size (required)" in text
    assert "shape options: --num-labels\n" in text  # set: binary scores without it
