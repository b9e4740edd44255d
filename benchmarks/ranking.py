r"""Ranking benchmark: metricloss soft ranks against diffsort and torchsort.

metricloss itself depends on neither diffsort nor torchsort. The benchmark installs them into its own
virtual environment ``.bench-venv`` (git-ignored), from the repository root, in this order::

    python3 -m venv .bench-venv
    .bench-venv/bin/pip install torch==2.13.0        # FIRST: any other torch request can pull a CUDA build
    .bench-venv/bin/pip install -e .
    .bench-venv/bin/pip install diffsort==0.2.0
    .bench-venv/bin/pip install setuptools==84.2.1 wheel==0.48.0 ninja==1.13.2
    which nvcc                                       # /usr/local/bin/nvcc here: a shim to /usr/local/cuda-13.0
    env -u CUDA_HOME -u CUDA_PATH FORCE_CUDA=0 \
        PATH="$(echo "$PATH" | tr ':' '\n' | while read -r d; do [ -e "$d/nvcc" ] || echo "$d"; done | paste -sd:)" \
        .bench-venv/bin/pip install --no-build-isolation torchsort==0.1.10

torchsort 0.1.10 ships only a source distribution. ``--no-build-isolation`` makes it compile its C++
extension against the torch already in the venv (with isolation pip would fetch another torch for the
build). Its ``setup.py`` adds a CUDA extension whenever running ``nvcc`` succeeds, and reads neither
``FORCE_CUDA`` nor ``CUDA_HOME`` for that decision; on this machine ``nvcc`` is a shim in
``/usr/local/bin``, so dropping only PATH entries that contain "cuda" keeps it and the build fails with
``OSError: CUDA_HOME environment variable is not set`` from ``CUDAExtension`` (CPU torch knows no CUDA
home). Dropping every PATH entry that holds an ``nvcc`` (above) builds the CPU extension only, in about
two minutes. The pins are in ``benchmarks/requirements-ranking.txt``.

Run (2 to 7 minutes on 2 cores, depending on what else runs)::

    .bench-venv/bin/python benchmarks/ranking.py                          # 2 torch threads, wall clock
    .bench-venv/bin/python benchmarks/ranking.py --threads 1 --clock cpu  # on a shared, busy machine

With two threads, every parallel torch (or OpenMP) region waits for both threads to be scheduled, so on
a machine whose load exceeds its cores the wall-clock times measure that wait; the script prints a
warning then. ``--clock cpu`` times the calling thread's CPU time with one thread instead, which
preemption by other processes does not inflate (docs/benchmarks.md was measured that way).

It also runs from the plain ``.venv`` (``.venv/bin/python benchmarks/ranking.py``): rows whose package
is missing are skipped with a note, and so are the checks that need them.

What is measured, for n in 64, 256, 1024, 4096 on one random float32 pair (``a`` standard normal,
``b = 0.8 a + 0.6 noise``, seed 0): the time of one forward and backward pass of Spearman-like use
(soft ranks of ``a``, Pearson correlation against the exact ranks of ``b``, ``.backward()``), median
over repeats after a warm-up, and the absolute difference between that soft Spearman and the exact
one. External methods get the same standardised input ``a / std(a)`` that metricloss uses internally,
so their smoothing parameters mean the same thing as ``strength``:

* diffsort ``DiffSortNet(type, n, steepness=DEFAULT_STRENGTH, distribution="logistic")``: the same
  relaxation as metricloss's ``bitonic``/``odd_even`` with the logistic CDF; soft ranks are
  ``P @ (1, ..., n)`` from its returned permutation matrix ``P``. Building the network is timed
  separately (once per size).
* torchsort ``soft_rank(z[None], regularization_strength=eps)`` (l2) with ``eps = 1e-3``, whose error
  is comparable to metricloss's default at every n (the n = 256 check uses this row), and with
  ``eps = 1 / DEFAULT_STRENGTH``. The l2 form projects ``z / eps`` onto the permutahedron, whose
  coordinates are one rank apart, so a fixed ``eps`` blurs more as n grows: ``eps = 0.01`` is as accurate
  as the default at n = 64 but misses the 0.005 error target at n = 1024 (6.3e-3 on the benchmark draw).

A second table gives the error of pairwise logistic against ``strength`` (forward only, 50 draws per
cell), which is what ``DEFAULT_STRENGTH`` was chosen from.
"""

