"""Downstream: a small MLP on scikit-learn's breast-cancer data trained with BCE and with BCE + a set surrogate.

Data: ``sklearn.datasets.load_breast_cancer`` (569 tumours, 30 features, bundled with scikit-learn), positive class
= malignant (37 %), features standardised on the training part; a stratified 70/30 split per seed.

Protocol (fixed before the runs; the shared loop and tables are in ``downstream_tabular.py``):

1. train the MLP (30 -> 32 -> 1, ELU) with binary cross-entropy (split and init seed 100) and keep its
   training-set scores at 16 checkpoints (G_M);
2. learn an F1 surrogate and an AP surrogate from G_R and G_M (``metricloss.learn``, batches of 64); report their
   Spearman against the metric on held-out batches of those model outputs beside BCE's;
3. for seeds 0 .. N - 1 (split, initialisation and batch order; N = ``--seeds``, default 10):

   * from scratch: train the same MLP with BCE, BCE + F1 surrogate and BCE + AP surrogate (weight 1, as the paper),
     same data, epochs and optimiser (Adam, lr 1e-3, 60 epochs, batches of 64);
   * fine-tune: continue from a copy of that seed's from-scratch BCE model for 10 more epochs at lr 1e-4 (Adam,
     fresh state; batch order seeded 1000 + seed, the same for every arm) with BCE alone, BCE + F1 surrogate and
     BCE + AP surrogate (weight 1), so each surrogate fine-tune is compared with an equally long BCE continuation;

   report test F1 (threshold 0 on the logit) and test AP over the whole test set, mean ± std over the seeds, and
   each row's mean paired difference (same seed) to its baseline row with the number of seeds it was better / tied /
   worse. Also the gradient norm w.r.t. the scores of BCE and of each surrogate on seed 0's BCE model.

Run (10 seeds: 34 s measured on 1 thread of a shared 2-core machine, load average 2.7)::

    .venv/bin/python benchmarks/downstream_set.py --threads 1            # --seeds 10 by default
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import torch
import torch.nn.functional as F
from sklearn.datasets import load_breast_cancer
from torch import nn

import downstream_tabular as tab
import metricloss as ml
from common import machine_line
from metricloss.metrics import set as M
from metricloss.tasks import set as _set  # noqa: F401  (registers task="set")

BATCH = 64
EPOCHS = 60
LR = 1e-3
#: Surrogate learning settings (as benchmarks/correlation_set.py, a shorter cap).
LEARN: dict[str, Any] = {"batches_per_step": 64, "steps": 200, "eval_every": 25, "patience": 4,
                         "validation_batches": 32, "pool_size": 1024, "gradient_probe": 0}
METRICS = (tab.Metric("f1", "test F1"), tab.Metric("ap", "test AP"))


def load(seed: int) -> tab.Split:
    data = load_breast_cancer()
    return tab.standardised_split(data.data, 1 - data.target, seed, torch.float32)  # 1 = malignant


def make_model(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(30, 32), nn.ELU(), nn.Linear(32, 1), nn.Flatten(0))


def bce(scores: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(scores, target)


def train(seed: int, sur: ml.Surrogate | None = None, checkpoints: int = 0) -> tuple[nn.Module, tab.Outputs]:
    """Train from scratch on split ``seed`` with BCE (+ ``sur``); with ``checkpoints`` > 0 also return training-set
    ``(scores, targets)`` at that many epochs."""
    x, y, _, _ = load(seed)
    loss_fn = bce if sur is None else tab.plus(bce, sur)
    return tab.train(x, y, make_model(seed), loss_fn, EPOCHS, LR, BATCH, seed, checkpoints)


def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    with torch.no_grad():
        scores = model(x)
    return {"f1": float(M.f1(scores, y)), "ap": float(M.average_precision(scores, y))}


def run(seeds: int = 10, progress: bool = True) -> dict[str, Any]:
    t0 = time.perf_counter()
    _, outputs = train(100, checkpoints=16)
    surrogates, agreement = {}, {}
    for metric, name in (("f1", "F1 surrogate"), ("average_precision", "AP surrogate")):
        sur = ml.learn(metric, task="set", outputs=outputs, batch_size=BATCH, seed=0, progress=False, **LEARN)
        surrogates[name] = sur
        rep = sur.report
        agreement[metric] = {"spearman": rep.spearman, "baseline_spearman": rep.baseline_spearman,
                             "batches": rep.n_validation_batches, "learn_seconds": rep.learn_seconds}
    out = tab.compare(seeds, load, make_model, "BCE", bce, surrogates, evaluate, EPOCHS, LR, BATCH, progress)
    return {**out, "agreement": agreement, "seconds": time.perf_counter() - t0}


def markdown(out: dict[str, Any]) -> str:
    return tab.report(out, METRICS, "BCE")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10, help="seeds 0 .. N-1 (default 10)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    out = run(args.seeds)
    print(f"\nbreast cancer (malignant = positive), MLP 30-32-1, Adam; scratch: {EPOCHS} epochs at lr {LR:g}; "
          f"fine-tune: from the scratch BCE model, {tab.FT_EPOCHS} more epochs at lr {LR * tab.FT_LR_FACTOR:g}; "
          f"batches of {BATCH}, surrogate weight 1; {out['seconds']:.0f} s\n{machine_line()}\n")
    print(markdown(out))
