"""Does a classification surrogate rank batches of a real model's logits? "Linear-model logits": a random linear model
on Gaussian features, its logits at temperatures 0.5 to 8, labels from a noisier copy of the same model.

Issue 22 found that ``ml.learn("accuracy", num_classes=1000)`` with defaults ranked such batches at Spearman 0.771
against cross-entropy's 0.880, while its own report (G_R batches) said 0.879 against 0.761. These batches are built
here, independently of the classification G_R's code (``metricloss.tasks.classification``), so they test whether G_R
covers what a real model gives:

- a model: ``W`` ``(d, C)``, Gaussian, scaled so that its logits ``x W`` have standard deviation :data:`LOGIT_STD`
  on features ``x ~ N(0, I_d)`` (``d`` = :data:`FEATURES`);
- each batch: fresh features, a temperature ``t`` log-uniform in [0.5, 8] (logits ``x W / t``: from confident to
  nearly flat), and labels from a noisier copy of the model, ``x (W + nu E)`` (``E`` a fresh Gaussian matrix of
  ``W``'s scale, ``nu`` uniform in [0, 2] per batch): its arg-max (``labels="argmax"``) or a draw from its softmax at
  the batch's temperature, ``softmax(x (W + nu E) / t)`` (``labels="sampled"``: the labels are distributed as the
  noisier copy believes, so flat batches get nearly random labels). The model's errors are where the copy disagrees
  with it: correlated with the model's own scores, confident ones included.

Held-out Spearman between the negated loss and the metric over the batches, for the surrogate and for cross-entropy
on the same batches. Run::

    .venv/bin/python benchmarks/linear_model_logits.py               # learn with defaults at C = 10, 100, 1000
    .venv/bin/python benchmarks/linear_model_logits.py --classes 1000 --steps 30  # a shorter learn
    .venv/bin/python benchmarks/linear_model_logits.py --surrogate classification-accuracy  # a shipped or saved one
    .venv/bin/python benchmarks/linear_model_logits.py --metric top5_accuracy --surrogate classification-top5-accuracy

Learning is ``ml.learn(metric, num_classes=C, seed=0)`` with the library's defaults (``--steps`` caps the steps);
learning time depends on the machine's load (printed first), the correlations do not.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import torch

import metricloss as ml
from common import machine_line  # benchmarks/common.py: a script's folder is on sys.path when it runs
from metricloss.evaluation import agreement
from metricloss.metrics.base import as_metric
from metricloss.tasks import get_task

__all__ = ["linear_model_batches", "rank_row"]

#: Width of the Gaussian features the linear model reads.
FEATURES = 64
#: Standard deviation of the model's logits at temperature 1.
LOGIT_STD = 3.0
TEMPERATURES = (0.5, 8.0)
#: Range of the label noise ``nu``: labels are the arg-max of ``x (W + nu E)``.
NOISE = (0.0, 2.0)


LABELS = ("argmax", "sampled")


def linear_model_batches(n: int, batch_size: int, num_classes: int, seed: int = 0, features: int = FEATURES,
                         labels: str = "argmax") -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` batches of a random linear model's logits ``(n, batch_size, num_classes)`` and labels
    ``(n, batch_size)`` from a noisier copy of it (see the module docstring; ``labels`` one of :data:`LABELS`). One
    model per ``seed``."""
    g = torch.Generator().manual_seed(seed)
    scale = LOGIT_STD / math.sqrt(features)
    w = torch.randn(features, num_classes, generator=g) * scale
    preds, targets = [], []
    for _ in range(n):
        x = torch.randn(batch_size, features, generator=g)
        t = math.exp(math.log(TEMPERATURES[0]) + float(torch.rand(1, generator=g))
                     * (math.log(TEMPERATURES[1]) - math.log(TEMPERATURES[0])))
        nu = NOISE[0] + float(torch.rand(1, generator=g)) * (NOISE[1] - NOISE[0])
        noisy = w + nu * torch.randn(features, num_classes, generator=g) * scale
        preds.append(x @ w / t)
        if labels == "argmax":
            targets.append((x @ noisy).argmax(dim=-1))
        else:
            targets.append(torch.multinomial((x @ noisy / t).softmax(dim=-1), 1, generator=g)[:, 0])
    return torch.stack(preds), torch.stack(targets)


def rank_row(sur: ml.Surrogate, metric: str, num_classes: int, n: int = 256, batch_size: int = 128, seed: int = 0,
             labels: str = "argmax") -> tuple[dict[str, float], dict[str, float]]:
    """(surrogate, cross-entropy) agreement with ``metric`` on ``n`` linear-model batches at ``num_classes``."""
    task = get_task("classification", num_classes=num_classes)
    met = as_metric(metric, None, task.metrics)
    pred, target = linear_model_batches(n, batch_size, num_classes, seed, labels=labels)
    values = met.evaluate(pred, target)
    with torch.no_grad():
        ours = torch.cat([sur.net(p, t) for p, t in zip(pred.split(64), target.split(64), strict=True)])
    return agreement(ours, values, True), agreement(task.baseline(pred, target), values, True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--classes", type=int, nargs="+", default=[10, 100, 1000])
    p.add_argument("--metric", default="accuracy")
    p.add_argument("--surrogate", help="a zoo name or a saved file to measure instead of learning one per C")
    p.add_argument("--steps", type=int, help="cap on learning steps (default: learn's)")
    p.add_argument("--batches", type=int, default=256)
    p.add_argument("--seed", type=int, default=1, help="seed of the linear model and its batches")
    p.add_argument("--save", help="folder to save each learned surrogate in (accuracy-C1000.safetensors, ...)")
    args = p.parse_args()
    print(machine_line())
    print(f"\n{args.metric}: held-out Spearman / Kendall on {args.batches} linear-model batches of 128 "
          f"(temperatures {TEMPERATURES[0]}-{TEMPERATURES[1]}, labels from a noisier copy; seed {args.seed})\n")
    print("| C | surrogate | learn s | report: surrogate / CE (its own batches) | labels | linear-model: surrogate | "
          "linear-model: CE |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for c in args.classes:
        t0 = time.perf_counter()
        if args.surrogate:
            sur = ml.pretrained(args.surrogate) if args.surrogate in ml.zoo.available() else ml.load(args.surrogate)
            name = args.surrogate
        else:
            extra = {} if args.steps is None else {"steps": args.steps}
            sur = ml.learn(args.metric, num_classes=c, seed=0, progress=False, **extra)
            name = f"learn(num_classes={c}{'' if args.steps is None else f', steps={args.steps}'})"
            if args.save:
                Path(args.save).mkdir(parents=True, exist_ok=True)
                sur.save(Path(args.save) / f"{args.metric}-C{c}.safetensors")
        seconds = time.perf_counter() - t0
        rep = sur.report
        own = f"{rep.spearman:.3f} / {rep.baseline_spearman:.3f}" if rep is not None else "-"
        for labels in LABELS:
            ours, ce = rank_row(sur, args.metric, c, args.batches, seed=args.seed, labels=labels)
            print(f"| {c} | {name} | {seconds:.0f} | {own} | {labels} | {ours['spearman']:.3f} / {ours['kendall']:.3f} "
                  f"| {ce['spearman']:.3f} / {ce['kendall']:.3f} |", flush=True)


if __name__ == "__main__":
    main()
