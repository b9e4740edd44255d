"""Plant each of issue 12's nine learning bugs, one at a time, in a temporary copy of the tree and check that at
least one test fails for each.

Usage (from the repository root)::

    PYTHONPATH=$PWD/src .venv/bin/python scripts/mutation_check.py            # the learning tests
    PYTHONPATH=$PWD/src .venv/bin/python scripts/mutation_check.py --all      # the whole suite per bug

Every bug is one exact text replacement that must match exactly once (the script stops if the code moved).
The unmutated copy is run first and must pass. Prints a table: bug, file, caught, the first failing test.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PKG = "src/metricloss"
LEARNING_TESTS = ["tests/test_learning_parts.py", "tests/test_learning_families.py", "tests/test_learn.py",
                  "tests/test_reliability.py"]

#: (bug, file, text, replacement)
MUTATIONS: list[tuple[str, str, str, str]] = [
    ("validation on the training pool", f"{PKG}/learning/trainer.py",
     "v_pred, v_target, v_values = self.batches.heldout", "v_pred, v_target, v_values = self.batches.pool"),
    ("p_random ignored", f"{PKG}/learning/batches.py",
     "p_random = 0.5 if settings.p_random is None else settings.p_random", "p_random = 0.5"),
    ("held-out G_M batches also used for training", f"{PKG}/learning/batches.py",
     "learning = all_pred[perm[n_val:]], all_target[perm[n_val:]]", "learning = all_pred[perm], all_target[perm]"),
    ("part of the G_R pool not relabelled", f"{PKG}/learning/batches.py",
     "relabelled = n_pool // 2", "relabelled = n_pool // 4"),
    ("patience off by one", f"{PKG}/learning/trainer.py",
     "self.done = self.bad >= self.patience", "self.done = self.bad > self.patience"),
    ("the report's baseline measured on other batches", f"{PKG}/evaluation.py",
     "base_losses = _chunked(task.baseline, pred, target, chunk)",
     "base_losses = _chunked(task.baseline, pred.roll(1, 0), target.roll(1, 0), chunk)"),
    ("the baseline's gradient agreement measured on the surrogate", f"{PKG}/evaluation.py",
     'fields["baseline_gradient_agreement"] = gradient_agreement(task.baseline,',
     'fields["baseline_gradient_agreement"] = gradient_agreement(gradient_loss or losses_of,'),
    ("resume not restoring the random generator", f"{PKG}/_checkpoint.py",
     'gen.set_state(tensors["rng"])', 'pass  # gen.set_state(tensors["rng"])'),
    ("the L1/L2 offset changed", f"{PKG}/learning/batches.py",
     "return float(torch.cat(parts).max())", "return float(torch.cat(parts).max()) + 1.0"),
]


def _copy_tree(dest: Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache")
    for name in ("src", "tests"):
        shutil.copytree(ROOT / name, dest / name, ignore=ignore)
    shutil.copy(ROOT / "pyproject.toml", dest / "pyproject.toml")


def _run_tests(tree: Path, tests: list[str]) -> tuple[bool, str]:
    env = {**os.environ, "PYTHONPATH": str(tree / "src"), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "-o", "addopts=", *tests]
    proc = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True)
    failed = re.findall(r"^FAILED (\S+)", proc.stdout, flags=re.M) or re.findall(r"^ERROR (\S+)", proc.stdout,
                                                                                    flags=re.M)
    return proc.returncode == 0, (failed[0] if failed else proc.stdout.strip().splitlines()[-1] if proc.stdout else "")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--all", action="store_true", help="run the whole suite for every bug")
    args = parser.parse_args()
    tests = ["tests"] if args.all else [t for t in LEARNING_TESTS if (ROOT / t).exists()]
    with tempfile.TemporaryDirectory() as tmp:
        clean = Path(tmp) / "clean"
        _copy_tree(clean)
        ok, detail = _run_tests(clean, tests)
        if not ok:
            print(f"the unmutated tree fails ({detail}): fix that first")
            return 1
        rows, caught = [], 0
        for i, (bug, rel, old, new) in enumerate(MUTATIONS, start=1):
            tree = Path(tmp) / f"m{i}"
            _copy_tree(tree)
            path = tree / rel
            text = path.read_text()
            if text.count(old) != 1:
                print(f"bug {i} ({bug}): the text occurs {text.count(old)} times in {rel}; update the script")
                return 1
            path.write_text(text.replace(old, new))
            passed, detail = _run_tests(tree, tests)
            caught += not passed
            rows.append(f"| {i} | {bug} | `{rel.removeprefix('src/')}` | {'yes' if not passed else 'NO'} | "
                        f"{detail if not passed else ''} |")
            print(rows[-1], flush=True)
            shutil.rmtree(tree)
    print(f"\ntests run: {' '.join(tests)}\n")
    print("| # | planted bug | file | caught | first failing test |\n| --- | --- | --- | --- | --- |")
    print("\n".join(rows))
    print(f"\n{caught} of {len(MUTATIONS)} planted bugs caught")
    return 0 if caught == len(MUTATIONS) else 1


if __name__ == "__main__":
    raise SystemExit(main())
