"""Classification and ordinal surrogates at real sizes: the cost of a forward+backward beside cross-entropy's, and
learning accuracy at C = 1000 (time, peak RSS, held-out Spearman beside cross-entropy's).

Functions for ``benchmarks/real_sizes.py`` (which prints the issue-13 table) and a command line of its own::

    .venv/bin/python benchmarks/real_sizes_classification.py speed            # forward+backward, C = 2 .. 1000
    .venv/bin/python benchmarks/real_sizes_classification.py learn --num-classes 1000
    .venv/bin/python benchmarks/real_sizes_classification.py step --num-classes 1000  # one learning step, CPU-s
    .venv/bin/python benchmarks/real_sizes_classification.py compare    # features of 38fd5bc against today's
    .venv/bin/python benchmarks/real_sizes_classification.py profile    # where a surrogate call's time goes

``compare`` times, in one process and interleaved, cross-entropy, the shipped accuracy surrogate with the features
as commit 38fd5bc computed them (full log-softmax, runner-up by ``scatter`` + ``max``) and as today
(:func:`metricloss.tasks.classification.class_features`): CPU time with one torch thread, and wall time with two; then
one learning step (double backward) with each.

``learn`` runs :func:`metricloss.learn` in a child process, so its peak RSS (``ru_maxrss`` of the child) is that
run's alone. Every table starts with the machine line (CPU count, threads, load average): timings on a shared
machine move with the load.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

import metricloss as ml
from common import machine_line  # benchmarks/common.py: a script's folder is on sys.path when it runs
from metricloss.evaluation import agreement
from metricloss.objectives import gradient_penalty, rank_objective
from metricloss.tasks.classification import ClassificationNet, class_features

__all__ = ["backward_call", "compare_rows", "features_before", "forward_backward_ms", "interleaved_ms", "learn_run",
           "profile_table", "speed_rows", "step_cpu_seconds", "transfer_rows"]


def _times_ms(fn: Callable[[], None], repeats: int, clock: Callable[[], float] = time.process_time) -> list[float]:
    """Times of ``repeats`` calls of ``fn`` in milliseconds, sorted, after three warm-up calls."""
    for _ in range(3):
        fn()
    times = []
    for _ in range(repeats):
        t0 = clock()
        fn()
        times.append((clock() - t0) * 1e3)
    return sorted(times)


def _time_ms(fn: Callable[[], None], repeats: int, clock: Callable[[], float] = time.process_time) -> float:
    """Median time of ``fn`` in milliseconds over ``repeats`` calls, after three warm-up calls. The default clock is
    the process's CPU time: on a machine other jobs load, it moves far less than the wall clock (with one torch
    thread it is the op's own compute; with more it sums the threads)."""
    times = _times_ms(fn, repeats, clock)
    return times[len(times) // 2]


def forward_backward_ms(loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], batch_size: int,
                        num_classes: int, repeats: int = 50, seed: int = 0,
                        clock: Callable[[], float] = time.process_time) -> float:
    """Median milliseconds (CPU time by default, see :func:`_time_ms`) of ``loss(logits, target).backward()`` on
    random logits ``(batch_size, num_classes)``."""
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(batch_size, num_classes, generator=gen).mul_(3.0).requires_grad_(True)
    target = torch.randint(0, num_classes, (batch_size,), generator=gen)

    def run() -> None:
        logits.grad = None
        loss(logits, target).backward()

    return _time_ms(run, repeats, clock)


def speed_rows(names: tuple[str, ...] = ("classification-accuracy", "classification-top5-accuracy", "ordinal-mae"),
               sizes: tuple[tuple[int, int], ...] = ((256, 10), (256, 100), (256, 1000)),
               repeats: int = 50) -> list[dict]:
    """For each shipped surrogate and ``(B, C)``: its forward+backward milliseconds, cross-entropy's, and the ratio
    (``validate_args`` on, as users call it, and off)."""
    rows = []
    for b, c in sizes:
        ce = forward_backward_ms(F.cross_entropy, b, c, repeats)
        for name in names:
            sur = ml.pretrained(name)
            if name.startswith("ordinal") and c > 20:
                continue
            on = forward_backward_ms(sur, b, c, repeats)
            sur.validate_args = False
            off = forward_backward_ms(sur, b, c, repeats)
            rows.append({"surrogate": name, "B": b, "C": c, "ce_ms": ce, "ms": on, "ratio": on / ce,
                         "ms_unchecked": off, "ratio_unchecked": off / ce})
    return rows


