"""Every bad input we try on the public API, with the error it must raise.

``tests/test_reliability.py`` asserts each row; run as a script, this file prints the table in
``docs/reliability.md`` from a real run::

    .venv/bin/python tests/bad_inputs.py
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import torch

import metricloss as ml
from metricloss.metrics import MetricError

QUICK = {"steps": 3, "batches_per_step": 8, "batch_size": 16, "pool_size": 16, "validation_batches": 8,
         "progress": False}


@dataclass(frozen=True)
class Case:
    where: str
    what: str
    call: Callable[[], object]
    error: type[BaseException]
    match: str


@functools.lru_cache(maxsize=1)
def _sur() -> ml.Surrogate:
    return ml.pretrained("classification-accuracy")


def _lsed() -> ml.Surrogate:
    task = ml.tasks.get_task("classification", num_classes=10)
    return ml.Surrogate(task, task.build_net(kind="lsed"), {"kind": "lsed"})


def _logits(b: int = 8, c: int = 10) -> torch.Tensor:
    return torch.randn(b, c)


def _y(b: int = 8, c: int = 10) -> torch.Tensor:
    return torch.randint(0, c, (b,))


def _nan() -> torch.Tensor:
    z = _logits()
    z[0, 0] = float("nan")
    return z


def _inf() -> torch.Tensor:
    z = _logits()
    z[1, 2] = float("inf")
    return z


def _learn_with(metric: Callable, **kw: object) -> Callable[[], object]:
    return lambda: ml.learn(metric, num_classes=4, **{**QUICK, **kw})


def _raising(p: torch.Tensor, t: torch.Tensor) -> float:
    raise ZeroDivisionError("boom")


CASES: list[Case] = [
    Case("Surrogate(pred, target)", "NaN in logits", lambda: _sur()(_nan(), _y()), ValueError, "`pred` contains NaN"),
    Case("Surrogate(pred, target)", "infinite logits", lambda: _sur()(_inf(), _y()), ValueError,
         "`pred` contains infinite"),
    Case("Surrogate(pred, target)", "logits of shape (B,)", lambda: _sur()(torch.randn(8), _y()), ValueError,
         "`pred` must be logits of shape"),
    Case("Surrogate(pred, target)", "one class", lambda: _sur()(_logits(8, 1), _y() * 0), ValueError,
         "C >= 2 classes"),
    Case("Surrogate(pred, target)", "an LS-ED surrogate (tied to C = 10) at C = 7",
         lambda: _lsed()(_logits(8, 7), _y() % 7), ValueError,
         "tied to C = num_classes = 10; for C = 7 learn one with `num_classes=7`"),
    Case("Surrogate(pred, target)", "integer logits", lambda: _sur()(_y().view(8, 1).repeat(1, 10), _y()),
         TypeError, "`pred` must be a floating-point tensor"),
    Case("Surrogate(pred, target)", "float targets", lambda: _sur()(_logits(), _y().float()), TypeError,
         "`target` must be an integer tensor"),
    Case("Surrogate(pred, target)", "targets of the wrong length", lambda: _sur()(_logits(), _y(5)), ValueError,
         "`target` must have shape"),
    Case("Surrogate(pred, target)", "label out of range", lambda: _sur()(_logits(), torch.full((8,), 10)),
         ValueError, "outside \\[0, 9\\]"),
    Case("Surrogate(pred, target)", "negative label (e.g. -100 padding)",
         lambda: _sur()(_logits(), torch.full((8,), -100)), ValueError, "outside \\[0, 9\\]"),
    Case("Surrogate(pred, target)", "empty batch", lambda: _sur()(torch.zeros(0, 10), _y(0)), ValueError,
         "empty batch"),
    Case("Surrogate(pred, target)", "a list instead of a tensor", lambda: _sur()([[0.0] * 10], _y(1)), TypeError,
         "`pred` must be a torch.Tensor"),
    Case("learn(metric, ...)", "metric raises", _learn_with(_raising), MetricError, "raised ZeroDivisionError"),
    Case("learn(metric, ...)", "metric returns NaN", _learn_with(lambda p, t: float("nan")), MetricError,
         "non-finite"),
    Case("learn(metric, ...)", "metric returns a tensor with several elements",
         _learn_with(lambda p, t: (p.argmax(-1) == t).float()), MetricError, "one number per batch"),
    Case("learn(metric, ...)", "metric returns a string", _learn_with(lambda p, t: "high"), MetricError,
         "must return a number"),
    Case("learn(metric, ...)", "metric is the same on every batch", _learn_with(lambda p, t: 0.5), ValueError,
         "constant"),
    Case("learn(metric, ...)", "unknown metric name", _learn_with("f2"), ValueError, "unknown built-in metric"),
    Case("learn(metric, ...)", "not a metric", lambda: ml.learn(3, num_classes=4, **QUICK), TypeError,
         "`metric` must be"),
    Case("learn(metric, ...)", "unknown task", lambda: ml.learn("accuracy", task="detection", **QUICK), ValueError,
         "`task` must be one of"),
    Case("learn(metric, ...)", "missing num_classes", lambda: ml.learn("accuracy", **QUICK), TypeError,
         "num_classes"),
    Case("learn(metric, ...)", "num_classes = 1", lambda: ml.learn("accuracy", num_classes=1, **QUICK), ValueError,
         "`num_classes` must be an integer >= 2"),
    Case("learn(metric, ...)", "unknown objective", _learn_with("accuracy", objective="mse"), ValueError,
         "`objective` must be one of"),
    Case("learn(metric, ...)", "steps = 0", _learn_with("accuracy", steps=0), ValueError, "`steps`"),
    Case("learn(metric, ...)", "p_random outside [0, 1]",
         lambda: ml.learn("accuracy", num_classes=4, outputs=[(torch.randn(256, 4), torch.randint(0, 4, (256,)))],
                          p_random=1.5, **QUICK), ValueError, "`p_random`"),
    Case("learn(metric, ...)", "negative penalty", _learn_with("accuracy", penalty=-1.0), ValueError, "`penalty`"),
    Case("learn(metric, ...)", "outputs with NaN logits",
         lambda: ml.learn("accuracy", num_classes=4, outputs=[(torch.full((64, 4), float("nan")),
                                                              torch.zeros(64, dtype=torch.long))], **QUICK),
         ValueError, "`outputs` item 0: `pred` contains NaN"),
    Case("learn(metric, ...)", "outputs not (pred, target) pairs",
         lambda: ml.learn("accuracy", num_classes=4, outputs=[torch.randn(64, 4)], **QUICK), TypeError,
         "must yield \\(pred, target\\) pairs"),
    Case("learn(metric, ...)", "outputs too small for two batches",
         lambda: ml.learn("accuracy", num_classes=4, outputs=[(torch.randn(20, 4), torch.zeros(20, dtype=torch.long))],
                          **QUICK), ValueError, "fewer than 2 batches"),
    Case("metrics.segmentation.miou(pred, target)", "prediction and target sizes differ",
         lambda: ml.metrics.segmentation.miou(torch.randn(2, 3, 8, 8), torch.zeros(2, 4, 4, dtype=torch.long)),
         ValueError, "same spatial size"),
    Case("metrics.segmentation.miou(pred, target)", "target value outside 0..C-1 other than ignore_index",
         lambda: ml.metrics.segmentation.miou(torch.randn(2, 3, 4, 4), torch.full((2, 4, 4), 7)), ValueError,
         "class index 7, outside 0..2 or ignore_index = 255"),
    Case("metrics.segmentation.miou(pred, target)", "a batch of ignored pixels only",
         lambda: ml.metrics.segmentation.miou(torch.randn(2, 3, 4, 4), torch.full((2, 4, 4), 255)), ValueError,
         "all ignore_index = 255: no pixel to score"),
    Case("metrics.segmentation.miou(pred, target)", "NaN logits",
         lambda: ml.metrics.segmentation.miou(torch.full((2, 3, 4, 4), float("nan")),
                                              torch.zeros(2, 4, 4, dtype=torch.long)), ValueError,
         "`pred` contains NaN logits"),
    Case("ranking.spearman(a, b)", "fewer than 2 elements", lambda: ml.ranking.spearman(torch.ones(1), torch.ones(1)),
         ValueError, "at least 2 elements"),
    Case("ranking.soft_rank(x)", "integer tensor", lambda: ml.ranking.soft_rank(torch.arange(5)), TypeError,
         "`x` must be a floating-point tensor"),
    Case("ranking.soft_rank(x)", "NaN", lambda: ml.ranking.soft_rank(torch.tensor([1.0, float("nan")])), ValueError,
         "`x` contains NaN"),
    Case("ranking.kendall(a, b)", "mismatched shapes", lambda: ml.ranking.kendall(torch.randn(4), torch.randn(5)),
         ValueError, "same shape"),
    Case("load(path)", "missing file", lambda: ml.load("/nonexistent/sur.safetensors"), FileNotFoundError,
         "no surrogate file"),
    Case("pretrained(name)", "unknown name", lambda: ml.pretrained("imagenet-accuracy"), ValueError,
         "no shipped surrogate"),
]


def main() -> None:
    """Print the markdown table: each case and what it gets, from a real call."""
    print("| where | bad input | what it gets |")
    print("| --- | --- | --- |")
    for case in CASES:
        try:
            case.call()
            got = "**no error**"
        except Exception as err:  # we print whatever is raised
            msg = str(err).replace("|", "\\|").replace("\n", " ")
            got = f"`{type(err).__name__}`: {msg}"
        print(f"| `{case.where}` | {case.what} | {got} |")


if __name__ == "__main__":
    main()
