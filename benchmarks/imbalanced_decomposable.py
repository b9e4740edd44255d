"""Do decomposable metrics lose with the batch-level classification surrogate? Accuracy and top-5 accuracy learned
with the old default (per-sample net, old G_R: the base commit's code) and with the batch net and the new G_R (half
imbalanced), scored on the same held-out batches. (``learn new`` was run while the batch net was the default; with
the default now back to the per-sample net, ``learn new`` passes ``BATCH_NET`` to reproduce it.)

Step 1 learns with whichever metricloss is on the path and saves the surrogates; step 2 loads all four in the new
code and scores them::

    PYTHONPATH=/work/wt/base/src:benchmarks python benchmarks/imbalanced_decomposable.py learn old OUT
    PYTHONPATH=src:benchmarks python benchmarks/imbalanced_decomposable.py learn new OUT
    PYTHONPATH=src:benchmarks python benchmarks/imbalanced_decomposable.py compare OUT

Both learn with the same settings: accuracy at C = 10 from G_R and the MNIST-5k CE checkpoints' training-set
outputs (as the shipped ``classification-accuracy``), top-5 at C = 100 from G_R only (as the shipped top-5 entry),
``STEPS`` steps at most, seed 0.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

import metricloss as ml
from common import demo_outputs, machine_line
from metricloss import datasets, demo
from metricloss.evaluation import agreement
from metricloss.tasks.classification import ClassificationTask

try:  # the base commit has no batch net; `learn old` runs there
    from metricloss.tasks.classification import BATCH_NET
except ImportError:
    BATCH_NET = None

STEPS = 400


def learn(which: str, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    _, outputs, _ = demo_outputs("mnist_5k")
    runs = (("accuracy", {"num_classes": 10, "outputs": outputs}), ("top5_accuracy", {"num_classes": 100}))
    for metric, kwargs in runs:
        t0 = time.perf_counter()
        net = {"net": BATCH_NET} if which == "new" else {}
        sur = ml.learn(metric, seed=0, progress=False, steps=STEPS, **net, **kwargs)
        sur.save(out / f"{which}_{metric}.safetensors")
        print(f"{which} {metric}: {time.perf_counter() - t0:.1f} s, {sur.report.steps} steps", file=sys.stderr)


def _batches(c: int) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    task = ClassificationTask(c)
    sets = {"old G_R (uniform labels)": task._uniform_batches(512, 128, torch.Generator().manual_seed(777)),
            "new G_R (half imbalanced)": task.random_batches(512, 128, torch.Generator().manual_seed(777))}
    if c == 10:
        for name in ("mnist_5k", "digits"):
            _, _, test_out = demo_outputs(name)
            split = datasets.load(name)
            sets[f"{name} CE checkpoints, test outputs"] = demo.heldout_batches(test_out, split.y_test, 8, seed=3)
        lt = datasets.long_tail(datasets.mnist_5k(), ratio=22.5)
        _, test_out = demo.checkpoint_outputs(lt, {"epochs": 30, "hidden": 128}, seed=0)
        sets["MNIST-5k long tail CE checkpoints, test outputs"] = demo.heldout_batches(test_out, lt.y_test, 8, seed=2)
    return sets


def compare(out: Path) -> None:
    print(machine_line())
    print("\n| metric | held-out batches | CE | old default | batch net, new G_R | new − old |")
    print("| --- | --- | --- | --- | --- | --- |")
    for metric, c in (("accuracy", 10), ("top5_accuracy", 100)):
        old, new = (ml.load(out / f"{w}_{metric}.safetensors") for w in ("old", "new"))
        met = new.task.metrics[metric]
        for where, (pred, target) in _batches(c).items():
            values = met.evaluate(pred, target)
            rho = [agreement(losses, values, True)["spearman"] for losses in
                   (new.task.baseline(pred, target), old.batch_losses(pred, target), new.batch_losses(pred, target))]
            print(f"| {metric} | {where} ({pred.shape[0]}) | {rho[0]:.4f} | {rho[1]:.4f} | {rho[2]:.4f} "
                  f"| {rho[2] - rho[1]:+.4f} |")


if __name__ == "__main__":
    torch.set_num_threads(1)
    if sys.argv[1] == "learn":
        learn(sys.argv[2], Path(sys.argv[3]))
    else:
        compare(Path(sys.argv[2]))