def transfer_rows(sur: ml.Surrogate, metric: str, sizes: tuple[int, ...], n: int = 256, batch_size: int = 128,
                  seed: int = 777) -> list[dict]:
    """Held-out Spearman / Kendall of ``sur`` and of cross-entropy on ``n`` G_R batches at each size in ``sizes``
    (``num_classes`` of the surrogate's task family), from an unseen seed."""
    rows = []
    for size in sizes:
        task = ml.tasks.get_task(sur.task.name, num_classes=size)
        met = ml.metrics.as_metric(metric, None, task.metrics)
        pred, target = task.random_batches(n, batch_size, torch.Generator().manual_seed(seed))
        values = met.evaluate(pred, target)
        with torch.no_grad():
            ours = agreement(sur.batch_losses(pred, target), values, met.higher_is_better)
            base = agreement(task.baseline(pred, target), values, met.higher_is_better)
        rows.append({"size": size, "n": n, "batch_size": batch_size, "surrogate": ours, "baseline": base})
    return rows


def features_before(logits: torch.Tensor, target: torch.Tensor, features: tuple[str, ...]) -> torch.Tensor:
    """:func:`~metricloss.tasks.classification.class_features` as commit 38fd5bc computed it (the same function):
    the full log-softmax and autograd's backward, the runner-up class by a ``scatter`` copy and an index-returning
    ``max``."""
    target = target.long().unsqueeze(-1)
    logp = logits.log_softmax(dim=-1)
    index = target
    if "margin" in features:
        with torch.no_grad():
            other = logits.detach().scatter(-1, target, float("-inf")).max(dim=-1, keepdim=True).indices
        index = torch.cat([target, other], dim=-1)
    picked = logp.gather(-1, index)
    named = {"target_prob": lambda: picked[..., 0].exp(), "log_target_prob": lambda: picked[..., 0].clamp_min(-30) / 10,
             "margin": lambda: picked[..., 0].exp() - picked[..., 1].exp()}
    return torch.stack([named[name]() for name in features], dim=-1)


class _NetBefore(ClassificationNet):
    """:class:`ClassificationNet` reading :func:`features_before` (same weights, same function)."""

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        out = self.mlp(features_before(logits, target, self.features)).squeeze(-1)
        return (out.abs() if self.absolute else out).mean(dim=-1)


