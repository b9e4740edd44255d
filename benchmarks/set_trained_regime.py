"""Set F1 surrogates on a trained model's batches: the former recipe against the trained-model regime, over seeds.

Two recipes are learned with ``correlation_set.LEARN`` (the zoo's settings) for each seed:

- ``former``: the set-f1 recipe shipped until 2026-11-30: the O(B^2) logistic kernel, one soft sign (sharpness 3),
  G_R from the spread regime only (``SetTask.trained_share = 0``);
- ``trained``: the current one: the O(B log B) spline kernel, soft signs at sharpness 3 and 12, 60 % of G_R from
  the trained-model regime (``SetTask.trained_batches``).

Each surrogate (and each ``--file`` given) is scored with BCE on the same held-out stacks: G_R batches of either
regime (binary and 4 labels, macro F1) and real outputs: breast-cancer training-set scores of 16 BCE checkpoints of
the MLP of ``benchmarks/downstream_set.py``, split seed 100 (the zoo card's rows, batches of 64 and 128) and split
seed 101 (a second model on another split, batches of 64). Spearman between the negated loss and F1.

Run::

    git show dbf06ea:src/metricloss/zoo/set-f1.safetensors > /tmp/set-f1-former.safetensors
    .venv/bin/python benchmarks/set_trained_regime.py --seeds 0 1 2 \\
        --file /tmp/set-f1-former.safetensors --file src/metricloss/zoo/set-f1.safetensors
    .venv/bin/python benchmarks/set_trained_regime.py --seeds --large \
        --file /tmp/set-f1-former.safetensors --file src/metricloss/zoo/set-f1.safetensors
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
from collections.abc import Callable
from pathlib import Path

import torch

import correlation_set
import downstream_set
import make_zoo
import metricloss as ml
from metricloss.evaluation import agreement
from metricloss.tasks import get_task
from metricloss.tasks import set as set_task

Stack = tuple[torch.Tensor, torch.Tensor]

RECIPES: dict[str, tuple[dict, float]] = {
    "former": ({"kernel": "logistic", "sharpness": 3.0}, 0.0),
    "trained": ({"kernel": "spline", "sharpness": [3.0, 12.0]}, 0.6),
}


@functools.cache
def _outputs(split_seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return downstream_set.train(split_seed, checkpoints=16)[1]


def stacks(large: bool = False) -> dict[str, Callable[[], Stack]]:
    """The held-out stacks by column name (drawn when called); ``large``: G_R batches of 1024 and 4096 instead."""
    binary, labels4 = get_task("set"), get_task("set", num_labels=4)
    if large:
        return {
            "spread 1024": lambda: binary.spread_batches(256, 1024, torch.Generator().manual_seed(779)),
            "trained 1024": lambda: binary.trained_batches(256, 1024, torch.Generator().manual_seed(780)),
            "spread 4096": lambda: binary.spread_batches(128, 4096, torch.Generator().manual_seed(779)),
            "trained 4096": lambda: binary.trained_batches(128, 4096, torch.Generator().manual_seed(780)),
        }
    return {
        "spread 64": lambda: binary.spread_batches(512, 64, torch.Generator().manual_seed(777)),
        "spread 64, 4 labels": lambda: labels4.spread_batches(512, 64, torch.Generator().manual_seed(777)),
        "trained 64": lambda: binary.trained_batches(512, 64, torch.Generator().manual_seed(778)),
        "trained 64, 4 labels": lambda: labels4.trained_batches(512, 64, torch.Generator().manual_seed(778)),
        "breast cancer 64 (split 100)": lambda: make_zoo.checkpoint_batches(_outputs(100), 64),
        "breast cancer 128 (split 100)": lambda: make_zoo.checkpoint_batches(_outputs(100), 128),
        "breast cancer 64 (split 101)": lambda: make_zoo.checkpoint_batches(_outputs(101), 64),
    }


def scores(losses: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], large: bool = False) -> dict[str, float]:
    """Spearman of ``-losses(pred, target)`` against F1 on every stack."""
    out = {}
    for name, draw in stacks(large).items():
        pred, target = draw()
        task = get_task("set", num_labels=None if pred.dim() == 2 else pred.shape[-1])
        out[name] = agreement(losses(pred, target), task.metrics["f1"].evaluate(pred, target), True)["spearman"]
    return out


def _former_relabel(self: set_task.SetTask, pred: torch.Tensor, target: torch.Tensor,
                    generator: torch.Generator) -> Stack:
    """``SetTask.relabel`` until 2026-11-30: real scores kept, a uniformly random fraction of each batch's labels
    re-drawn at its positive rate."""
    t = target.to(torch.float32)
    frac = torch.rand((t.shape[0], 1, *t.shape[2:]), generator=generator)
    redraw = torch.rand(t.shape, generator=generator) < frac
    fresh = (torch.rand(t.shape, generator=generator) < t.mean(dim=1, keepdim=True)).float()
    return pred, torch.where(redraw, fresh, t).to(target.dtype)


def learn(recipe: str, seed: int, outputs: list | None = None) -> ml.Surrogate:
    """Learn ``recipe`` with ``seed`` (with ``outputs``: G_M from them, relabelled the recipe's way)."""
    net, share = RECIPES[recipe]
    before = set_task.SetTask.trained_share, set_task.SetTask.relabel
    set_task.SetTask.trained_share = share
    if recipe == "former":
        set_task.SetTask.relabel = _former_relabel
    try:
        config = {**get_task("set").default_net_config(), **net}
        extra = {"outputs": outputs, "batch_size": 64} if outputs is not None else {}
        return ml.learn("f1", task="set", seed=seed, progress=False, net=config, **correlation_set.LEARN, **extra)
    finally:
        set_task.SetTask.trained_share, set_task.SetTask.relabel = before


def _net_losses(sur: ml.Surrogate, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return make_zoo.net_losses(sur, pred, target, chunk=max(1, 8192 // pred.shape[1]))  # logistic: B^2 per batch


def run_with_outputs(seeds: list[int]) -> list[tuple[str, dict[str, float]]]:
    """Each recipe learned with ``outputs=`` the 16 checkpoints of split 100 (G_M; the G_R pool half relabels them),
    scored on split 101's checkpoints (another model, never seen) and on G_R batches of both regimes."""
    cols = ("spread 64", "trained 64", "breast cancer 64 (split 101)")

    def pick(r: dict[str, float]) -> dict[str, float]:
        return {k: r[k] for k in cols}

    rows = [("BCE", pick(scores(lambda p, t: get_task("set", num_labels=None if p.dim() == 2 else p.shape[-1])
                                .baseline(p, t))))]
    for recipe in RECIPES:
        per_seed = []
        for seed in seeds:
            sur = learn(recipe, seed, _outputs(100))
            per_seed.append(pick(scores(functools.partial(_net_losses, sur))))
            rows.append((f"{recipe} + outputs, seed {seed}", per_seed[-1]))
        if len(seeds) > 1:
            rows.append((f"{recipe} + outputs, mean of {len(seeds)} seeds",
                         {k: statistics.mean(r[k] for r in per_seed) for k in cols}))
    return rows


def run(seeds: list[int], files: list[Path], large: bool = False) -> list[tuple[str, dict[str, float]]]:
    rows = [("BCE", scores(lambda p, t: get_task("set", num_labels=None if p.dim() == 2 else p.shape[-1])
                           .baseline(p, t), large))]
    for path in files:
        sur = ml.load(path)
        rows.append((f"file {path.name} ({sur.net.kernel})", scores(functools.partial(_net_losses, sur), large)))
    for recipe in RECIPES:
        per_seed = []
        for seed in seeds:
            sur = learn(recipe, seed)
            per_seed.append(scores(functools.partial(_net_losses, sur), large))
            rows.append((f"{recipe}, seed {seed}", per_seed[-1]))
        if len(seeds) > 1:
            rows.append((f"{recipe}, mean of {len(seeds)} seeds",
                         {k: statistics.mean(r[k] for r in per_seed) for k in per_seed[0]}))
    return rows


def markdown(rows: list[tuple[str, dict[str, float]]]) -> str:
    cols = list(rows[0][1])
    out = ["| loss | " + " | ".join(cols) + " |", "| --- |" + " --- |" * len(cols)]
    out += [f"| {name} | " + " | ".join(f"{r[c]:.3f}" for c in cols) + " |" for name, r in rows]
    return "\n".join(out)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2])
    parser.add_argument("--file", type=Path, action="append", default=[], help="a saved set surrogate to score too")
    parser.add_argument("--large", action="store_true", help="G_R batches of 1024 and 4096 instead (slow for the "
                        "logistic kernel)")
    parser.add_argument("--with-outputs", action="store_true", help="learn each recipe with outputs= (split 100's "
                        "checkpoints) and score it on split 101's")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    load = os.getloadavg()
    table = markdown(run_with_outputs(args.seeds) if args.with_outputs else run(args.seeds, args.file, args.large))
    print(f"{torch.get_num_threads()} thread(s); load average at start {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}\n")
    print(table)
