"""Learn the shipped ordinal surrogate (``ordinal-mae``: MAE of the arg-max class, K = 5) and write its model card.

Reproduce with::

    .venv/bin/python scripts/zoo_ordinal.py

Every number in the card is measured by this script when it runs.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

import metricloss as ml
from metricloss.evaluation import agreement
from metricloss.tasks import get_task
from metricloss.tasks import ordinal as _ordinal  # noqa: F401  (registers task="ordinal")

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import downstream_ordinal
from correlation_ordinal import LEARN
from make_zoo import ZOO, checkpoint_batches, net_losses, write_card

NAME = "ordinal-mae"
METRIC = "mae"
K = 5


def _rows(sur: ml.Surrogate, n: int = 512, seed: int = 777) -> list[tuple[str, str, dict, dict]]:
    out = []
    bs = sur.report.batch_size
    for k in (K, 10):
        task = get_task("ordinal", num_classes=k)
        met = task.metrics[METRIC]
        pred, target = task.random_batches(n, bs, torch.Generator().manual_seed(seed))
        values = met.evaluate(pred, target)
        out.append((f"{n} random batches of {bs} (G_R, unseen seed), K = {k}", task.baseline_name,
                    agreement(task.baseline(pred, target), values, False),
                    agreement(net_losses(sur, pred, target), values, False)))
    # Real model outputs (unseen by this G_R-only surrogate): training-set logits of the diabetes MLP at 16
    # checkpoints of CE training, 8 random batches of 64 from each.
    _, outputs = downstream_ordinal.train(100, checkpoints=16)
    pred, target = checkpoint_batches(outputs, 64)
    values = get_task("ordinal", num_classes=K).metrics[METRIC].evaluate(pred, target)
    ce = F.cross_entropy(pred.flatten(0, 1), target.flatten(), reduction="none").view(target.shape).mean(1)
    out.append((f"{pred.shape[0]} batches of 64 diabetes (5 quantile classes) training-set logits of 16 CE "
                "checkpoints (MLP, benchmarks/downstream_ordinal.py)", "cross-entropy",
                agreement(ce, values, False), agreement(net_losses(sur, pred, target), values, False)))
    return out


def make() -> None:
    t0 = time.perf_counter()
    sur = ml.learn(METRIC, task="ordinal", num_classes=K, seed=0, progress=False, **LEARN)
    seconds = time.perf_counter() - t0
    path = ZOO / f"{NAME}.safetensors"
    sur.save(path)
    write_card(NAME, sur, seconds, _rows(sur),
               "G_R only: targets from a random class distribution per batch; a uniformly random fraction of them "
               "moved to make the predicted classes (ordinal offsets of random size and direction, uniformly random "
               "classes, or mirrored classes); logits at a log-uniform scale in [0.3, 8], sometimes unimodal around "
               "the prediction, whose arg-max is the predicted class by a random margin.",
               command="python scripts/zoo_ordinal.py",
               usage="import torch.nn.functional as F, metricloss as ml\n"
                     f"sur = ml.pretrained({NAME!r})\n"
                     f"# logits (B, {K}) over ordered classes, y (B,) int64\n"
                     "loss = F.cross_entropy(logits, y) + sur(logits, y)",
               note="Its per-sample inputs (the target, and under a sharpened soft arg-max the expected class minus "
                    "the target, the mass within one class of the target and the expected class, all divided by "
                    "K - 1) do not depend on the number of classes, nor on the logits' scale while the standard "
                    "deviation of a sample's logits is above its `spread_floor` of 1 (below it the soft arg-max has "
                    "a fixed temperature, which bounds the gradient; docs/reliability.md), so "
                    f"`ml.pretrained({NAME!r}, num_classes=K)` accepts other K (the second row above measures "
                    f"K = 10); it was learned for {sur.report.task_config}, batches of {sur.report.batch_size}.")
    print(f"{path.name}: {path.stat().st_size / 1024:.0f} KiB")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    torch.set_num_threads(parser.parse_args().threads)
    make()
