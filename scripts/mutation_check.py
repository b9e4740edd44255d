"""Plant bugs one at a time in a temporary copy of the tree and check that at least one test fails for each.

Two sets: issue 12's nine learning bugs (run against the learning tests), and issue 22's bugs in the code of the issues
after it (combine, verdict, recorder, distributed, shapes, memory, class features, set features, step defaults,
replay), each run against the few test files that guard its module, so the check stays quick.

Usage (from the repository root)::

    PYTHONPATH=$PWD/src .venv/bin/python scripts/mutation_check.py              # every bug, its own tests
    PYTHONPATH=$PWD/src .venv/bin/python scripts/mutation_check.py --only combine,shapes   # bugs whose name or file
                                                                                 # contains one of these words
    PYTHONPATH=$PWD/src .venv/bin/python scripts/mutation_check.py --all        # the whole suite per bug
    PYTHONPATH=$PWD/src .venv/bin/python scripts/mutation_check.py --list       # the bugs, without running anything

Every bug is one or more exact text replacements, each of which must match exactly once: when the code has moved, the
row says so ("text not found: update the script") and the script fails. The unmutated copy is run first on every test
file the chosen bugs use and must pass. Prints a table: bug, file, caught, the first failing test.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PKG = "src/metricloss"
LEARNING_TESTS = ("tests/test_learning_parts.py", "tests/test_learning_families.py", "tests/test_learn.py",
                  "tests/test_reliability.py")
GUARDS = "tests/test_guards.py"


@dataclass(frozen=True)
class Mutation:
    """A planted bug: ``edits`` (exact ``(text, replacement)`` pairs) in ``file``, to be caught by ``tests``."""

    bug: str
    file: str
    edits: tuple[tuple[str, str], ...]
    tests: tuple[str, ...]


def _learning(bug: str, file: str, old: str, new: str) -> Mutation:
    return Mutation(bug, f"{PKG}/{file}", ((old, new),), LEARNING_TESTS)


#: Issue 12's learning bugs.
LEARNING = [
    _learning("validation on the training pool", "learning/trainer.py",
              "v_pred, v_target, v_values = self.batches.heldout", "v_pred, v_target, v_values = self.batches.pool"),
    _learning("p_random ignored", "learning/batches.py",
              "p_random = 0.5 if settings.p_random is None else settings.p_random", "p_random = 0.5"),
    _learning("held-out G_M batches also used for training", "learning/batches.py",
              "learning = all_pred[perm[n_val:]], all_target[perm[n_val:]]",
              "learning = all_pred[perm], all_target[perm]"),
    _learning("part of the G_R pool not relabelled", "learning/batches.py",
              "relabelled = n_pool // 2", "relabelled = n_pool // 4"),
    _learning("patience off by one", "learning/trainer.py",
              "self.done = self.bad >= self.patience", "self.done = self.bad > self.patience"),
    _learning("the report's baseline measured on other batches", "evaluation.py",
              "base_losses = _chunked(task.baseline, pred, target, chunk)",
              "base_losses = _chunked(task.baseline, pred.roll(1, 0), target.roll(1, 0), chunk)"),
    _learning("the baseline's gradient agreement measured on the surrogate", "evaluation.py",
              'fields["baseline_gradient_agreement"] = gradient_agreement(task.baseline,',
              'fields["baseline_gradient_agreement"] = gradient_agreement(gradient_loss or losses_of,'),
    _learning("resume not restoring the random generator", "_checkpoint.py",
              'gen.set_state(tensors["rng"])', 'pass  # gen.set_state(tensors["rng"])'),
    _learning("the L1/L2 offset changed", "learning/batches.py",
              "return float(torch.cat(parts).max())", "return float(torch.cat(parts).max()) + 1.0"),
]


def _bug(bug: str, file: str, edits: list[tuple[str, str]], *tests: str) -> Mutation:
    return Mutation(bug, f"{PKG}/{file}", tuple(edits), (*tests, GUARDS))  # the module's own tests run first


COMBINE = ("tests/test_combine.py", "tests/test_combine_gate.py")
VERDICT = ("tests/test_verdict.py",)
RECORDING = ("tests/test_recording.py",)
SHAPES = ("tests/test_shapes.py",)
MEMORY = ("tests/test_memory_budget.py",)
CLASS_FEATURES = ("tests/test_class_features.py",)
SET = ("tests/test_set.py",)
STEPS = ("tests/test_learning_parts.py::test_default_steps_shrink_with_the_size_of_a_steps_batches",
         "tests/test_learning_parts.py::test_capped_steps_is_bounded_and_never_grows_with_the_step")

#: Issue 22's bugs in the code of issues 13 to 21 (the first five passed the whole suite before issue 22).
LATER = [
    # combine
    _bug("combine's rank-shared weight from summed norms, not summed squared norms", "combine.py",
         [("sq = torch.tensor([gb * gb, gs * gs]", "sq = torch.tensor([gb, gs]"),
          ("gb, gs = (math.sqrt(v) for v in sq.tolist())", "gb, gs = (v for v in sq.tolist())")], *COMBINE),
    _bug("combine's weight ratio inverted", "combine.py",
         [("target_weight = self.ratio * gb / gs", "target_weight = self.ratio * gs / gb")], *COMBINE),
    _bug("combine's moving average weighs the new measurement by the momentum", "combine.py",
         [("self.momentum * self.weight_ema + (1.0 - self.momentum) * target_weight",
           "(1.0 - self.momentum) * self.weight_ema + self.momentum * target_weight")], *COMBINE),
    _bug("combine updates its weight in eval mode", "combine.py",
         [("return self.training and torch.is_grad_enabled() and pred.requires_grad",
           "return torch.is_grad_enabled() and pred.requires_grad")], *COMBINE),
    _bug("combine's gate keeps a surrogate that ties the baseline exactly (d = 0)", "combine.py",
         [("    if d > 0:\n", "    if d >= 0:\n")], *COMBINE),
    _bug("combine's warm-up one call ahead", "combine.py",
         [("w *= min(1.0, step / self.warmup)", "w *= min(1.0, (step + 1) / self.warmup)")], *COMBINE),
    # verdict
    _bug("verdict's bootstrap not paired (the baseline on other resampled batches)", "verdict.py",
         [("- ranking.spearman(base[idx], m[idx]))", "- ranking.spearman(base[idx.roll(1, 0)], m[idx.roll(1, 0)]))")],
         *VERDICT),
    _bug("verdict decided by random batches when real outputs were measured", "verdict.py",
         [("basis = real if real is not None else random", "basis = random if random is not None else real")],
         *VERDICT),
    _bug("verdict's gradient norm ratio inverted", "verdict.py",
         [("ratios.append((ns / nb)[ok])", "ratios.append((nb / ns)[ok])")], *VERDICT),
    _bug("no weak-surrogate warning on a tie", "verdict.py",
         [('if verdict.real is None or verdict.real.outcome == "beats":',
           'if verdict.real is None or verdict.real.outcome != "loses":')], *VERDICT),
    # recorder
    _bug("recorder's reservoir counts every batch offered, not the candidates", "recording.py",
         [("slot = self._rng.randrange(self.candidates)", "slot = self._rng.randrange(self.seen)")], *RECORDING),
    _bug("recorder evicts at most one batch for a larger replacement (over budget)", "recording.py",
         [("while self._items and self._bytes + size > self.max_bytes:",
           "if self._items and self._bytes + size > self.max_bytes:")], *RECORDING),
    _bug("recorder stores a view of the caller's tensor", "recording.py",
         [('x.to("cpu", copy=True, memory_format=torch.contiguous_format)', 'x.to("cpu")')], *RECORDING),
    _bug("recorder's reservoir one batch larger than what fitted", "recording.py",
         [("self.capacity = max(len(self._items), 1)", "self.capacity = len(self._items) + 1")], *RECORDING),
    # distributed
    _bug("rank shares overlap when the items do not divide evenly", "learning/distributed.py",
         [("start = rank * base + min(rank, extra)", "start = rank * base")]),
    _bug("metric workers' values not oriented higher-is-better", "learning/distributed.py",
         [("return self.metric.oriented(values)", "return values")]),
    _bug("each rank's share of the gathered losses' gradient divided by the world size", "learning/distributed.py",
         [("return grad[start:stop], None", "return grad[start:stop] / world()[1], None")]),
    # shapes
    _bug("max_length equal to the longest T in the outputs rejected", "learning/shapes.py",
         [("(s[key] > value if key in UPPER_BOUNDS", "(s[key] >= value if key in UPPER_BOUNDS")], *SHAPES),
    _bug("max_length inferred from the last batch, not the longest", "learning/shapes.py",
         [("if key in UPPER_BOUNDS:\n                inferred[key] = max(inferred[key], value)",
           "if key in UPPER_BOUNDS:\n                inferred[key] = value")], *SHAPES),
    # memory
    _bug('"1MB" read as 2^20 bytes', "_memory.py", [('"mb": 10**6', '"mb": 2**20')], *MEMORY),
    _bug("the gradient probe's group size ignores its extra copies", "evaluation.py",
         [("room = CHUNK_SHARE * budget / max(pred[0].nbytes, 1) - PROBE_EXTRA",
           "room = CHUNK_SHARE * budget / max(pred[0].nbytes, 1)")], *MEMORY),
    _bug("a chunk's size ignores the copies each item holds", "_memory.py",
         [("fit_count(int(item_bytes * copies), budget, CHUNK_SHARE)",
           "fit_count(int(item_bytes), budget, CHUNK_SHARE)")], *MEMORY),
    _bug("the gradient probe's antithetic points both on the + side", "evaluation.py",
         [("torch.sub(pred.unsqueeze(1), step, out=minus)", "torch.add(pred.unsqueeze(1), step, out=minus)")], *MEMORY),
    # class features
    _bug("class features' runner-up may be the target (composite path)", "tasks/classification.py",
         [('other = logits.detach().scatter(-1, index, float("-inf")).max(dim=-1, keepdim=True).indices',
           "other = logits.detach().max(dim=-1, keepdim=True).indices")], *CLASS_FEATURES),
    _bug("class features' runner-up is the last of equal maxima (fused path)", "tasks/classification.py",
         [("rank = torch.arange(c, 0, -1, dtype=scratch.dtype, device=scratch.device)",
           "rank = torch.arange(1, c + 1, dtype=scratch.dtype, device=scratch.device)"),
          ("return (c - scratch.ge_(top).mul_(rank).amax(dim=-1, keepdim=True)).long()",
           "return (scratch.ge_(top).mul_(rank).amax(dim=-1, keepdim=True) - 1).long()")], *CLASS_FEATURES),
    _bug("log_target_prob not scaled by 1/10", "tasks/classification.py",
         [("out.append(picked[..., 0].clamp_min(-30.0) / 10)", "out.append(picked[..., 0].clamp_min(-30.0))")],
         *CLASS_FEATURES),
    _bug("class features' double-backward gradient has the wrong sign", "tasks/classification.py",
         [("grad_logits = logits.softmax(dim=-1) * -scale", "grad_logits = logits.softmax(dim=-1) * scale")],
         *CLASS_FEATURES),
    # set features
    _bug("set features count a sample's comparison with itself", "tasks/set.py",
         [("offset = torch.stack([-0.5 * (1 - y) * inv_neg,", "offset = torch.stack([0 * (1 - y) * inv_neg,")],
         *SET),
    _bug("set features' all-above share divided by B, not B - 1", "tasks/set.py",
         [("inv_all = 1 / n_neg.clamp_min(1), 1 / n_pos.clamp_min(1), 1 / max(b - 1, 1)",
           "inv_all = 1 / n_neg.clamp_min(1), 1 / n_pos.clamp_min(1), 1 / max(b, 1)")], *SET),
    _bug("set features' rms floor squared twice", "tasks/set.py",
         [("clamp_min(sign_floor**2).sqrt()", "clamp_min(sign_floor).sqrt()")], *SET),
    _bug("set features' rank scale uses the sample sd (B - 1)", "tasks/set.py",
         [("scores.std(dim=-1, keepdim=True, correction=0)", "scores.std(dim=-1, keepdim=True, correction=1)")], *SET),
    # step defaults
    _bug("capped_steps without its floor of 50", "tasks/base.py",
         [("return int(max(MIN_DEFAULT_STEPS, min(DEFAULT_STEPS, budget // max(step_elements, 1))))",
           "return int(min(DEFAULT_STEPS, budget // max(step_elements, 1)))")], *STEPS),
    _bug("default steps of a class range sized by its smallest C", "tasks/base.py",
         [("self.default_batch_size * self.num_classes, LEARN_LOGITS)",
           "self.default_batch_size * self.min_classes, LEARN_LOGITS)")], *STEPS),
    _bug("sequence default steps ignore max_length", "tasks/sequence.py",
         [("self.default_batch_size * self.max_length, LEARN_TOKENS)", "self.default_batch_size * 128, LEARN_TOKENS)")],
         *STEPS),
    # replay
    _bug("a random-batch card re-measured on given outputs, labelled held-out model outputs", "replay.py",
         [("outputs = list(outputs) if outputs is not None and report.validation.startswith(OUTPUTS) else None",
           "outputs = list(outputs) if outputs is not None else None")], *MEMORY),
    _bug("replay forgets that the G_R pool was drawn before the held-out batches", "replay.py",
         [('    task.random_batches(int(s["pool_size"]), size, gen)  #', '    pass  #')], *MEMORY),
    _bug("replay probes with seed 0 whatever the run's seed", "replay.py",
         [('"seed": int(s.get("seed", 0)), "gradient_loss": loss.net}', '"seed": 0, "gradient_loss": loss.net}')],
         *MEMORY),
    _bug("replay of a non-parametric card skips no selection batches", "replay.py",
         [('skip = int(s.get("selection_batches", n))', "skip = 0")], *MEMORY),
]
MUTATIONS = LEARNING + LATER

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


def _plant(tree: Path, mutation: Mutation) -> str | None:
    """Apply the mutation's edits in ``tree``; the reason it cannot be planted, if one text does not occur once."""
    path = tree / mutation.file
    text = path.read_text()
    for old, new in mutation.edits:
        if text.count(old) != 1:
            return f"text found {text.count(old)} times, not once: update the script ({old[:40]!r})"
        text = text.replace(old, new)
    path.write_text(text)
    return None


