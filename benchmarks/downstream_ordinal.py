"""Downstream: ordinal classes of scikit-learn's diabetes data, a small MLP trained with CE and CE + MAE surrogate.

Data: ``sklearn.datasets.load_diabetes`` (442 patients, 10 standardised features, bundled with scikit-learn); the
regression target (disease progression after one year) is cut at its quintiles into K = 5 ordered classes of
87-90 patients; a stratified 70/30 split per seed.

Protocol:

1. train the MLP (10 -> 32 -> 5, ELU) with cross-entropy (split and init seed 100) and keep its training-set
   logits at 16 checkpoints (G_M);
2. learn an MAE surrogate from G_R and G_M (``metricloss.learn``, batches of 64); report its Spearman against MAE
   on held-out batches of those model outputs beside CE's;
3. for seeds 0, 1, 2 (split and initialisation), train the same MLP from scratch with CE and with CE + MAE
   surrogate (weight 1, as the paper), same data, epochs and optimiser (Adam, lr 3e-3, 100 epochs, batches of 64);
   report test MAE of the arg-max class (the metric the surrogate was learned for), within-one accuracy and
   quadratic kappa over the whole test set, mean ± std.

Run (about 4 minutes on 2 busy CPU cores)::

    .venv/bin/python benchmarks/downstream_ordinal.py
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.datasets import load_diabetes
from sklearn.model_selection import train_test_split
from torch import nn

import metricloss as ml
from metricloss.metrics import ordinal as M
from metricloss.tasks import ordinal as _ordinal  # noqa: F401  (registers task="ordinal")

K = 5
BATCH = 64
EPOCHS = 100
LR = 3e-3
#: Surrogate learning settings (as benchmarks/correlation_ordinal.py, a shorter cap).
LEARN: dict[str, Any] = {"batches_per_step": 64, "steps": 200, "eval_every": 25, "patience": 4,
                         "validation_batches": 32, "pool_size": 1024, "gradient_probe": 0}


def load(seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    data = load_diabetes()
    edges = np.quantile(data.target, np.linspace(0, 1, K + 1)[1:-1])
    y = np.digitize(data.target, edges)
    x_tr, x_te, y_tr, y_te = train_test_split(data.data, y, test_size=0.3, stratify=y, random_state=seed)
    mean, std = x_tr.mean(0), x_tr.std(0)
    f = lambda a: torch.tensor((a - mean) / std, dtype=torch.float32)  # noqa: E731
    return f(x_tr), torch.tensor(y_tr, dtype=torch.int64), f(x_te), torch.tensor(y_te, dtype=torch.int64)


def make_model(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(10, 32), nn.ELU(), nn.Linear(32, K))


def train(seed: int, sur: ml.Surrogate | None = None, checkpoints: int = 0
          ) -> tuple[nn.Module, list[tuple[torch.Tensor, torch.Tensor]]]:
    """Train on split ``seed``; with ``checkpoints`` > 0 also return training-set logits at that many epochs."""
    x, y, _, _ = load(seed)
    model = make_model(seed)
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    gen = torch.Generator().manual_seed(seed)
    keep = set(torch.linspace(0, EPOCHS - 1, checkpoints).round().long().tolist()) if checkpoints else set()
    outputs = []
    for epoch in range(EPOCHS):
        perm = torch.randperm(x.shape[0], generator=gen)
        for i in range(0, x.shape[0] - BATCH + 1, BATCH):  # full batches only: the surrogate sees batches of 64
            idx = perm[i: i + BATCH]
            logits = model(x[idx])
            loss = F.cross_entropy(logits, y[idx])
            if sur is not None:
                loss = loss + sur(logits, y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        if epoch in keep:
            with torch.no_grad():
                order = torch.randperm(x.shape[0], generator=gen)
                outputs.append((model(x[order]), y[order]))
    return model, outputs


def evaluate(model: nn.Module, seed: int) -> dict[str, float]:
    _, _, x, y = load(seed)
    with torch.no_grad():
        logits = model(x)
    return {"mae": float(M.mae(logits, y)), "within1": float(M.within1_accuracy(logits, y)),
            "kappa": float(M.quadratic_kappa(logits, y))}


def run(seeds: tuple[int, ...] = (0, 1, 2), progress: bool = True) -> dict[str, Any]:
    t0 = time.perf_counter()
    _, outputs = train(100, checkpoints=16)
    sur = ml.learn("mae", task="ordinal", num_classes=K, outputs=outputs, batch_size=BATCH, seed=0, progress=False,
                   **LEARN)
    rep = sur.report
    agreement = {"spearman": rep.spearman, "baseline_spearman": rep.baseline_spearman,
                 "batches": rep.n_validation_batches, "learn_seconds": rep.learn_seconds}
    results: dict[str, list[dict[str, float]]] = {"CE": [], "CE + MAE surrogate": []}
    for seed in seeds:
        for name, s in (("CE", None), ("CE + MAE surrogate", sur)):
            model, _ = train(seed, s)
            results[name].append(evaluate(model, seed))
            if progress:
                print(f"seed {seed} {name}: {results[name][-1]}", flush=True)
    return {"results": results, "agreement": agreement, "seconds": time.perf_counter() - t0}


def _ms(values: list[float]) -> str:
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}"


def markdown(out: dict[str, Any]) -> str:
    a = out["agreement"]
    lines = ["| surrogate | held-out batches of model outputs | CE Spearman | surrogate Spearman | learn s |",
             "| --- | --- | --- | --- | --- |",
             f"| mae | {a['batches']} | {a['baseline_spearman']:.4f} | {a['spearman']:.4f} "
             f"| {a['learn_seconds']:.1f} |"]
    n = len(next(iter(out["results"].values())))
    lines += ["", f"| loss | test MAE (mean ± std, {n} seeds; lower is better) | test within-1 accuracy "
              "| test quadratic kappa |", "| --- | --- | --- | --- |"]
    for name, runs in out["results"].items():
        lines.append(f"| {name} | {_ms([r['mae'] for r in runs])} | {_ms([r['within1'] for r in runs])} "
                     f"| {_ms([r['kappa'] for r in runs])} |")
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    torch.set_num_threads(parser.parse_args().threads)
    out = run()
    print(f"\ndiabetes in {K} quantile classes, MLP 10-32-{K}, {EPOCHS} epochs, batches of {BATCH}; "
          f"{out['seconds']:.0f} s on {torch.get_num_threads()} thread(s) of a shared, busy machine\n")
    print(markdown(out))
