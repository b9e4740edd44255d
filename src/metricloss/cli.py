"""The `metricloss` command: `demo`, `learn` and `evaluate`."""

from __future__ import annotations

import argparse
import importlib
import inspect
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from ._version import __version__

__all__ = ["main"]


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    names = tuple(args.datasets.split(","))
    run_demo(args.out, names=names, seeds=args.seeds, progress=not args.quiet)
    return 0


#: The shape options of ``metricloss learn``: option -> the task keyword it sets.
SHAPE_OPTIONS = {"--num-classes": "num_classes", "--num-keypoints": "num_keypoints", "--heatmap-size": "heatmap_size",
                 "--vocab-size": "vocab_size", "--max-length": "max_length", "--num-labels": "num_labels",
                 "--image-size": "image_size", "--ignore-index": "ignore_index"}
#: A small shape per built-in family, only to list its metrics in ``learn --help``.
_EXAMPLE_SHAPES = {"classification": {"num_classes": 10}, "ordinal": {"num_classes": 5}, "set": {},
                   "pose": {"num_keypoints": 4, "heatmap_size": (16, 16)},
                   "sequence": {"vocab_size": 32, "max_length": 24}, "segmentation": {"num_classes": 3}}


def _families_text() -> str:
    """The epilog of ``learn --help``: every family, its shape options and its built-in metrics."""
    from .tasks.base import TASKS, get_task

    lines = ["task families (--task), their shape options and built-in metrics (--metric):"]
    for name, cls in sorted(TASKS.items()):
        params = inspect.signature(cls.__init__).parameters
        required = _required_shapes(cls)
        options = [o + (" (required)" if k in required else "") for o, k in SHAPE_OPTIONS.items() if k in params]
        metrics = []
        if name in _EXAMPLE_SHAPES:
            task = get_task(name, **_EXAMPLE_SHAPES[name])
            metrics = [f"{m}{'' if met.higher_is_better else ' (lower is better)'}" for m, met in task.metrics.items()]
        lines.append(f"  {name:15s} shape options: {' '.join(options) or 'none'}")
        lines.append(f"  {'':15s} metrics: {', '.join(metrics) or 'see the task'} (default: {cls.default_metric})")
    lines += ["", "--metric also takes module:function, a user metric fn(pred, target) -> float on one batch",
              "(the module is imported from the current directory or the Python path; higher is better unless",
              "--lower-is-better). With --outputs FILE (a torch.save'd list of (pred, target) batches) every shape",
              "option not given, required ones included, is read from the outputs."]
    return "\n".join(lines)