def _chosen(words: str | None) -> list[Mutation]:
    if not words:
        return MUTATIONS
    keys = [w.strip().lower() for w in words.split(",") if w.strip()]
    return [m for m in MUTATIONS if any(k in m.bug.lower() or k in m.file.lower() for k in keys)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--all", action="store_true", help="run the whole suite for every bug")
    parser.add_argument("--only", default=None, help="comma-separated words: the bugs whose name or file holds one")
    parser.add_argument("--list", action="store_true", help="list the bugs and their tests, and stop")
    args = parser.parse_args()
    chosen = _chosen(args.only)
    if args.list:
        for i, m in enumerate(chosen, start=1):
            print(f"{i:2d}. {m.bug} [{m.file.removeprefix('src/')}] -> {' '.join(m.tests)}")
        return 0
    if not chosen:
        print(f"no bug matches {args.only!r}")
        return 1

    def tests_of(m: Mutation) -> list[str]:
        return ["tests"] if args.all else [t for t in m.tests if (ROOT / t.split("::")[0]).exists()]

    every = ["tests"] if args.all else sorted({t for m in chosen for t in tests_of(m)})
    with tempfile.TemporaryDirectory() as tmp:
        clean = Path(tmp) / "clean"
        _copy_tree(clean)
        ok, detail = _run_tests(clean, every)
        if not ok:
            print(f"the unmutated tree fails ({detail}): fix that first")
            return 1
        rows, caught = [], 0
        for i, m in enumerate(chosen, start=1):
            tree = Path(tmp) / f"m{i}"
            _copy_tree(tree)
            problem = _plant(tree, m)
            if problem is None:
                passed, detail = _run_tests(tree, tests_of(m))
                caught += not passed
                verdict = "NO" if passed else "yes"
                detail = "" if passed else detail
            else:
                verdict, detail = "not planted", problem
            rows.append(f"| {i} | {m.bug} | `{m.file.removeprefix('src/')}` | {verdict} | {detail} |")
            print(rows[-1], flush=True)
            shutil.rmtree(tree)
    print(f"\ntests run per bug: {'the whole suite' if args.all else 'the files listed by --list'}\n")
    print("| # | planted bug | file | caught | first failing test |\n| --- | --- | --- | --- | --- |")
    print("\n".join(rows))
    print(f"\n{caught} of {len(chosen)} planted bugs caught")
    return 0 if caught == len(chosen) else 1


if __name__ == "__main__":
    raise SystemExit(main())
