"""Downstream: ordinal classes of scikit-learn's diabetes data, a small MLP trained with CE and CE + MAE surrogate.

Data: ``sklearn.datasets.load_diabetes`` (442 patients, 10 standardised features, bundled with scikit-learn); the
regression target (disease progression after one year) is cut at its quintiles into K = 5 ordered classes of
87-90 patients; a stratified 70/30 split per seed.

Protocol (fixed before the runs; the shared loop and tables are in ``downstream_tabular.py``):

1. train the MLP (10 -> 32 -> 5, ELU) with cross-entropy (split and init seed 100) and keep its training-set
   logits at 16 checkpoints (G_M);
2. learn an MAE surrogate from G_R and G_M (``metricloss.learn``, batches of 64); report its Spearman against MAE
   on held-out batches of those model outputs beside CE's;
3. for seeds 0 .. N - 1 (split, initialisation and batch order; N = ``--seeds``, default 10):

   * from scratch: train the same MLP with CE and with CE + MAE surrogate (weight 1, as the paper), same data,
     epochs and optimiser (Adam, lr 3e-3, 100 epochs, batches of 64);
   * fine-tune: continue from a copy of that seed's from-scratch CE model for 10 more epochs at lr 3e-4 (Adam,
     fresh state; batch order seeded 1000 + seed, the same for both arms) with CE alone and with CE + MAE surrogate
     (weight 1), so the surrogate fine-tune is compared with an equally long CE continuation;

   report test MAE of the arg-max class (the metric the surrogate was learned for), within-one accuracy and
   quadratic kappa over the whole test set, mean ± std over the seeds, and each row's mean paired difference (same
   seed) to its baseline row with the number of seeds it was better / tied / worse. Also the gradient norm w.r.t.
   the logits of CE and of the surrogate on seed 0's CE model.

Run (10 seeds: 16 s measured on 1 thread of a shared 2-core machine, load average 2.8)::

    .venv/bin/python benchmarks/downstream_ordinal.py --threads 1        # --seeds 10 by default
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.datasets import load_diabetes
from torch import nn

import downstream_tabular as tab
import metricloss as ml
from common import machine_line
from metricloss.metrics import ordinal as M
from metricloss.tasks import ordinal as _ordinal  # noqa: F401  (registers task="ordinal")

K = 5
BATCH = 64
EPOCHS = 100
LR = 3e-3
#: Surrogate learning settings (as benchmarks/correlation_ordinal.py, a shorter cap).
LEARN: dict[str, Any] = {"batches_per_step": 64, "steps": 200, "eval_every": 25, "patience": 4,
                         "validation_batches": 32, "pool_size": 1024, "gradient_probe": 0}
METRICS = (tab.Metric("mae", "test MAE", higher_is_better=False), tab.Metric("within1", "test within-1 accuracy"),
           tab.Metric("kappa", "test quadratic kappa"))


def load(seed: int) -> tab.Split:
    data = load_diabetes()
    edges = np.quantile(data.target, np.linspace(0, 1, K + 1)[1:-1])
    return tab.standardised_split(data.data, np.digitize(data.target, edges), seed, torch.int64)


def make_model(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(10, 32), nn.ELU(), nn.Linear(32, K))


def ce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits, target)


def train(seed: int, sur: ml.Surrogate | None = None, checkpoints: int = 0) -> tuple[nn.Module, tab.Outputs]:
    """Train from scratch on split ``seed`` with CE (+ ``sur``); with ``checkpoints`` > 0 also return training-set
    ``(logits, targets)`` at that many epochs."""
    x, y, _, _ = load(seed)
    loss_fn = ce if sur is None else tab.plus(ce, sur)
    return tab.train(x, y, make_model(seed), loss_fn, EPOCHS, LR, BATCH, seed, checkpoints)


def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    with torch.no_grad():
        logits = model(x)
    return {"mae": float(M.mae(logits, y)), "within1": float(M.within1_accuracy(logits, y)),
            "kappa": float(M.quadratic_kappa(logits, y))}


def run(seeds: int = 10, progress: bool = True) -> dict[str, Any]:
    t0 = time.perf_counter()
    _, outputs = train(100, checkpoints=16)
    sur = ml.learn("mae", task="ordinal", num_classes=K, outputs=outputs, batch_size=BATCH, seed=0, progress=False,
                   **LEARN)
    rep = sur.report
    agreement = {"mae": {"spearman": rep.spearman, "baseline_spearman": rep.baseline_spearman,
                         "batches": rep.n_validation_batches, "learn_seconds": rep.learn_seconds}}
    out = tab.compare(seeds, load, make_model, "CE", ce, {"MAE surrogate": sur}, evaluate, EPOCHS, LR, BATCH,
                      progress)
    return {**out, "agreement": agreement, "seconds": time.perf_counter() - t0}


def markdown(out: dict[str, Any]) -> str:
    return tab.report(out, METRICS, "CE")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10, help="seeds 0 .. N-1 (default 10)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    out = run(args.seeds)
    print(f"\ndiabetes in {K} quantile classes, MLP 10-32-{K}, Adam; scratch: {EPOCHS} epochs at lr {LR:g}; "
          f"fine-tune: from the scratch CE model, {tab.FT_EPOCHS} more epochs at lr {LR * tab.FT_LR_FACTOR:g}; "
          f"batches of {BATCH}, surrogate weight 1; {out['seconds']:.0f} s\n{machine_line()}\n")
    print(markdown(out))
