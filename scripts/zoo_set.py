"""Learn the shipped set surrogate (``set-f1``: binary F1 at threshold 0) and write its model card.

Reproduce with::

    .venv/bin/python scripts/zoo_set.py

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
from metricloss.tasks import set as _set  # noqa: F401  (registers task="set")

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import downstream_set
from correlation_set import LEARN
from make_zoo import ZOO, checkpoint_batches, net_losses, write_card

NAME = "set-f1"
METRIC = "f1"


def _rows(sur: ml.Surrogate, n: int = 512, seed: int = 777) -> list[tuple[str, str, dict, dict]]:
    out = []
    bs = sur.report.batch_size
    for labels in (None, 4):
        task = get_task("set", num_labels=labels)
        met = task.metrics[METRIC]
        pred, target = task.random_batches(n, bs, torch.Generator().manual_seed(seed))
        values = met.evaluate(pred, target)
        kind = "binary" if labels is None else f"{labels} labels, macro F1"
        out.append((f"{n} random batches of {bs} (G_R, unseen seed), {kind}", task.baseline_name,
                    agreement(task.baseline(pred, target), values, True),
                    agreement(net_losses(sur, pred, target), values, True)))
    # Real model outputs (unseen by this G_R-only surrogate): training-set scores of the breast-cancer MLP at 16
    # checkpoints of BCE training, 8 random batches from each.
    _, outputs = downstream_set.train(100, checkpoints=16)
    pred, target = checkpoint_batches(outputs, bs)
    met = get_task("set").metrics[METRIC]
    values = met.evaluate(pred, target)
    bce = F.binary_cross_entropy_with_logits(pred, target, reduction="none").mean(1)
    out.append((f"{pred.shape[0]} batches of {bs} breast-cancer training-set scores of 16 BCE checkpoints (MLP, "
                "benchmarks/downstream_set.py)", "binary cross-entropy",
                agreement(bce, values, True), agreement(net_losses(sur, pred, target), values, True)))
    return out


def make() -> None:
    t0 = time.perf_counter()
    sur = ml.learn(METRIC, task="set", seed=0, progress=False, **LEARN)
    seconds = time.perf_counter() - t0
    path = ZOO / f"{NAME}.safetensors"
    sur.save(path)
    write_card(NAME, sur, seconds, _rows(sur),
               "G_R only: per batch a positive rate (logit-uniform in [0.05, 0.95], one positive and one negative "
               "kept), a class separation uniform in [-2.5, 4] (negative: inverted scores), Gaussian noise, a "
               "threshold offset and a log-uniform logit scale in [0.2, 6].",
               command="python scripts/zoo_set.py",
               usage="import torch.nn.functional as F, metricloss as ml\n"
                     f"sur = ml.pretrained({NAME!r})\n"
                     "# scores (B,) logits of a binary classifier, y (B,) int64 0/1 labels\n"
                     "loss = F.binary_cross_entropy_with_logits(scores, y.float()) + sur(scores, y)",
               note="It is a DeepSets net over the samples of a batch (a soft sign of each score relative to the "
                    "batch's root-mean-square score, and soft pairwise-rank features; means over positives and "
                    "negatives), applied to each label separately and averaged, so "
                    f"`ml.pretrained({NAME!r}, num_labels=L)` scores multi-label batches `(B, L)` with macro F1 (the "
                    "second row above measures that transfer); it was learned for binary scores, batches of "
                    f"{sur.report.batch_size}. Its inputs do not change with the scale of the scores, as F1 does "
                    "not, while the batch's root-mean-square and standard deviation of the scores are above its "
                    "`sign_floor` of 0.2 and `rank_floor` of 0.5 (below them the scores are divided by the floor, "
                    "which bounds the gradient; docs/reliability.md).")
    print(f"{path.name}: {path.stat().st_size / 1024:.0f} KiB")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    torch.set_num_threads(parser.parse_args().threads)
    make()
