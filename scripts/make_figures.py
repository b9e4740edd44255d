"""Regenerate the site's figures of the demo (docs/figures/) from `metricloss demo`'s own plotting code.

    PYTHONPATH=src .venv/bin/python scripts/make_figures.py                  # the demo's settings, digits
    PYTHONPATH=src .venv/bin/python scripts/make_figures.py --steps 60       # learning cut to 60 steps
    PYTHONPATH=src .venv/bin/python scripts/make_figures.py --quick          # a smoke run: checks the script

It runs :func:`metricloss.demo.run_demo` on the chosen data sets with one downstream seed (the plots do not use the
downstream runs) and copies its plots into ``--out``: ``<name>_loss_vs_metric.png`` (cross-entropy and the learned
surrogate against batch accuracy on held-out test-output batches, ReLoss Figure 1b) and
``<name>_learning_curve.png`` (the surrogate's held-out Spearman during learning beside cross-entropy's, Figure 2b).
docs/demo.md shows them and says which command made them (never ``--quick``).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

from metricloss.demo import SETTINGS, run_demo

ROOT = Path(__file__).resolve().parents[1]
PLOTS = ("loss_vs_metric", "learning_curve")
QUICK = {"epochs": 2, "learn_kwargs": {"steps": 4, "batches_per_step": 8, "pool_size": 32, "validation_batches": 16,
                                       "gradient_probe": 0}}


def make_figures(out: Path, names: tuple[str, ...] = ("digits",), quick: bool = False,
                 steps: int | None = None) -> list[Path]:
    """Run the demo on ``names`` (``steps``: learning steps, else the demo's) and copy its plots into ``out``;
    returns the files written."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    settings = QUICK if quick else ({"learn_kwargs": {"steps": steps}} if steps is not None else {})
    with tempfile.TemporaryDirectory() as tmp:
        run_demo(tmp, names=names, seeds=1, progress=not quick, **settings)
        for name in names:
            for plot in PLOTS:
                target = out / f"{name}_{plot}.png"
                shutil.copyfile(Path(tmp) / target.name, target)
                written.append(target)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "figures")
    parser.add_argument("--names", nargs="+", default=["digits"], choices=sorted(SETTINGS))
    parser.add_argument("--steps", type=int, default=None, help="learning steps (default: the demo's)")
    parser.add_argument("--quick", action="store_true", help="cut-down settings (a smoke run, not for the site)")
    args = parser.parse_args(argv)
    for path in make_figures(args.out, tuple(args.names), args.quick, args.steps):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
