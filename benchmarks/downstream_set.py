"""Downstream: a small MLP on scikit-learn's breast-cancer data trained with BCE and with BCE + a set surrogate.

Data: ``sklearn.datasets.load_breast_cancer`` (569 tumours, 30 features, bundled with scikit-learn), positive class
= malignant (37 %), features standardised on the training part; a stratified 70/30 split per seed.

Protocol:

1. train the MLP (30 -> 32 -> 1, ELU) with binary cross-entropy (split and init seed 100) and keep its
   training-set scores at 16 checkpoints (G_M);
2. learn an F1 surrogate and an AP surrogate from G_R and G_M (``metricloss.learn``, batches of 64); report their
   Spearman against the metric on held-out batches of those model outputs beside BCE's;
3. for seeds 0, 1, 2 (split and initialisation), train the same MLP from scratch with BCE, BCE + F1 surrogate and
   BCE + AP surrogate (weight 1, as the paper), same data, epochs and optimiser (Adam, lr 1e-3, 60 epochs, batches
   of 64); report test F1 (threshold 0 on the logit) and test AP over the whole test set, mean ± std.

Run (about 5 minutes on 2 busy CPU cores)::

    .venv/bin/python benchmarks/downstream_set.py
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import torch
import torch.nn.functional as F
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import train_test_split
from torch import nn

import metricloss as ml
from metricloss.metrics import set as M
from metricloss.tasks import set as _set  # noqa: F401  (registers task="set")

BATCH = 64
EPOCHS = 60
LR = 1e-3
#: Surrogate learning settings (as benchmarks/correlation_set.py, a shorter cap).
LEARN: dict[str, Any] = {"batches_per_step": 64, "steps": 200, "eval_every": 25, "patience": 4,
                         "validation_batches": 32, "pool_size": 1024, "gradient_probe": 0}


def load(seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    data = load_breast_cancer()
    x, y = data.data, 1 - data.target  # 1 = malignant
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.3, stratify=y, random_state=seed)
    mean, std = x_tr.mean(0), x_tr.std(0)
    f = lambda a: torch.tensor((a - mean) / std, dtype=torch.float32)  # noqa: E731
    return f(x_tr), torch.tensor(y_tr, dtype=torch.float32), f(x_te), torch.tensor(y_te, dtype=torch.float32)


def make_model(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(30, 32), nn.ELU(), nn.Linear(32, 1), nn.Flatten(0))


def train(seed: int, sur: ml.Surrogate | None = None, checkpoints: int = 0
          ) -> tuple[nn.Module, list[tuple[torch.Tensor, torch.Tensor]]]:
    """Train on split ``seed``; with ``checkpoints`` > 0 also return training-set scores at that many epochs."""
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
            loss = F.binary_cross_entropy_with_logits(logits, y[idx])
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
        scores = model(x)
    return {"f1": float(M.f1(scores, y)), "ap": float(M.average_precision(scores, y))}


def run(seeds: tuple[int, ...] = (0, 1, 2), progress: bool = True) -> dict[str, Any]:
    t0 = time.perf_counter()
    _, outputs = train(100, checkpoints=16)
    surrogates, agreement = {}, {}
    for metric in ("f1", "average_precision"):
        sur = ml.learn(metric, task="set", outputs=outputs, batch_size=BATCH, seed=0, progress=False, **LEARN)
        surrogates[metric] = sur
        rep = sur.report
        agreement[metric] = {"spearman": rep.spearman, "baseline_spearman": rep.baseline_spearman,
                             "batches": rep.n_validation_batches, "learn_seconds": rep.learn_seconds}
    results: dict[str, list[dict[str, float]]] = {"BCE": [], "BCE + F1 surrogate": [], "BCE + AP surrogate": []}
    for seed in seeds:
        for name, sur in (("BCE", None), ("BCE + F1 surrogate", surrogates["f1"]),
                          ("BCE + AP surrogate", surrogates["average_precision"])):
            model, _ = train(seed, sur)
            results[name].append(evaluate(model, seed))
            if progress:
                print(f"seed {seed} {name}: {results[name][-1]}", flush=True)
    return {"results": results, "agreement": agreement, "seconds": time.perf_counter() - t0}


def _ms(values: list[float]) -> str:
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}"


def markdown(out: dict[str, Any]) -> str:
    lines = ["| surrogate | held-out batches of model outputs | BCE Spearman | surrogate Spearman | learn s |",
             "| --- | --- | --- | --- | --- |"]
    for metric, a in out["agreement"].items():
        lines.append(f"| {metric} | {a['batches']} | {a['baseline_spearman']:.4f} | {a['spearman']:.4f} "
                     f"| {a['learn_seconds']:.1f} |")
    n = len(next(iter(out["results"].values())))
    lines += ["", f"| loss | test F1 (mean ± std, {n} seeds) | test AP |", "| --- | --- | --- |"]
    for name, runs in out["results"].items():
        lines.append(f"| {name} | {_ms([r['f1'] for r in runs])} | {_ms([r['ap'] for r in runs])} |")
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    torch.set_num_threads(parser.parse_args().threads)
    out = run()
    print(f"\nbreast cancer (malignant = positive), MLP 30-32-1, {EPOCHS} epochs, batches of {BATCH}; "
          f"{out['seconds']:.0f} s on {torch.get_num_threads()} thread(s) of a shared, busy machine\n")
    print(markdown(out))