def surrogate_before(name: str = "classification-accuracy") -> ml.Surrogate:
    """The shipped surrogate ``name`` (a per-sample :class:`ClassificationNet`) with its features computed as in
    38fd5bc: the same weights, validation and call path."""
    sur = ml.pretrained(name)
    net = _NetBefore(sur.net.features, absolute=sur.net.absolute, hidden=sur.net.mlp[0].out_features,
                     depth=(len(sur.net.mlp) - 1) // 2)
    net.load_state_dict(sur.net.state_dict())
    return ml.Surrogate(sur.task, net, sur.config(), sur.report)


def interleaved_ms(fns: dict[str, Callable[[], None]], rounds: int, repeats: int,
                   clock: Callable[[], float]) -> dict[str, float]:
    """Median over ``rounds`` of each function's median time (ms) over ``repeats`` calls, and (key ``"<name> min"``)
    its fastest call; the functions take turns within every round, so a change in the machine's load falls on all
    of them alike. With more than one thread on a loaded machine the median measures the scheduler (a parallel
    region waits for a thread another process holds) and the fastest call is the nearer estimate of an idle run."""
    per_round: dict[str, list[float]] = {k: [] for k in fns}
    fastest = dict.fromkeys(fns, float("inf"))
    for _ in range(rounds):
        for name, fn in fns.items():
            times = _times_ms(fn, repeats, clock)
            per_round[name].append(times[len(times) // 2])
            fastest[name] = min(fastest[name], times[0])
    out = {k: sorted(v)[len(v) // 2] for k, v in per_round.items()}
    return out | {f"{k} min": v for k, v in fastest.items()}


def backward_call(loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], logits: torch.Tensor,
                  target: torch.Tensor) -> Callable[[], None]:
    def run() -> None:
        logits.grad = None
        loss(logits, target).backward()
    return run


def compare_rows(sizes: tuple[tuple[int, int], ...] = ((256, 1000), (32, 1000), (256, 10), (256, 100)),
                 threads: tuple[int, ...] = (1, 2), rounds: int = 7, repeats: int = 30,
                 name: str = "classification-accuracy") -> list[dict]:
    """Forward+backward milliseconds of cross-entropy, of ``name`` with the features of 38fd5bc
    (:func:`surrogate_before`) and of ``name`` as shipped, per size and thread count: CPU time (process) with one
    thread, wall time with more (where CPU time would add up the threads' spinning)."""
    after, before = ml.pretrained(name), surrogate_before(name)
    rows = []
    for n_threads in threads:
        torch.set_num_threads(n_threads)
        clock = time.process_time if n_threads == 1 else time.perf_counter
        for b, c in sizes:
            gen = torch.Generator().manual_seed(b + c)
            logits = torch.randn(b, c, generator=gen).mul_(3.0).requires_grad_(True)
            target = torch.randint(0, c, (b,), generator=gen)
            fns = {k: backward_call(loss, logits, target)
                   for k, loss in (("ce", F.cross_entropy), ("before", before), ("after", after))}
            ms = interleaved_ms(fns, rounds, repeats, clock)
            rows.append({"threads": n_threads, "clock": "CPU" if n_threads == 1 else "wall", "B": b, "C": c, **ms,
                         "ratio_before": ms["before"] / ms["ce"], "ratio_after": ms["after"] / ms["ce"],
                         "ratio_before_min": ms["before min"] / ms["ce min"],
                         "ratio_after_min": ms["after min"] / ms["ce min"]})
    return rows


def profile_table(batch_size: int = 256, num_classes: int = 1000, calls: int = 200, top: int = 14,
                  name: str = "classification-accuracy") -> str:
    """torch.profiler's table (self CPU time per op, one thread) of ``calls`` forward+backward calls of ``name`` on
    logits ``(batch_size, num_classes)``, then the parts timed alone (medians, CPU time): validation, the features
    forward+backward, the MLP forward+backward on given features, the whole call, and cross-entropy's."""
    sur = ml.pretrained(name)
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(batch_size, num_classes, generator=gen).mul_(3.0).requires_grad_(True)
    target = torch.randint(0, num_classes, (batch_size,), generator=gen)
    feats = class_features(logits.detach(), target, sur.net.features).requires_grad_(True)

    def whole() -> None:
        logits.grad = None
        sur(logits, target).backward()

    def features() -> None:
        logits.grad = None
        class_features(logits, target, sur.net.features).sum().backward()

    def net() -> None:
        feats.grad = None
        sur.net.mlp(feats).squeeze(-1).abs().mean().backward()

    def ce() -> None:
        logits.grad = None
        F.cross_entropy(logits, target).backward()

    for _ in range(10):
        whole()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        for _ in range(calls):
            whole()
    events = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)[:top]
    lines = [f"profile of {calls} calls, logits ({batch_size}, {num_classes}), {name}: self CPU time per call", "",
             "| op | calls per call | self CPU us per call |", "| --- | --- | --- |"]
    lines += [f"| {e.key} | {e.count / calls:g} | {e.self_cpu_time_total / calls:.1f} |" for e in events]
    parts = interleaved_ms({"validation (`task.check`)": lambda: sur.task.check(logits, target),
                            "features fwd+bwd": features, "MLP fwd+bwd (features given)": net,
                            "whole surrogate call": whole, "cross-entropy": ce}, 5, 40, time.process_time)
    lines += ["", "| part | CPU ms (1 thread, median) |", "| --- | --- |"]
    lines += [f"| {k} | {v:.3f} |" for k, v in parts.items() if not k.endswith(" min")]
    return "\n".join(lines)


def step_cpu_seconds(num_classes: int = 1000, batches: int = 128, batch_size: int = 128, steps: int = 5,
                     seed: int = 0, before: bool = False) -> float:
    """CPU seconds of one learning step of the default classification net for accuracy, as the trainer takes it
    (soft Spearman over ``batches`` G_R batches + gradient penalty, Adam), median of ``steps`` after two warm-up steps.
    ``before``: the net with the features of 38fd5bc (:func:`features_before`). Uses only API the starting commit
    has too, so ``PYTHONPATH=<other checkout>/src`` measures that version."""
    task = ml.tasks.get_task("classification", num_classes=num_classes)
    pred, target = task.random_batches(batches, batch_size, torch.Generator().manual_seed(seed))
    values = task.metrics["accuracy"].evaluate(pred, target).float()
    torch.manual_seed(seed)
    config = task.default_net_config()
    net = _NetBefore(**config) if before else task.build_net(**config)
    opt = torch.optim.Adam(net.parameters(), 0.01)

    def step() -> None:
        p = pred.clone().requires_grad_(True)
        losses = net(p, target)
        (grads,) = torch.autograd.grad(losses.sum(), p, create_graph=True)
        obj = rank_objective(losses, values) + 10.0 * gradient_penalty(grads)
        opt.zero_grad()
        obj.backward()
        opt.step()

    return _time_ms(step, steps) / 1e3


_CHILD = """
import json, resource, sys, time, torch
import metricloss as ml
torch.set_num_threads({threads})
t0 = time.perf_counter()
sur = ml.learn({metric!r}, task={task!r}, num_classes={num_classes}, seed={seed}, progress=False, **{extra!r})
seconds = time.perf_counter() - t0
r = sur.report
use = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({{"seconds": seconds, "cpu_seconds": use.ru_utime + use.ru_stime,
                  "peak_rss_gib": use.ru_maxrss / 2**20, "spearman": r.spearman,
                  "baseline_spearman": r.baseline_spearman, "steps": r.steps, "best_step": r.best_step,
                  "validation": r.validation, "n_validation": r.n_validation_batches}}))
"""


def learn_run(metric: str = "accuracy", num_classes: int = 1000, task: str = "classification", threads: int = 2,
              seed: int = 0, **extra: object) -> dict:
    """``ml.learn(metric, task=task, num_classes=num_classes, seed=seed, **extra)`` in a child process with ``threads``
    torch threads: wall and CPU seconds (the child's, import included), peak RSS (GiB) and the report's held-out
    Spearman beside the baseline's."""
    code = _CHILD.format(threads=threads, metric=metric, task=task, num_classes=num_classes, seed=seed, extra=extra)
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["peak_rss_children_gib"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("speed", "learn", "step", "compare", "profile"))
    parser.add_argument("--num-classes", type=int, default=1000)
    parser.add_argument("--metric", default="accuracy")
    parser.add_argument("--task", default="classification")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (speed: 1, so CPU time is the op's)")
    parser.add_argument("--steps", type=int, default=None, help="learn: cap the steps (default: learn's default)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(machine_line())
    if args.what == "speed":
        print("| surrogate | B | C | CE ms | surrogate ms | ratio | unchecked ms | ratio |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- |")
        for r in speed_rows():
            print(f"| {r['surrogate']} | {r['B']} | {r['C']} | {r['ce_ms']:.3f} | {r['ms']:.3f} | {r['ratio']:.1f} "
                  f"| {r['ms_unchecked']:.3f} | {r['ratio_unchecked']:.1f} |")
    elif args.what == "step":
        print(f"one learning step, C = {args.num_classes}, N = 128 x B = 128: "
              f"{step_cpu_seconds(args.num_classes):.3f} CPU-s")
    elif args.what == "compare":
        print("median (fastest call) of each; the ratios are of the medians (of the fastest calls)\n")
        print("| threads (clock) | B | C | CE ms | surrogate ms, 38fd5bc features | ratio | surrogate ms, now "
              "| ratio |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- |")
        for r in compare_rows():
            cells = [f"{r[k]:.3f} ({r[k + ' min']:.3f})" for k in ("ce", "before", "after")]
            print(f"| {r['threads']} ({r['clock']}) | {r['B']} | {r['C']} | {cells[0]} | {cells[1]} "
                  f"| {r['ratio_before']:.2f}x ({r['ratio_before_min']:.2f}x) | {cells[2]} "
                  f"| {r['ratio_after']:.2f}x ({r['ratio_after_min']:.2f}x) |", flush=True)
        torch.set_num_threads(1)
        print(machine_line())
        before, after = (step_cpu_seconds(args.num_classes, before=b) for b in (True, False))
        print(f"one learning step (double backward), C = {args.num_classes}, N = 128 x B = 128, 1 thread: "
              f"{before:.3f} CPU-s with the 38fd5bc features, {after:.3f} CPU-s now")
    elif args.what == "profile":
        print(profile_table(num_classes=args.num_classes))
    else:
        extra = {} if args.steps is None else {"steps": args.steps}
        r = learn_run(args.metric, args.num_classes, args.task, args.threads, **extra)
        print(json.dumps(r, indent=1))
    print(machine_line())


if __name__ == "__main__":
    main()
