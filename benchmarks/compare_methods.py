"""Every surrogate method of metricloss side by side, per task, in one table from one run.

Run (the recorded run took 7.1 minutes on 1 thread of 2 cores shared with other jobs, load average 2.6-12.3)::

    .venv/bin/python benchmarks/compare_methods.py
    .venv/bin/python benchmarks/compare_methods.py --quick        # 1 seed, short learning: a smoke run
    .venv/bin/python benchmarks/compare_methods.py --tasks classification

Tasks (each only when its task family is registered in ``metricloss.tasks``):

- **classification**: accuracy on scikit-learn's digits (10 classes), MLP 64-64-10, Adam 1e-3, batch 128.
- **ordinal**: MAE over ordinal classes on scikit-learn's diabetes regression set, its target binned into
  quantile classes (``metricloss.tasks.ordinal``).
- **pose**: PCK@0.05 on 16x16 heatmaps from synthetic 32x32 images with 3 coloured blobs among distractors (the
  images and net of ``benchmarks/uniloss.py``), scored by ``metricloss.tasks.pose``.

Per task:

1. The model is trained with the task's original loss (seed 0) and its outputs on the training and test sets are
   kept at ~16 checkpoints, as ``metricloss demo`` does. Training-set outputs feed every method that learns (G_M).
2. Each method builds its surrogate; the wall time of that call is the learning time (measured on 2 cores shared
   with other people's jobs: it says how the methods compare, not what a quiet machine does).
3. Spearman and Kendall between -loss and the metric over held-out batches of the checkpoints' *test-set* outputs
   (the same batches for every method), and the gradient agreement (``metricloss.evaluation.gradient_agreement``,
   16 directions of relative length 0.3, in float64) on a subset of them.
4. Downstream: the model trained with the original loss + the surrogate (weight 1), 3 seeds, test metric
   mean ± sample std. LS-ED is used as Patel et al. use it: the original-loss model of the same seed is post-tuned
   with LS-ED alone for a few epochs at a tenth of the learning rate.

Methods: original loss (cross-entropy / MSE ...); approximation L2 (Grabocka et al. 2019: the task's net fitted to
the metric value by squared error, no gradient penalty); LS-ED (Patel et al. 2020: embedding distance fitted by
squared error; classification only); ReLoss (Spearman objective + gradient penalty); ReLoss + gradient (the same
plus the correlated-gradients term, weight 1; our design from Yoa et al.'s abstract); UniLoss (no learning);
non-parametric (Gaussian-kernel interpolation over UniLoss anchors, temperature and bandwidth chosen by gradient
agreement; our design). UniLoss and the non-parametric surrogate need a refactoring of the metric into comparisons
(built in for accuracy, AP and PCK). A method that raises while learning gets a row saying so, with the error.

Threads: 1 by default. On the 2 busy cores, 40 ReLoss learning steps took 29 s with 2 threads and 7.4 s with 1.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

import metricloss as ml
from metricloss import datasets, training
from metricloss.evaluation import agreement, gradient_agreement
from metricloss.metrics.base import as_metric
from metricloss.nonparametric import NonParametricLoss, fit_nonparametric
from metricloss.surrogate import Surrogate
from metricloss.tasks import get_task
from metricloss.uniloss import UniLoss

METHODS = ("original loss", "approximation L2", "LS-ED", "ReLoss", "ReLoss + gradient", "UniLoss", "non-parametric")
GA_DIRECTIONS, GA_SIGMA = 16, 0.3


@dataclass
class Spec:
    """One task of the comparison: data, model, original loss and how each method applies."""

    key: str
    title: str
    task: str
    task_kwargs: dict[str, Any]
    metric: str
    batch_size: int  # samples per batch for surrogates and measurement
    baseline_name: str
    baseline_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    make_model: Callable[[], nn.Module]
    data: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]
    epochs: int
    lr: float
    train_batch: int
    downstream: Callable[[torch.Tensor, torch.Tensor], float]  # test outputs, test targets -> metric
    downstream_name: str
    downstream_higher_is_better: bool = True
    refactoring_options: dict[str, Any] | None = None
    na: dict[str, str] = field(default_factory=dict)
    learn_kwargs: dict[str, Any] = field(default_factory=dict)
    post_epochs: int = 5


# ------------------------------------------------------------------------------------------------ task specs


def classification_spec(quick: bool) -> Spec:
    split = datasets.digits()
    return Spec(
        key="classification", title="accuracy, digits (10 classes)", task="classification",
        task_kwargs={"num_classes": split.num_classes}, metric="accuracy", batch_size=128, baseline_name="CE",
        baseline_loss=F.cross_entropy,
        make_model=lambda: training.mlp(split.x_train.shape[1], split.num_classes, 64),
        data=(split.x_train, split.y_train, split.x_test, split.y_test), epochs=3 if quick else 30, lr=1e-3,
        train_batch=128, downstream=lambda out, y: float((out.argmax(-1) == y).double().mean()),
        downstream_name="test accuracy", refactoring_options={},
    )


ORDINAL_CLASSES = 5


def diabetes_ordinal(num_classes: int = ORDINAL_CLASSES, seed: int = 0
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """scikit-learn's diabetes set (442 patients, 10 features, a disease-progression score), the score binned at its
    quantiles into ``num_classes`` ordered classes; stratified 70/30 split, features standardised on the training
    part."""
    import numpy as np
    from sklearn.datasets import load_diabetes
    from sklearn.model_selection import train_test_split

    x, score = load_diabetes(return_X_y=True)
    edges = np.quantile(score, np.linspace(0, 1, num_classes + 1)[1:-1])
    y = np.digitize(score, edges)
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.3, random_state=seed, stratify=y)
    mu, sd = xtr.mean(0), xtr.std(0)
    as_t = lambda a, dt: torch.as_tensor(np.ascontiguousarray(a), dtype=dt)  # noqa: E731
    return (as_t((xtr - mu) / sd, torch.float32), as_t(ytr, torch.int64), as_t((xte - mu) / sd, torch.float32),
            as_t(yte, torch.int64))


def ordinal_spec(quick: bool) -> Spec | str:
    if importlib.util.find_spec("metricloss.tasks.ordinal") is None:
        return "metricloss.tasks.ordinal is not in this tree yet"
    from metricloss.tasks import ordinal  # noqa: F401  (registers the task)

    data = diabetes_ordinal()
    return Spec(
        key="ordinal", title=f"MAE over {ORDINAL_CLASSES} ordinal classes, binned diabetes", task="ordinal",
        task_kwargs={"num_classes": ORDINAL_CLASSES}, metric="mae", batch_size=64, baseline_name="CE",
        baseline_loss=F.cross_entropy, make_model=lambda: training.mlp(data[0].shape[1], ORDINAL_CLASSES, 64),
        data=data, epochs=5 if quick else 60, lr=1e-3, train_batch=32,
        downstream=lambda out, y: float((out.argmax(-1) - y).abs().double().mean()),
        downstream_name="test MAE", downstream_higher_is_better=False,
        na={"LS-ED": "metricloss's LS-ED net is built for task 'classification' only",
            "UniLoss": "no refactoring of MAE into comparisons (built in: accuracy, AP, PCK)",
            "non-parametric": "needs a UniLoss refactoring; none for MAE"},
    )


def _bench_uniloss() -> Any:
    """``benchmarks/uniloss.py`` (its synthetic blobs and heatmap net), imported by path."""
    path = Path(__file__).with_name("uniloss.py")
    spec = importlib.util.spec_from_file_location("_bench_uniloss", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["_bench_uniloss"] = module
    spec.loader.exec_module(module)
    return module


def pose_spec(quick: bool) -> Spec | str:
    if importlib.util.find_spec("metricloss.tasks.pose") is None:
        return "metricloss.tasks.pose is not in this tree yet"
    from metricloss.metrics.pose import percentage_correct_keypoints
    from metricloss.tasks import pose  # noqa: F401  (registers the task)
    from metricloss.tasks.pose import heatmap_mse

    bu = _bench_uniloss()
    n_train, n_test = (256, 128) if quick else (1024, 256)
    x_train, k_train = bu.blobs(n_train, seed=1000)
    x_test, k_test = bu.blobs(n_test, seed=2000)
    return Spec(
        key="pose", title=f"PCK@0.05, synthetic blobs ({bu.K} keypoints, {bu.HM}x{bu.HM} heatmaps)", task="pose",
        task_kwargs={"num_keypoints": bu.K, "heatmap_size": bu.HM}, metric="pck", batch_size=16,
        baseline_name="MSE", baseline_loss=heatmap_mse, make_model=bu.HeatmapNet,
        data=(x_train, k_train, x_test, k_test), epochs=1 if quick else 4, lr=2e-3, train_batch=32,
        downstream=lambda out, kp: float(percentage_correct_keypoints(out, kp, 0.05)),
        downstream_name="test PCK@0.05", refactoring_options={"alpha": 0.05},
        na={"LS-ED": "metricloss's LS-ED net embeds class scores; there is none for heatmaps"},
    )


# ----------------------------------------------------------------------------------------------- the runner


def checkpoint_outputs(spec: Spec) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    x_train, y_train, x_test, _ = spec.data
    torch.manual_seed(0)
    model = spec.make_model()
    steps = spec.epochs * -(-x_train.shape[0] // spec.train_batch)
    train_out, test_out = [], []

    def keep(step: int, m: nn.Module) -> None:
        train_out.append(training.predict(m, x_train, chunk=256))
        test_out.append(training.predict(m, x_test, chunk=256))

    training.fit(model, x_train, y_train, spec.baseline_loss, epochs=spec.epochs, batch_size=spec.train_batch,
                 lr=spec.lr, seed=0, checkpoints=training.checkpoint_steps(steps, 16), on_checkpoint=keep)
    return train_out, test_out


def heldout(test_out: list[torch.Tensor], y: torch.Tensor, batch: int, per_checkpoint: int
            ) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(2)
    preds, targets = [], []
    for out in test_out:
        for _ in range(per_checkpoint):
            idx = torch.randperm(y.shape[0], generator=gen)[:batch]
            preds.append(out[idx])
            targets.append(y[idx])
    order = torch.randperm(len(preds), generator=gen)
    return torch.stack(preds)[order], torch.stack(targets)[order]


def stack_loss(obj: Any, spec_task: Any) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """Per-batch losses ``(N,)`` of a stack, differentiable in the predictions (float64 in, float64 gradients)."""
    if obj is None:
        return spec_task.baseline
    if isinstance(obj, Surrogate):
        return lambda p, t: obj.net(p.to(torch.float32), t)
    if isinstance(obj, UniLoss | NonParametricLoss):
        return lambda p, t: torch.stack([obj(pi, ti) for pi, ti in zip(p, t, strict=True)])
    raise TypeError(type(obj).__name__)


def build(method: str, spec: Spec, outputs: list, quick: bool) -> Any:
    steps = 40 if quick else 300
    common = {"outputs": outputs, "seed": 0, "progress": False, "gradient_probe": 0, "steps": steps,
              "batches_per_step": 32 if quick else 64, "pool_size": 256 if quick else 512,
              "validation_batches": 32 if quick else 64, "eval_every": 20 if quick else 25, "patience": 4,
              "batch_size": spec.batch_size, **spec.task_kwargs, **spec.learn_kwargs}
    if method == "original loss":
        return None
    if method == "approximation L2":
        return ml.learn(spec.metric, spec.task, objective="l2", penalty=0.0, **common)
    if method == "LS-ED":
        return ml.learn(spec.metric, spec.task, objective="l2", penalty=0.0, net={"kind": "lsed"}, **common)
    if method == "ReLoss":
        return ml.learn(spec.metric, spec.task, **common)
    if method == "ReLoss + gradient":
        return ml.learn(spec.metric, spec.task, gradient_weight=1.0, **common)
    if method == "UniLoss":
        return ml.build_uniloss(spec.metric, spec.task, outputs=outputs, batch_size=spec.batch_size,
                                validation_batches=32, seed=0, options=dict(spec.refactoring_options or {}),
                                **spec.task_kwargs)
    if method == "non-parametric":
        return fit_nonparametric(spec.metric, spec.task, outputs=outputs, batch_size=spec.batch_size,
                                 validation_batches=16 if quick else 32, seed=0,
                                 options=dict(spec.refactoring_options or {}), **spec.task_kwargs)
    raise ValueError(method)


def downstream(method: str, obj: Any, spec: Spec, seeds: int) -> list[float]:
    x_train, y_train, x_test, y_test = spec.data
    scores = []
    for seed in range(seeds):
        torch.manual_seed(1000 + seed)
        model = spec.make_model()
        if obj is None or method == "LS-ED":
            loss_fn = spec.baseline_loss
        else:
            def loss_fn(z: torch.Tensor, y: torch.Tensor, obj: Any = obj) -> torch.Tensor:
                return spec.baseline_loss(z, y) + obj(z, y)
        training.fit(model, x_train, y_train, loss_fn, epochs=spec.epochs, batch_size=spec.train_batch, lr=spec.lr,
                     seed=1000 + seed)
        if method == "LS-ED":  # post-tuning with LS-ED alone (Patel et al.)
            training.fit(model, x_train, y_train, obj, epochs=spec.post_epochs, batch_size=spec.train_batch,
                         lr=spec.lr / 10, seed=2000 + seed)
        scores.append(spec.downstream(training.predict(model, x_test, chunk=256), y_test))
    return scores


def run_task(spec: Spec, seeds: int, quick: bool, say: Callable[[str], None]) -> list[dict[str, Any]]:
    t_task = time.perf_counter()
    train_out, test_out = checkpoint_outputs(spec)
    _, y_train, _, y_test = spec.data
    perm = torch.randperm(y_train.shape[0], generator=torch.Generator().manual_seed(1))
    outputs = [(out[perm], y_train[perm]) for out in train_out]
    task_obj = get_task(spec.task, **spec.task_kwargs)
    met = as_metric(spec.metric, None, task_obj.metrics)
    per_ckpt = max(1, (48 if quick else 96) // len(test_out))
    v_pred, v_target = heldout(test_out, y_test, spec.batch_size, per_ckpt)
    v_metric = met.evaluate(v_pred, v_target)
    n_ga = min(v_pred.shape[0], 24 if quick else 48)
    say(f"[{spec.key}] {len(train_out)} checkpoints; {v_pred.shape[0]} held-out batches of {spec.batch_size} "
        f"({n_ga} for gradient agreement); {time.perf_counter() - t_task:.0f} s")
    rows = []
    for method in METHODS:
        if method in spec.na:
            rows.append({"task": spec.key, "method": method, "na": spec.na[method]})
            continue
        t0 = time.perf_counter()
        try:
            obj = build(method, spec, outputs, quick)
        except (RuntimeError, ValueError) as err:  # reported in the table, not hidden
            why = f"failed after {time.perf_counter() - t0:.0f} s: {type(err).__name__}: {err}"
            rows.append({"task": spec.key, "method": method, "na": why})
            say(f"[{spec.key}] {method}: {why}")
            continue
        learn_s = time.perf_counter() - t0 if obj is not None else 0.0
        fn = stack_loss(obj, task_obj)
        with torch.no_grad():
            losses = torch.cat([fn(p, t) for p, t in zip(v_pred.split(32), v_target.split(32), strict=True)])
        corr = agreement(losses, v_metric, met.higher_is_better)
        ga = gradient_agreement(fn, met, v_pred[:n_ga].double(), v_target[:n_ga], directions=GA_DIRECTIONS,
                                sigma=GA_SIGMA, seed=0)
        t1 = time.perf_counter()
        down = downstream(method, obj, spec, seeds)
        extra = ""
        if isinstance(obj, NonParametricLoss):
            extra = f" (τ = {obj.temperature:g}, h = {obj.bandwidth:g}, scale {obj.scale:.3g})"
        rows.append({"task": spec.key, "method": method + extra, "spearman": corr["spearman"],
                     "kendall": corr["kendall"], "gradient_agreement": ga, "learn_s": learn_s, "downstream": down,
                     "downstream_s": time.perf_counter() - t1})
        say(f"[{spec.key}] {method + extra}: Spearman {corr['spearman']:.3f}, Kendall {corr['kendall']:.3f}, "
            f"grad. agreement {ga:.3f}, learned in {learn_s:.1f} s, {spec.downstream_name} "
            f"{_mean_std(down)} ({time.perf_counter() - t1:.0f} s)")
    say(f"[{spec.key}] done in {time.perf_counter() - t_task:.0f} s")
    return rows


def _mean_std(xs: list[float]) -> str:
    sd = statistics.stdev(xs) if len(xs) > 1 else float("nan")
    return f"{statistics.fmean(xs):.4f} ± {sd:.4f}"


def table(specs: list[Spec], rows: list[dict[str, Any]], skipped: dict[str, str], seeds: int) -> list[str]:
    out = ["| task | method | Spearman | Kendall | gradient agreement | learning time | "
           f"downstream metric (mean ± std, {seeds} seeds) |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for spec in specs:
        for r in (r for r in rows if r["task"] == spec.key):
            if "na" in r:
                out.append(f"| {spec.key} | {r['method']} | n/a | n/a | n/a | n/a | n/a: {r['na']} |")
                continue
            learn = "—" if r["learn_s"] == 0 else f"{r['learn_s']:.1f} s"
            out.append(f"| {spec.key} | {r['method']} | {r['spearman']:.4f} | {r['kendall']:.4f} | "
                       f"{r['gradient_agreement']:.4f} | {learn} | "
                       f"{spec.downstream_name} {_mean_std(r['downstream'])} |")
    for key, why in skipped.items():
        out.append(f"| {key} | all methods | n/a | n/a | n/a | n/a | n/a: {why} |")
    return out


def winners(specs: list[Spec], rows: list[dict[str, Any]]) -> list[str]:
    lines = []
    for spec in specs:
        measured = [r for r in rows if r["task"] == spec.key and "na" not in r]
        if not measured:
            continue
        parts = []
        for col, label in (("spearman", "Spearman"), ("kendall", "Kendall"), ("gradient_agreement", "gradient agr.")):
            best = max(measured, key=lambda r, c=col: r[c] if math.isfinite(r[c]) else -math.inf)
            parts.append(f"{label}: {best['method']} ({best[col]:.4f})")
        sign = 1.0 if spec.downstream_higher_is_better else -1.0
        best = max(measured, key=lambda r: sign * statistics.fmean(r["downstream"]))
        base = next(r for r in measured if r["method"] == "original loss")
        sd = statistics.stdev(base["downstream"]) if len(base["downstream"]) > 1 else 0.0
        gap = statistics.fmean(best["downstream"]) - statistics.fmean(base["downstream"])
        parts.append(f"{spec.downstream_name} ({'higher' if sign > 0 else 'lower'} is better): {best['method']} "
                     f"({_mean_std(best['downstream'])}; {gap:+.4f} against the original loss, whose std is "
                     f"{sd:.4f})")
        lines.append(f"- **{spec.key}**: " + "; ".join(parts))
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=["classification", "ordinal", "pose"],
                        choices=["classification", "ordinal", "pose"])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (default 1: on the 2 busy cores 40 ReLoss steps took 29 s on 2 threads, "
                             "7.4 s on 1)")
    parser.add_argument("--quick", action="store_true", help="1 seed, short learning and training: a smoke run")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    seeds = 1 if args.quick else args.seeds
    t0 = time.perf_counter()
    load0 = os.getloadavg()

    def say(msg: str) -> None:
        print(f"[{time.perf_counter() - t0:6.0f} s] {msg}", file=sys.stderr, flush=True)

    makers = {"classification": classification_spec, "ordinal": ordinal_spec, "pose": pose_spec}
    specs, skipped, rows = [], {}, []
    for key in args.tasks:
        spec = makers[key](args.quick)
        if isinstance(spec, str):
            skipped[key] = spec
            say(f"[{key}] skipped: {spec}")
            continue
        specs.append(spec)
        rows += run_task(spec, seeds, args.quick, say)
    total = time.perf_counter() - t0
    load1 = os.getloadavg()
    command = " ".join([".venv/bin/python", "benchmarks/compare_methods.py", *sys.argv[1:]])
    print("\n".join(table(specs, rows, skipped, seeds)))
    print("\nBest per column (correlations: higher is better):\n")
    print("\n".join(winners(specs, rows)))
    print(f"\nCommand: `{command}`; torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{platform.machine()}; total {total / 60:.1f} min; load average {load0[0]:.1f} at the start and "
          f"{load1[0]:.1f} at the end on {os.cpu_count()} cores shared with other jobs, so times are noisy.")


if __name__ == "__main__":
    main()
