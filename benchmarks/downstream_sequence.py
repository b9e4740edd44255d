"""Downstream: a non-autoregressive transducer trained with CE and with CE + a learned BLEU surrogate.

The task is synthetic string transduction with a length change, like translation for a non-autoregressive
model: a source of 10–20 tokens from 1..23 is mapped through a fixed permutation, tokens from a small "drop" set
are deleted (so later tokens move left: a model that miscounts produces shifted outputs), adjacent pairs are
swapped (local reordering), and the rest of the source length is filled with the "no token" id ``pad_id = 0``.
The model (token + position embeddings, a 2-layer transformer encoder, a linear read-out) predicts every output
position at once; hypotheses are decoded greedily and ``pad_id`` is dropped before scoring.

Protocol:

1. train the model with cross-entropy (seed 0) and keep its training-set logits at 8 checkpoints (G_M);
2. learn a BLEU surrogate from G_R and G_M (``metricloss.learn``, pad_id-aware); report its Spearman against
   sentence BLEU on held-out batches of those model outputs beside CE's;
3. for 3 seeds, train the same model from scratch with CE and with CE + surrogate (weight 1, as the paper),
   same data, epochs and optimiser; and, as the paper does for NMT, fine-tune each seed's CE model for a few
   more epochs at a small learning rate with CE alone or CE + surrogate. Report test BLEU, chrF, normalised
   edit distance and exact-match rate, mean ± std over the seeds.

Run (about 8 minutes on 2 busy CPU cores)::

    .venv/bin/python benchmarks/downstream_sequence.py
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

import metricloss as ml
from metricloss.metrics import sequence as M
from metricloss.tasks import sequence as S  # noqa: F401  (registers task="sequence")

VOCAB, PAD_ID, T = 24, 0, 20
DROP = (1, 2, 3)
IGNORE = M.IGNORE_INDEX


def make_data(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Sources ``(n, T)`` (padding -100 past their length) and targets ``(n, T)`` (pad_id tail, then -100)."""
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(VOCAB - 1, generator=torch.Generator().manual_seed(12345)) + 1  # fixed content map
    src = torch.full((n, T), IGNORE, dtype=torch.long)
    tgt = torch.full((n, T), IGNORE, dtype=torch.long)
    for i in range(n):
        length = int(torch.randint(10, T + 1, (), generator=g))
        x = torch.randint(1, VOCAB, (length,), generator=g)
        y = [int(perm[int(t) - 1]) for t in x if int(t) not in DROP]
        for j in range(0, len(y) - 1, 2):  # local reordering: swap adjacent pairs
            y[j], y[j + 1] = y[j + 1], y[j]
        src[i, :length] = x
        tgt[i, :length] = torch.tensor(y + [PAD_ID] * (length - len(y)))
    return src, tgt


class Transducer(nn.Module):
    """Non-autoregressive: embeddings -> transformer encoder -> per-position logits ``(B, T, V)``."""

    def __init__(self, d: int = 64, layers: int = 2) -> None:
        super().__init__()
        self.tok = nn.Embedding(VOCAB + 1, d)  # id VOCAB: source padding
        self.pos = nn.Embedding(T, d)
        layer = nn.TransformerEncoderLayer(d, 4, 2 * d, dropout=0.0, batch_first=True)
        self.enc = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.out = nn.Linear(d, VOCAB)

    def forward(self, src: torch.Tensor) -> torch.Tensor:
        pad = src == IGNORE
        h = self.tok(src.masked_fill(pad, VOCAB)) + self.pos.weight[: src.shape[1]]
        return self.out(self.enc(h, src_key_padding_mask=pad))


def predict(model: nn.Module, src: torch.Tensor) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        out = torch.cat([model(s) for s in src.split(512)])
    model.train()
    return out


def ce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.flatten(0, 1), target.flatten(), ignore_index=IGNORE)


