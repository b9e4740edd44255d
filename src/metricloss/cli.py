"""The `metricloss` command: `demo`, `learn` and `evaluate`."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

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


def _evaluate(args: argparse.Namespace) -> int:
    import torch

    from .evaluation import agreement, gradient_agreement
    from .io import load
    from .metrics.base import as_metric

    sur = load(args.surrogate)
    task = sur.task
    metric_name = args.metric or (sur.report.metric if sur.report else task.default_metric)
    met = as_metric(metric_name, None, task.metrics)
    pred, target = task.random_batches(args.batches, args.batch_size, torch.Generator().manual_seed(args.seed))
    values = met.evaluate(pred, target)
    ours = agreement(sur.batch_losses(pred, target), values, met.higher_is_better)
    base = agreement(task.baseline(pred, target), values, met.higher_is_better)
    probe = min(args.batches, 64)
    ours["gradient"] = gradient_agreement(sur.net, met, pred[:probe], target[:probe], seed=args.seed)
    base["gradient"] = gradient_agreement(task.baseline, met, pred[:probe], target[:probe], seed=args.seed)
    print(f"{args.surrogate}: task {task.name} {task.config()}, metric {met.name}, "
          f"{args.batches} random batches of {args.batch_size} (seed {args.seed})\n")
    print(f"| loss | Spearman | Kendall | gradient agreement ({probe} batches) |\n| --- | --- | --- | --- |")
    for name, r in ((f"{task.baseline_name} (baseline)", base), ("surrogate", ours)):
        print(f"| {name} | {r['spearman']:.4f} | {r['kendall']:.4f} | {r['gradient']:.4f} |")
    if sur.report is not None:
        print("\nStored report card:\n")
        print(sur.report.to_markdown())
    return 0


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

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

    p = sub.add_parser("evaluate", help="measure a saved surrogate against its metric on fresh random batches")
    p.add_argument("surrogate", help="a .safetensors file written by metricloss")
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
