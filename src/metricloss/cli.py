"""The `metricloss` command: `demo`, `learn` and `evaluate`."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ._version import __version__

__all__ = ["main"]


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    names = tuple(args.datasets.split(","))
    run_demo(args.out, names=names, seeds=args.seeds, progress=not args.quiet)
    return 0


def _task_kwargs(args: argparse.Namespace) -> dict:
    kw = {}
    if args.num_classes is not None:
        kw["num_classes"] = args.num_classes
    return kw


def _learn(args: argparse.Namespace) -> int:
    from .learn import learn

    sur = learn(args.metric, args.task, objective=args.objective, steps=args.steps, seed=args.seed,
                progress=not args.quiet, **_task_kwargs(args))
    sur.save(args.out)
    print(sur.report.to_markdown() if sur.report else "")
    print(f"\nsaved to {args.out}")
    return 0


#: The dtype the gradient probe runs in, per kind of loss: the non-parametric loss's sharp settings have gradients
#: whose squares underflow float32 (as its builder measures them).
_PROBE_DTYPES = {"nonparametric": "float64"}


def _evaluate(args: argparse.Namespace) -> int:
    import torch

    from .evaluation import measure
    from .io import load
    from .metrics.base import as_metric

    loss = load(args.surrogate)
    task = loss.task
    if task is None:
        raise ValueError(f"{args.surrogate} names no task, so there are no random batches to measure it on; "
                         "rebuild it with task= (e.g. metricloss.build_uniloss(..., task='pose'))")
    metric_name = args.metric or (loss.report.metric if loss.report else task.default_metric)
    met = as_metric(metric_name, None, task.metrics)
    pred, target = task.random_batches(args.batches, args.batch_size, torch.Generator().manual_seed(args.seed))
    probe = min(args.batches, 64)
    dtype = _PROBE_DTYPES.get(loss.kind)
    rep = measure(loss, task, met, (pred, target), method=loss.report.method if loss.report else loss.kind,
                  validation=f"random batches (G_R), seed {args.seed}", gradient_batches=probe,
                  gradient_dtype=getattr(torch, dtype) if dtype else None, seed=args.seed)
    print(f"{args.surrogate}: {loss.kind} loss, task {task.name} {task.config()}, metric {met.name}, "
          f"{args.batches} random batches of {args.batch_size} (seed {args.seed})\n")
    print(f"| loss | Spearman | Kendall | gradient agreement ({probe} batches) |\n| --- | --- | --- | --- |")
    rows = ((f"{task.baseline_name} (baseline)", rep.baseline_spearman, rep.baseline_kendall,
             rep.baseline_gradient_agreement), ("surrogate", rep.spearman, rep.kendall, rep.gradient_agreement))
    for name, spearman, kendall, gradient in rows:
        print(f"| {name} | {spearman:.4f} | {kendall:.4f} | {gradient:.4f} |")
    if loss.report is not None:
        print("\nStored report card:\n")
        print(loss.report.to_markdown())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="metricloss", description="Turn evaluation metrics into losses.")
    parser.add_argument("--version", action="version", version=f"metricloss {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("demo", help="the main job: learn accuracy and macro-F1 surrogates on real digits and compare "
                                    "losses")
    p.add_argument("--out", default="metricloss-report", help="report folder (default: %(default)s)")
    p.add_argument("--datasets", default="digits,mnist_5k,mnist_5k_long_tail",
                   help="comma-separated: digits, mnist_5k, mnist_5k_long_tail (imbalanced, macro F1)")
    p.add_argument("--seeds", type=int, default=5, help="seeds per training loss (default: %(default)s)")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=_demo)

    p = sub.add_parser("learn", help="learn a surrogate for a built-in metric and save it")
    p.add_argument("--task", default="classification")
    p.add_argument("--metric", default="accuracy")
    p.add_argument("--num-classes", type=int, default=None)
    p.add_argument("--objective", default="spearman", choices=["spearman", "kendall", "l2", "l1"])
    p.add_argument("--steps", type=int, default=None, help="upper bound on learning steps")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="output .safetensors path")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_learn)

    p = sub.add_parser("evaluate", help="measure a saved loss (learned, UniLoss or non-parametric) against its metric "
                                        "on fresh random batches, beside the task's baseline")
    p.add_argument("surrogate", help="a .safetensors file written by metricloss (any kind of loss)")
    p.add_argument("--metric", default=None, help="built-in metric name (default: the one it was learned for)")
    p.add_argument("--batches", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--seed", type=int, default=12345)
    p.set_defaults(func=_evaluate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except (ValueError, TypeError, FileNotFoundError, ImportError) as err:
        print(f"metricloss {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