def fit(loss_fn: Any, data: dict[str, torch.Tensor], seed: int, epochs: int, batch: int = 32,
        on_epoch: Any = None, start: nn.Module | None = None, lr: float = 1e-3) -> nn.Module:
    """Adam on ``loss_fn(logits, target)``, from scratch or from a copy of ``start``."""
    torch.manual_seed(seed)
    model = Transducer() if start is None else copy.deepcopy(start)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    g = torch.Generator().manual_seed(seed)
    n = data["src"].shape[0]
    for epoch in range(1, epochs + 1):
        for idx in torch.randperm(n, generator=g).split(batch):
            if idx.numel() < batch:
                continue
            loss = loss_fn(model(data["src"][idx]), data["tgt"][idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        if on_epoch is not None:
            on_epoch(epoch, model)
    return model


def scores(model: nn.Module, src: torch.Tensor, tgt: torch.Tensor) -> dict[str, float]:
    logits = predict(model, src)
    return {
        "BLEU": float(M.bleu(logits, tgt, pad_id=PAD_ID)),
        "chrF": float(M.chrf(logits, tgt, pad_id=PAD_ID)),
        "edit distance": float(M.edit_distance(logits, tgt, pad_id=PAD_ID)),
        "exact match": float((logits.argmax(-1).eq(tgt) | tgt.eq(IGNORE)).all(-1).double().mean()),
    }


def run(seeds: int = 3, epochs: int = 10, finetune: int = 3, n_train: int = 3000, n_test: int = 1000) -> dict[str, Any]:
    t0 = time.perf_counter()
    src, tgt = make_data(n_train + n_test, seed=0)
    train = {"src": src[:n_train], "tgt": tgt[:n_train]}
    test = {"src": src[n_train:], "tgt": tgt[n_train:]}

    # 1. G_M: training-set logits of CE checkpoints (a fixed subset of 1024 sentences per checkpoint).
    outputs: list[tuple[torch.Tensor, torch.Tensor]] = []
    keep = torch.randperm(n_train, generator=torch.Generator().manual_seed(1))[:1024]
    marks = set(torch.linspace(1, epochs, 8).round().long().tolist())

    def collect(epoch: int, model: nn.Module) -> None:
        if epoch in marks:
            outputs.append((predict(model, train["src"][keep]), train["tgt"][keep]))

    fit(ce, train, seed=0, epochs=epochs, on_epoch=collect)

    # 2. The BLEU surrogate.
    sur = ml.learn("bleu", task="sequence", vocab_size=VOCAB, max_length=T, pad_id=PAD_ID, outputs=outputs,
                   batch_size=16, batches_per_step=32, steps=300, eval_every=25, patience=4, pool_size=256,
                   validation_batches=64, gradient_probe=0, seed=0, progress=False)
    rep = sur.report

    # 3. CE vs CE + surrogate from scratch; then, as the paper does, fine-tuning the CE model with either.
    arms = {"CE": ce, "CE + surrogate": lambda z, y: ce(z, y) + sur(z, y)}
    tuned = {f"CE, then {finetune} epochs of {name} at lr 1e-4": fn for name, fn in arms.items()}
    results: dict[str, list[dict[str, float]]] = {name: [] for name in [*arms, *tuned]}
    for seed in range(seeds):
        models = {name: fit(loss_fn, train, seed=100 + seed, epochs=epochs) for name, loss_fn in arms.items()}
        for name, model in models.items():
            results[name].append(scores(model, test["src"], test["tgt"]))
        for name, loss_fn in tuned.items():
            model = fit(loss_fn, train, seed=200 + seed, epochs=finetune, start=models["CE"], lr=1e-4)
            results[name].append(scores(model, test["src"], test["tgt"]))
        if seed == 0:  # gradient sizes w.r.t. the logits on 32 test sentences, for reading the table
            z = predict(models["CE"], test["src"][:32]).requires_grad_(True)
            (g_ce,) = torch.autograd.grad(ce(z, test["tgt"][:32]), z)
            (g_sur,) = torch.autograd.grad(sur(z, test["tgt"][:32]), z)
            grads = {"ce": float(g_ce.norm()), "sur": float(g_sur.norm()),
                     "cos": float(F.cosine_similarity(g_ce.flatten(), g_sur.flatten(), dim=0))}
    return {"report": rep, "results": results, "seconds": time.perf_counter() - t0, "epochs": epochs,
            "seeds": seeds, "grads": grads, "finetune": finetune}


def table(out: dict[str, Any]) -> str:
    cols = ["BLEU", "chrF", "edit distance", "exact match"]
    lines = [f"| loss | {' | '.join(cols)} |", "|" + " --- |" * (len(cols) + 1)]
    for name, runs in out["results"].items():
        cells = []
        for c in cols:
            vals = [r[c] for r in runs]
            sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
            cells.append(f"{100 * statistics.mean(vals):.2f} ± {100 * sd:.2f}")
        lines.append(f"| {name} | {' | '.join(cells)} |")
    rep = out["report"]
    return "\n".join([
        f"Test set, {out['seeds']} seeds, {out['epochs']} epochs each (scores × 100; edit distance lower is "
        "better).", "", *lines, "",
        f"BLEU surrogate on {rep.n_validation_batches} held-out batches of {rep.batch_size} CE-checkpoint outputs: "
        f"Spearman {rep.spearman:.4f} / Kendall {rep.kendall:.4f}; {rep.baseline} {rep.baseline_spearman:.4f} / "
        f"{rep.baseline_kendall:.4f}; learned in {rep.learn_seconds:.1f} s ({rep.steps} steps).",
        f"Gradient w.r.t. the logits of 32 test sentences under seed 0's CE model: norm {out['grads']['ce']:.4f} "
        f"(CE) vs {out['grads']['sur']:.4f} (surrogate), cosine {out['grads']['cos']:.3f}.",
        f"Total {out['seconds']:.0f} s on {torch.get_num_threads()} CPU thread(s) of a shared machine.",
    ])


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--finetune", type=int, default=3, help="fine-tuning epochs")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(table(run(seeds=args.seeds, epochs=args.epochs, finetune=args.finetune)))