class _Parser(argparse.ArgumentParser):
    """An argument parser whose epilog is computed when help is printed (it imports the tasks, which the other
    commands and ``--version`` should not pay for)."""

    def __init__(self, *args: Any, epilog_fn: Callable[[], str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.epilog_fn = epilog_fn

    def format_help(self) -> str:
        if self.epilog_fn is not None and self.epilog is None:
            self.epilog = self.epilog_fn()
        return super().format_help()


def _required_shapes(task_cls: type) -> list[str]:
    """The shape keywords a task family cannot be built without: its constructor's parameters with no default."""
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return [name for name, p in list(inspect.signature(task_cls.__init__).parameters.items())[1:]
            if p.kind in kinds and p.default is inspect.Parameter.empty]


def _missing_shapes_message(task: str, missing: list[str]) -> str:
    """``--vocab-size and --max-length are required for --task sequence (or give --outputs FILE to read them)``."""
    flags = {key: option for option, key in SHAPE_OPTIONS.items()}
    names = [flags.get(key, f"`{key}` (no command-line option)") for key in missing]
    listed = names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"
    return (f"{listed} {'is' if len(names) == 1 else 'are'} required for --task {task} "
            f"(or give --outputs FILE to read {'it' if len(names) == 1 else 'them'})")


def _task_kwargs(args: argparse.Namespace) -> dict:
    from .tasks.base import TASKS

    kw = {key: getattr(args, key) for key in SHAPE_OPTIONS.values() if getattr(args, key, None) is not None}
    for key in ("heatmap_size", "image_size"):
        if key in kw:
            kw[key] = tuple(kw[key])
    if args.task in TASKS:
        params = inspect.signature(TASKS[args.task].__init__).parameters
        known = [o for o, k in SHAPE_OPTIONS.items() if k in params]
        for option, key in SHAPE_OPTIONS.items():
            if key in kw and key not in params:
                raise ValueError(f"`{option}` is not a shape option of task {args.task!r} "
                                 f"(its options: {' '.join(known) or 'none'})")
        missing = [key for key in _required_shapes(TASKS[args.task]) if key not in kw]
        if missing and args.outputs is None:  # with outputs, learn reads them (and names any it cannot)
            raise ValueError(_missing_shapes_message(args.task, missing))
    return kw


def _resolve_metric(spec: str) -> str | Callable[..., Any]:
    """A built-in metric name as is; ``module:function`` imported (the current directory first on the path)."""
    if ":" not in spec:
        return spec
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ValueError(f"`--metric`: expected a built-in name or module:function, got {spec!r}")
    added = os.getcwd() not in sys.path
    if added:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ValueError(f"`--metric` {spec!r}: cannot import module {module_name!r} ({err})") from None
    finally:
        if added:
            sys.path.remove(os.getcwd())
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise ValueError(f"`--metric` {spec!r}: module {module_name!r} has no callable {attr!r}")
    if inspect.isclass(fn):
        raise ValueError(f"`--metric` {spec!r} is a class; name a function fn(pred, target) -> float or a metric "
                         f"object (e.g. in your module: `my_metric = {attr}(...)`, then --metric "
                         f"{module_name}:my_metric)")
    return fn


def _load_outputs(path: str | None) -> list | None:
    if path is None:
        return None
    import torch

    try:
        data = torch.load(path, weights_only=True)  # tensors and containers only: no code runs
    except FileNotFoundError:
        raise
    except Exception as err:
        raise ValueError(f"`--outputs` {path}: not a torch.save'd list of (pred, target) tensors ({err})") from None
    if not isinstance(data, list | tuple):
        raise ValueError(f"`--outputs` {path}: expected a list of (pred, target) batches, got {type(data).__name__}")
    return list(data)


def _learn(args: argparse.Namespace) -> int:
    from .learn import learn
    from .tasks.base import TASKS

    metric = args.metric or (TASKS[args.task].default_metric if args.task in TASKS else "accuracy")
    options = {k: getattr(args, k) for k in ("batch_size", "batches_per_step", "pool_size") if getattr(args, k)}
    if args.validation_batches is not None:
        options["validation_batches"] = args.validation_batches
    if args.memory_budget is not None:
        options["memory_budget"] = args.memory_budget
    sur = learn(_resolve_metric(metric), args.task, objective=args.objective, steps=args.steps, seed=args.seed,
                progress=not args.quiet, outputs=_load_outputs(args.outputs),
                higher_is_better=False if args.lower_is_better else None, **options, **_task_kwargs(args))
    sur.save(args.out)
    print(sur.report.to_markdown() if sur.report else "")
    print(f"\nsaved to {args.out}")
    return 0


#: The dtype the gradient probe runs in, per kind of loss: the non-parametric loss's sharp settings have gradients
#: whose squares underflow float32 (as its builder measures them).
_PROBE_DTYPES = {"nonparametric": "float64"}


def _load_any(spec: str) -> Any:
    """A saved loss from a file, or a shipped one by its zoo name (``classification-accuracy``)."""
    from .io import load
    from .zoo import available, pretrained

    if not os.path.exists(spec) and spec in available():
        return pretrained(spec)
    return load(spec)


def _fresh_batches(args: argparse.Namespace, loss: Any, task: Any, met: Any, budget: int) -> tuple:
    """``--batches`` / ``--batch-size`` / ``--seed``: fresh G_R batches (unset ones from the card, else defaults),
    as many as fit in the budget's held-out share."""
    import torch

    from .learning.batches import heldout_count

    size = args.batch_size or (loss.report.batch_size if loss.report else task.default_batch_size)
    wanted = args.batches or (loss.report.n_validation_batches if loss.report else 256)
    n = heldout_count(wanted, task.batch_nbytes(size), budget)
    seed = (loss.report.settings.get("seed", 0) if loss.report else 12345) if args.seed is None else args.seed
    if n < wanted:
        print(f"note: {n} of the {wanted} batches asked for fit in the memory budget's held-out share")
    pred, target = task.for_metric(met).random_batches(n, size, torch.Generator().manual_seed(seed))
    return pred, target, f"random batches (G_R), seed {seed}", seed


def _evaluation_metric(args: argparse.Namespace, loss: Any, task: Any) -> Any:
    """``--metric`` (a built-in name or module:function), else the metric the loss's card names. A metric that is not
    built in (a user function, a torchmetrics object) must be given again; its direction is the card's unless
    ``--lower-is-better`` says otherwise."""
    from .metrics.base import as_metric

    if args.metric is None:
        name = loss.report.metric if loss.report else task.default_metric
        if name not in task.metrics:
            raise ValueError(
                f"{args.surrogate} was learned for the metric {name!r}, which is not a built-in metric of task "
                f"{task.name!r} ({', '.join(sorted(task.metrics))}); a user function or torchmetrics object is not "
                "stored in the file, so pass it with --metric module:function (a function fn(pred, target) -> "
                "float on one batch, or a metric object, importable from the current directory or the Python path)")
        return as_metric(name, None, task.metrics)
    direction = False if args.lower_is_better else None
    met = as_metric(_resolve_metric(args.metric), direction, task.metrics)
    if direction is None and loss.report is not None and met.name == loss.report.metric:
        met = as_metric(met, loss.report.higher_is_better)  # the direction it was learned with
    return met


def _evaluate(args: argparse.Namespace) -> int:
    import torch

    from ._memory import format_bytes, parse_budget
    from .evaluation import measure
    from .replay import remeasure

    loss = _load_any(args.surrogate)
    task = loss.task
    if task is None:
        raise ValueError(f"{args.surrogate} names no task, so there are no random batches to measure it on; "
                         "rebuild it with task= (e.g. metricloss.build_uniloss(..., task='pose'))")
    budget = parse_budget(args.memory_budget, "--memory-budget")
    met = _evaluation_metric(args, loss, task)
    card = loss.report is not None and all(v is None for v in (args.batches, args.batch_size, args.seed))
    if card and loss.report.validation.startswith("held-out model outputs") and args.outputs is None:
        card = False
        print("note: its card was measured on held-out model outputs; without them (--outputs FILE) it is measured on "
              "random batches of the card's size and number")
    if card:  # the batches and probe settings its card was measured with: the card's numbers, reproduced
        rep = remeasure(loss, met, outputs=_load_outputs(args.outputs), memory_budget=budget)
        where = f"the card's batches: {rep.validation}, seed {loss.report.settings.get('seed', 0)}"
    else:
        pred, target, validation, seed = _fresh_batches(args, loss, task, met, budget)
        dtype = _PROBE_DTYPES.get(loss.kind)
        rep = measure(loss, task.for_metric(met), met, (pred, target),
                      method=loss.report.method if loss.report else loss.kind, validation=validation,
                      gradient_batches=min(pred.shape[0], 64), memory_budget=budget,
                      gradient_dtype=getattr(torch, dtype) if dtype else None, seed=seed)
        where = validation
    print(f"{args.surrogate}: {loss.kind} loss, task {task.name} {task.config()}, metric {met.name}, "
          f"{rep.n_validation_batches} batches of {rep.batch_size} ({where}); memory budget {format_bytes(budget)}\n")
    print("| loss | Spearman | Kendall | gradient agreement |\n| --- | --- | --- | --- |")
    rows = ((f"{task.baseline_name} (baseline)", rep.baseline_spearman, rep.baseline_kendall,
             rep.baseline_gradient_agreement), ("surrogate", rep.spearman, rep.kendall, rep.gradient_agreement))
    for name, spearman, kendall, gradient in rows:
        print(f"| {name} | {spearman:.4f} | {kendall:.4f} | {'-' if gradient is None else f'{gradient:.4f}'} |")
    print("\n" + "\n".join(rep.verdict.lines(task.baseline_name)))
    if loss.report is not None and loss.report.net_line() is not None:  # how it was learned: which net, and why
        print("\n" + loss.report.net_line())
    if loss.report is not None:
        if card:
            same = (rep.spearman, rep.kendall) == (loss.report.spearman, loss.report.kendall)
            print(f"\n{'Reproduces' if same else 'Differs from'} the stored card (Spearman "
                  f"{loss.report.spearman:.4f}, Kendall {loss.report.kendall:.4f}).")
        print("\nStored report card:\n")
        print(loss.report.to_markdown())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="metricloss", description="Turn evaluation metrics into losses.")
    parser.add_argument("--version", action="version", version=f"metricloss {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("demo", help="the main job: learn accuracy and macro-F1 surrogates on real digits and compare "
                                    "losses")
    p.add_argument("--out", default="metricloss-report", help="report folder (default: %(default)s)")
    p.add_argument("--datasets", default="digits,mnist_5k,mnist_5k_long_tail",
                   help="comma-separated: digits, mnist_5k, mnist_5k_long_tail (imbalanced, macro F1)")
    p.add_argument("--seeds", type=int, default=5, help="seeds per training loss (default: %(default)s)")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=_demo)

    p = sub.add_parser("learn", help="learn a surrogate for a metric of any task family and save it",
                       description="Learn a surrogate loss for a metric and save it (.safetensors).",
                       formatter_class=argparse.RawDescriptionHelpFormatter, epilog_fn=_families_text)
    p.add_argument("--task", default="classification", help="task family (default: %(default)s; listed below)")
    p.add_argument("--metric", default=None,
                   help="a built-in metric of the task (listed below) or module:function (default: the task's)")
    p.add_argument("--lower-is-better", action="store_true", help="the user metric is lower-is-better")
    p.add_argument("--outputs", default=None, metavar="FILE",
                   help="G_M: a torch.save'd list of (pred, target) batches; shapes not given are read from it")
    shapes = p.add_argument_group("shape options (those of the chosen --task; inferred from --outputs if omitted)")
    shapes.add_argument("--num-classes", type=int, default=None,
                        help="classification, ordinal, segmentation: C / K (segmentation: 1 for one binary logit)")
    shapes.add_argument("--num-keypoints", type=int, default=None, help="pose: K")
    shapes.add_argument("--heatmap-size", type=int, nargs=2, default=None, metavar=("H", "W"), help="pose: H W")
    shapes.add_argument("--vocab-size", type=int, default=None, help="sequence: V")
    shapes.add_argument("--max-length", type=int, default=None, help="sequence: the largest T")
    shapes.add_argument("--num-labels", type=int, default=None, help="set: L (omit for binary scores)")
    shapes.add_argument("--image-size", type=int, nargs=2, default=None, metavar=("H", "W"),
                        help="segmentation: H W of the random batches (default 64 64; the surrogate serves any size)")
    shapes.add_argument("--ignore-index", type=int, default=None,
                        help="segmentation: the target value of unlabelled pixels (default 255)")
    p.add_argument("--objective", default="spearman", choices=["spearman", "kendall", "l2", "l1", "gradient"])
    p.add_argument("--steps", type=int, default=None,
                   help="upper bound on learning steps (default: the task's, 2000 for small batches, 100 at C = 1000)")
    p.add_argument("--batch-size", type=int, default=None, help="samples per batch (default: the task's)")
    p.add_argument("--batches-per-step", type=int, default=None, help="N, batches ranked per step")
    p.add_argument("--pool-size", type=int, default=None, help="G_R batches drawn up front")
    p.add_argument("--validation-batches", type=int, default=None, help="held-out batches (default 256)")
    p.add_argument("--memory-budget", default=None, metavar="BYTES",
                   help="bytes or a size such as 512MiB that bounds the pool (half), the held-out batches (a quarter) "
                        "and each measurement chunk (an eighth) (default 2GiB)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="output .safetensors path")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_learn)

    p = sub.add_parser("evaluate", help="measure a saved loss (learned, UniLoss or non-parametric) against its metric "
                                        "beside the task's baseline: by default on the batches its report card was "
                                        "measured on (reproducing the card), or on fresh random batches")
    p.add_argument("surrogate", help="a .safetensors file written by metricloss (any kind of loss), or the name of a "
                                     "shipped one (classification-accuracy, ...)")
    p.add_argument("--metric", default=None,
                   help="built-in metric name or module:function (default: the one it was learned for)")
    p.add_argument("--outputs", default=None, metavar="FILE",
                   help="the model outputs (a torch.save'd list of (pred, target) batches) a card measured on held-out "
                        "model outputs was built from: needed to reproduce such a card")
    p.add_argument("--batches", type=int, default=None,
                   help="measure on this many fresh random batches instead of the card's (default 256 without a card)")
    p.add_argument("--batch-size", type=int, default=None, help="fresh batches of this size (default: the card's)")
    p.add_argument("--seed", type=int, default=None,
                   help="seed of fresh random batches (default: the card's seed, else 12345)")
    p.add_argument("--memory-budget", default=None, metavar="BYTES",
                   help="bytes or a size such as 512MiB: the measurement runs in chunks of at most an eighth of it and "
                        "fresh batches take at most a quarter (default 2GiB)")
    p.add_argument("--lower-is-better", action="store_true",
                   help="the --metric given is lower-is-better (default: the direction on the card when --metric is "
                        "the metric it was learned for, else higher is better)")
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