from __future__ import annotations

import argparse
import gc
import importlib.metadata
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from metricloss import ranking
from metricloss.ranking import DEFAULT_STRENGTH

try:
    import diffsort
except ImportError:  # benchmark-only dependency
    diffsort = None
try:
    import torchsort
except ImportError:  # benchmark-only dependency
    torchsort = None

SIZES = (64, 256, 1024, 4096)
STRENGTHS = (10.0, 30.0, 100.0, 300.0, 1000.0)
ODD_EVEN_CAP = 512  # diffsort's odd-even network needs ~26 GB to build at n = 1024
TORCHSORT_EPS = (1e-3, 1.0 / DEFAULT_STRENGTH)  # the first is the one the n = 256 check uses
TARGET_SPEEDUP = 20.0
TARGET_ERROR = 0.005


@dataclass
class Cell:
    time_s: float | None = None
    error: float | None = None
    repeats: int = 0
    note: str = ""


def _standardise(x: torch.Tensor) -> torch.Tensor:
    return x / x.std(dim=-1, keepdim=True, correction=0)


def _pearson(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    a = a - a.mean()
    b = b - b.mean()
    return (a * b).sum() / (a.square().sum() * b.square().sum()).sqrt()


def make_pair(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(n, generator=g)
    b = 0.8 * a + 0.6 * torch.randn(n, generator=g)
    return a, b


def exact_spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(ranking.spearman(a.double(), b.double()))


def time_forward_backward(
    value: Callable[[torch.Tensor], torch.Tensor],
    a: torch.Tensor,
    *,
    budget_s: float,
    max_repeats: int,
    clock: Callable[[], float] = time.perf_counter,
) -> tuple[float, int]:
    """Median seconds of ``value(leaf).backward()`` after one warm-up; at least 3 timed repeats.

    Repeats stop after ``budget_s`` wall seconds (or ``max_repeats``); ``clock`` times each repeat.
    """

    def step() -> None:
        x = a.detach().clone().requires_grad_()
        value(x).backward()

    gc.collect()
    step()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < 3 or (len(times) < max_repeats and time.perf_counter() - start < budget_s):
        t0 = clock()
        step()
        times.append(clock() - t0)
    return statistics.median(times), len(times)


def measure(value: Callable[[torch.Tensor], torch.Tensor], a: torch.Tensor, exact: float, args) -> Cell:
    with torch.no_grad():
        err = abs(float(value(a.clone())) - exact)
    t, reps = time_forward_backward(value, a, budget_s=args.budget, max_repeats=args.max_repeats, clock=args.clock_fn)
    return Cell(t, err, reps)


def ours(method: str, relaxation: str, b: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    def value(x: torch.Tensor) -> torch.Tensor:
        return ranking.spearman(x, b, soft=True, method=method, strength=DEFAULT_STRENGTH, relaxation=relaxation)

    return value


def diffsort_build_bytes(kind: str, n: int) -> int:
    """Peak bytes diffsort 0.2.0 holds while building a network: float64 numpy layers, then float32 copies."""
    if kind == "odd_even":
        layers, rows, full = n, n // 2 + 1, n * (n // 2 + 1)
    else:
        k = max(1, math.ceil(math.log2(n)))
        # bitonic_network slices (n, 2**k) float64 arrays, so the full arrays stay alive through the views
        layers, rows, full = k * (k + 1) // 2, n // 2, n * 2**k
    return layers * 4 * (full * 8 + rows * n * 4)


def diffsort_value(net, b: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    n = b.shape[-1]
    positions = torch.arange(1, n + 1, dtype=torch.float32)

    def value(x: torch.Tensor) -> torch.Tensor:
        _, perm = net(_standardise(x).unsqueeze(0))  # perm[0, i, j]: weight of input i at sorted position j
        return _pearson(perm[0] @ positions, ranking.rank(b))

    return value


def torchsort_value(eps: float, b: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    def value(x: torch.Tensor) -> torch.Tensor:
        r = torchsort.soft_rank(_standardise(x).unsqueeze(0), regularization_strength=eps)[0]
        return _pearson(r, ranking.rank(b))

    return value


def fmt_time(t: float) -> str:
    if t >= 1.0:
        return f"{t:.1f} s"
    if t >= 0.01:
        return f"{t * 1e3:.0f} ms"
    return f"{t * 1e3:.2f} ms"


def fmt_cell(c: Cell) -> str:
    if c.time_s is None:
        return c.note
    return f"{fmt_time(c.time_s)} ({c.error:.1e})"


def progress(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--budget", type=float, default=1.0, help="seconds of timed repeats per case (min 3 repeats)")
    p.add_argument("--max-repeats", type=int, default=200)
    p.add_argument("--strength-seeds", type=int, default=50, help="draws per cell of the strength table")
    p.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="wall: time.perf_counter (default); cpu: CPU time of the calling thread (time.thread_time), "
        "which other processes on a shared machine barely disturb; needs --threads 1",
    )
    args = p.parse_args(argv)
    if args.clock == "cpu" and args.threads != 1:
        p.error("--clock cpu counts only the calling thread's CPU time, so it needs --threads 1")
    args.clock_fn = time.thread_time if args.clock == "cpu" else time.perf_counter
    torch.set_num_threads(args.threads)
    load_start = os.getloadavg()
    wall0 = time.perf_counter()

    build: dict[str, dict[int, Cell]] = {"bitonic": {}, "odd_even": {}}
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")

    specs = [
        ("metricloss pairwise, logistic (default)", "pairwise", "logistic"),
        ("metricloss pairwise, cauchy", "pairwise", "cauchy"),
        ("metricloss bitonic, logistic", "bitonic", "logistic"),
        ("metricloss bitonic, cauchy", "bitonic", "cauchy"),
        ("metricloss odd_even, logistic", "odd_even", "logistic"),
    ]
    external = [f"diffsort {k}, logistic, steepness {DEFAULT_STRENGTH:g}" for k in ("bitonic", "odd_even")]
    external += [f"torchsort soft_rank, l2, eps {eps:g}" for eps in TORCHSORT_EPS]
    table: dict[str, dict[int, Cell]] = {name: {} for name, _, _ in specs}
    table.update({name: {} for name in external})

    for n in args.sizes:
        a, b = make_pair(n, args.seed)
        exact = exact_spearman(a, b)
        for name, method, relaxation in specs:
            table[name][n] = c = measure(ours(method, relaxation, b), a, exact, args)
            progress(f"n={n:5d} {name}: {fmt_cell(c)} x{c.repeats}")
        for kind, name in zip(("bitonic", "odd_even"), external[:2], strict=True):
            if diffsort is None:
                table[name][n] = build[kind][n] = Cell(note="skipped (diffsort not installed)")
                continue
            if kind == "odd_even" and n > ODD_EVEN_CAP:
                table[name][n] = build[kind][n] = Cell(note=f"skipped (OOM past {ODD_EVEN_CAP})")
                continue
            need = diffsort_build_bytes(kind, n)
            if need > ram // 2:
                note = f"skipped (OOM: building needs ≈ {need / 2**30:.0f} GiB)"
                table[name][n] = build[kind][n] = Cell(note=note)
                continue
            t0 = args.clock_fn()
            net = diffsort.DiffSortNet(kind, n, steepness=DEFAULT_STRENGTH, distribution="logistic")
            build[kind][n] = Cell(args.clock_fn() - t0)
            table[name][n] = c = measure(diffsort_value(net, b), a, exact, args)
            progress(f"n={n:5d} {name}: {fmt_cell(c)} x{c.repeats}, build {fmt_time(build[kind][n].time_s)}")
            del net
        for eps, name in zip(TORCHSORT_EPS, external[2:], strict=True):
            if torchsort is None:
                table[name][n] = Cell(note="skipped (torchsort not installed)")
                continue
            table[name][n] = c = measure(torchsort_value(eps, b), a, exact, args)
            progress(f"n={n:5d} {name}: {fmt_cell(c)} x{c.repeats}")
    rows = list(table.items())

    # Error against strength (pairwise, logistic): max over several draws, forward only.
    strength_err: dict[tuple[float, int], tuple[float, float]] = {}
    for n in args.sizes:
        pairs = [make_pair(n, args.seed + k) for k in range(args.strength_seeds)]
        for s in STRENGTHS:
            errs = []
            for a, b in pairs:
                with torch.no_grad():
                    soft = float(ranking.spearman(a, b, soft=True, strength=s))
                errs.append(abs(soft - exact_spearman(a, b)))
            strength_err[s, n] = max(errs), statistics.median(errs)

    wall = time.perf_counter() - wall0
    load_end = os.getloadavg()
    sizes = args.sizes
    print(
        f"machine: {os.cpu_count()} CPUs ({cpu_model()}), torch {torch.__version__}, "
        f"{torch.get_num_threads()} torch threads, Python {platform.python_version()}, "
        f"diffsort {version('diffsort')}, torchsort {version('torchsort')}; "
        f"load average {load_start[0]:.1f} at start, {load_end[0]:.1f} at end; run took {wall:.0f} s; "
        f"clock: {'wall (time.perf_counter)' if args.clock == 'wall' else 'CPU time of the thread (time.thread_time)'}"
    )
    if args.clock == "wall" and max(load_start[0], load_end[0]) > os.cpu_count():
        print(
            "\nwarning: the load average exceeded the CPU count: other processes shared the cores, and "
            "multi-threaded timings (torch's OpenMP threads wait on each other) are unreliable"
        )
    print()
    print(
        f"Forward+backward time of one soft Spearman (median; warm-up excluded) and, in brackets, "
        f"|soft - exact Spearman|; n = {', '.join(map(str, sizes))}, seed {args.seed}, "
        f"strength/steepness {DEFAULT_STRENGTH:g} on standardised input.\n"
    )
    print("| method | " + " | ".join(f"n = {n}" for n in sizes) + " |")
    print("|---|" + "---|" * len(sizes))
    for name, cells in rows:
        print(f"| {name} | " + " | ".join(fmt_cell(cells[n]) for n in sizes) + " |")
    print()
    print(
        "Timed repeats per cell: "
        + "; ".join(
            f"n={n}: " + "/".join(str(cells[n].repeats) for _, cells in rows if cells[n].time_s is not None)
            for n in sizes
        )
        + " (rows in table order, skipped rows left out)."
    )
    print()
    print("diffsort network construction (one build each, not included above):\n")
    print("| network | " + " | ".join(f"n = {n}" for n in sizes) + " |")
    print("|---|" + "---|" * len(sizes))
    for kind, cells in build.items():
        print(
            f"| diffsort {kind} | "
            + " | ".join(fmt_time(cells[n].time_s) if cells[n].time_s is not None else cells[n].note for n in sizes)
            + " |"
        )
    print()
    print(
        f"Error |soft - exact Spearman| of pairwise logistic against strength: max (median) over {args.strength_seeds} "
        f"draws, seeds {args.seed}..{args.seed + args.strength_seeds - 1}; default {DEFAULT_STRENGTH:g}:\n"
    )
    print("| strength | " + " | ".join(f"n = {n}" for n in sizes) + " |")
    print("|---|" + "---|" * len(sizes))
    for s in STRENGTHS:
        mark = " (default)" if s == DEFAULT_STRENGTH else ""
        print(f"| {s:g}{mark} | " + " | ".join("{:.1e} ({:.1e})".format(*strength_err[s, n]) for n in sizes) + " |")
    print()

    default = table[specs[0][0]]
    ds_name, ts_name = external[0], external[2]
    if 1024 in sizes:
        mine, theirs = default[1024], table[ds_name][1024]
        if theirs.time_s is None:
            print(f"- CHECK n=1024 vs diffsort bitonic: {theirs.note}")
        else:
            speedup = theirs.time_s / mine.time_s
            ok = speedup >= TARGET_SPEEDUP and mine.error <= TARGET_ERROR
            print(
                f"- CHECK n=1024 vs diffsort bitonic: {'PASS' if ok else 'FAIL'}: metricloss {fmt_time(mine.time_s)} "
                f"vs diffsort {fmt_time(theirs.time_s)} = {speedup:.0f}x faster (target >= {TARGET_SPEEDUP:g}x); "
                f"error {mine.error:.1e} (target <= {TARGET_ERROR})"
            )
    if 256 in sizes:
        mine, theirs = default[256], table[ts_name][256]
        if theirs.time_s is None:
            print(f"- CHECK n=256 vs torchsort: {theirs.note}")
        else:
            ok = mine.time_s <= theirs.time_s
            print(
                f"- CHECK n=256 vs torchsort soft_rank (eps {TORCHSORT_EPS[0]:g}): {'PASS' if ok else 'FAIL'}: "
                f"metricloss {fmt_time(mine.time_s)} vs torchsort {fmt_time(theirs.time_s)} "
                f"({theirs.time_s / mine.time_s:.2f}x; target: metricloss no slower)"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
