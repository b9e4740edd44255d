"""Learn the shipped sequence surrogate (``sequence-bleu``) and write its model card.

Reproduce with::

    .venv/bin/python scripts/zoo_sequence.py

Every number in the card is measured by this script when it runs.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

import metricloss as ml
from metricloss.evaluation import agreement
from metricloss.tasks import get_task
from metricloss.tasks import sequence as _sequence  # noqa: F401  (registers task="sequence")

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from correlation_sequence import LEARN, SHAPE
from make_zoo import ZOO, net_losses, write_card

NAME = "sequence-bleu"


def _rows(sur: ml.Surrogate, shapes: list[dict], n: int = 512, seed: int = 777) -> list[tuple[str, str, dict, dict]]:
    out = []
    for shape in shapes:
        task = get_task("sequence", **shape)
        met = task.metrics["bleu"]
        bs = sur.report.batch_size
        pred, target = task.random_batches(n, bs, torch.Generator().manual_seed(seed))
        values = met.evaluate(pred, target)
        ours = net_losses(sur, pred, target, chunk=128)
        where = f"{n} random batches of {bs} (G_R, unseen seed), V = {shape['vocab_size']}, T = {shape['max_length']}"
        out.append((where, task.baseline_name, agreement(task.baseline(pred, target), values, True),
                    agreement(ours, values, True)))
    return out


def make_bleu() -> None:
    t0 = time.perf_counter()
    sur = ml.learn("bleu", task="sequence", seed=0, progress=False, **LEARN, **SHAPE)
    seconds = time.perf_counter() - t0
    path = ZOO / f"{NAME}.safetensors"
    sur.save(path)
    rows = _rows(sur, [SHAPE, {"vocab_size": 100, "max_length": 24}, {"vocab_size": 32, "max_length": 16}])
    cfg = sur.net_config
    write_card(NAME, sur, seconds, rows,
               "G_R only: random reference sentences (uniform tokens, lengths T/4..T, padded with -100) and logits "
               "whose arg-max is the reference edited by substitutions, insertions (random or repeated tokens), "
               "deletions, adjacent swaps and shifts at a random rate and mix per batch, at random logit scales and "
               "confidence gaps.",
               command="python scripts/zoo_sequence.py",
               usage="import torch.nn.functional as F, metricloss as ml\n"
                     f"sur = ml.pretrained({NAME!r})\n"
                     "# logits (B, T, V) of a non-autoregressive model, y (B, T) int64 padded with -100\n"
                     "loss = F.cross_entropy(logits.flatten(0, 1), y.flatten(), ignore_index=-100) + sur(logits, y)",
               note=f"Its per-token inputs ({', '.join(cfg['features'])}, neighbour window {cfg['window']}) and "
                    "sinusoidal positions do not depend on the vocabulary size or the maximum length, so "
                    f"`ml.pretrained({NAME!r}, vocab_size=V, max_length=T)` accepts other shapes (the rows above for "
                    f"other V and T measure how well it transfers); it was learned for {sur.report.task_config}. "
                    "Hypotheses are decoded greedily (arg-max) at every non-padding position of the target.\n\n"
                    "The gradient penalty sets its gradient norm to about 1 per batch, far larger than token "
                    "cross-entropy's on a reasonable model, so with weight 1 it dominates a training step; "
                    "`benchmarks/downstream_sequence.py` measures adding it from scratch and as a fine-tune before "
                    "you rely on it.")
    print(f"{path.name}: {path.stat().st_size / 1024:.0f} KiB")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    torch.set_num_threads(parser.parse_args().threads)
    make_bleu()
