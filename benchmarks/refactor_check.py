"""Before/after check for refactoring `learn()`: run a matrix of small `ml.learn` configurations and dump what
they produce, so two trees can be compared bit for bit.

Every family (classification, set, ordinal, pose, sequence); objectives spearman, kendall, l2, l1, gradient and
gradient_weight > 0; with and without ``outputs=``; a checkpointed run killed after its k-th checkpoint write and
resumed; and the deprecated ``method="uniloss"``/``"nonparametric"`` forwards. Only the public API is used, so the
same file runs on an old and a new tree::

    cd /work/wt/base && PYTHONPATH=$PWD/src python /path/to/benchmarks/refactor_check.py dump before.pt
    cd /work/wt/i12  && PYTHONPATH=$PWD/src python benchmarks/refactor_check.py dump after.pt
    python benchmarks/refactor_check.py compare before.pt after.pt

``dump`` writes, per configuration, the surrogate's state dict (or its configuration for weight-free losses) and
its report as a dict without the wall-clock fields (``learn_seconds``, ``metric_seconds``, ``library_version``).
``compare`` says for every configuration whether every tensor is ``torch.equal`` and every report field ``==``
(NaN equal to NaN), and prints the first differences; report fields only the second tree writes (``verdict``) are
listed, not compared.
"""

from __future__ import annotations

import math
import sys
import tempfile
import warnings
from pathlib import Path

import torch

import metricloss as ml
import metricloss._checkpoint  # the kill hook patches its write_atomic
from metricloss.tasks.base import get_task

TIME_FIELDS = ("learn_seconds", "metric_seconds", "library_version")
BASE = {"steps": 24, "batches_per_step": 16, "pool_size": 64, "validation_batches": 16, "eval_every": 4,
        "patience": 2, "progress": False, "gradient_probe": 8}


def _outputs(task: str, n: int, batch: int, seed: int = 7, **kw) -> list:
    pred, target = get_task(task, **kw).random_batches(n, batch, torch.Generator().manual_seed(seed))
    return list(zip(pred, target, strict=True))


def configs() -> dict[str, tuple[str, dict]]:
    cls = {"task": "classification", "num_classes": 5, "batch_size": 16}
    out = {
        "cls-spearman": ("accuracy", {**cls}),
        "cls-kendall": ("accuracy", {**cls, "objective": "kendall"}),
        "cls-l2": ("accuracy", {**cls, "objective": "l2"}),
        "cls-l1": ("accuracy", {**cls, "objective": "l1", "seed": 3}),
        "cls-gradient": ("accuracy", {**cls, "objective": "gradient", "steps": 8, "directions": 4}),
        "cls-spearman+gradient": ("accuracy", {**cls, "gradient_weight": 0.5, "steps": 12, "directions": 4}),
        "cls-outputs": ("accuracy", {**cls, "outputs": _outputs("classification", 40, 16, num_classes=5)}),
        "cls-outputs-p0.2": ("accuracy", {**cls, "p_random": 0.2,
                                          "outputs": _outputs("classification", 40, 16, num_classes=5)}),
        "cls-top5-nopenalty": ("top5_accuracy", {**cls, "num_classes": 8, "penalty": 0.0}),
        "set-f1": ("f1", {"task": "set", "batch_size": 16}),
        "set-ap-outputs": ("average_precision", {"task": "set", "num_labels": 3, "batch_size": 16,
                                                 "outputs": _outputs("set", 40, 16, num_labels=3)}),
        "ordinal-mae": ("mae", {"task": "ordinal", "num_classes": 6, "batch_size": 16}),
        "ordinal-mae-l2-outputs": ("mae", {"task": "ordinal", "num_classes": 6, "batch_size": 16, "objective": "l2",
                                           "outputs": _outputs("ordinal", 40, 16, num_classes=6)}),
        "pose-pck": ("pck", {"task": "pose", "num_keypoints": 3, "heatmap_size": (8, 8), "batch_size": 4,
                             "steps": 12}),
        "pose-pck-outputs": ("pck", {"task": "pose", "num_keypoints": 3, "heatmap_size": (8, 8), "batch_size": 4,
                                     "steps": 12, "outputs": _outputs("pose", 40, 4, num_keypoints=3,
                                                                      heatmap_size=(8, 8))}),
        "seq-bleu": ("bleu", {"task": "sequence", "vocab_size": 12, "max_length": 10, "batch_size": 8, "steps": 12}),
        "seq-edit-outputs": ("edit_distance", {"task": "sequence", "vocab_size": 12, "max_length": 10,
                                               "batch_size": 8, "steps": 12,
                                               "outputs": _outputs("sequence", 40, 8, vocab_size=12,
                                                                   max_length=10)}),
    }
    return {name: (metric, {**BASE, **kw}) for name, (metric, kw) in out.items()}


class _Killed(Exception):
    pass


def _killed_and_resumed(metric: str, kw: dict, kill_after: int) -> ml.Surrogate:
    """Run with a checkpoint, 'kill' it right after its ``kill_after``-th checkpoint write, then resume."""
    ckpt_mod = sys.modules["metricloss._checkpoint"]
    real = ckpt_mod.write_atomic
    writes = {"n": 0}

    def dying_write(*args, **kwargs):
        real(*args, **kwargs)
        writes["n"] += 1
        if writes["n"] == kill_after:
            raise _Killed

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "progress.safetensors"
        ckpt_mod.write_atomic = dying_write
        try:
            ml.learn(metric, checkpoint=path, **kw)
            raise RuntimeError("the run ended before it was killed")
        except _Killed:
            pass
        finally:
            ckpt_mod.write_atomic = real
        return ml.learn(metric, checkpoint=path, **kw)


def _record(loss) -> dict:
    rep = {k: v for k, v in loss.report.to_dict().items() if k not in TIME_FIELDS}
    if hasattr(loss, "net"):
        state = {k: v.clone() for k, v in loss.net.state_dict().items()}
    else:
        state = {"config": repr(sorted(loss.config().items()))}
    return {"state": state, "report": rep}


def dump(path: str) -> None:
    torch.set_num_threads(1)
    results = {}
    for name, (metric, kw) in configs().items():
        results[name] = _record(ml.learn(metric, **kw))
        rep = results[name]["report"]
        print(f"{name}: spearman {rep['spearman']:.4f} (baseline {rep['baseline_spearman']:.4f}), steps {rep['steps']}")
    resume_kw = {**configs()["cls-outputs"][1], "patience": 1000}
    results["cls-outputs-resumed"] = _record(_killed_and_resumed("accuracy", resume_kw, kill_after=3))
    results["cls-outputs-uninterrupted"] = _record(ml.learn("accuracy", **resume_kw))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        method_runs = {
            "method-uniloss": lambda: ml.learn("accuracy", num_classes=5, batch_size=16, validation_batches=16,
                                               method="uniloss", progress=False),
            "method-nonparametric": lambda: ml.learn(
                "accuracy", num_classes=5, batch_size=16, validation_batches=8, method="nonparametric",
                net={"grid": {"temperature": [0.3, 1.0], "bandwidth": [0.3]}}, progress=False),
        }
        for name, run in method_runs.items():
            try:
                results[name] = _record(run())
            except Exception as err:  # recorded, so the comparison shows it
                results[name] = {"state": {}, "report": {"error": repr(err)}}
    torch.save(results, path)
    print(f"wrote {len(results)} configurations to {path}")


def _same(a, b) -> bool:
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def compare(before: str, after: str) -> int:
    a, b = torch.load(before), torch.load(after)
    bad = 0
    print("| configuration | weights identical | report identical |\n| --- | --- | --- |")
    for name in sorted(set(a) | set(b)):
        if name not in a or name not in b:
            print(f"| {name} | missing in {'before' if name not in a else 'after'} | |")
            bad += 1
            continue
        # fields that only the newer tree writes (e.g. "verdict") are listed, not compared
        new = sorted(set(b[name]["report"]) - set(a[name]["report"]))
        shared = {k: b[name]["report"][k] for k in b[name]["report"] if k not in new}
        ws, rs = _same(a[name]["state"], b[name]["state"]), _same(a[name]["report"], shared)
        print(f"| {name} | {ws} | {rs} |" + (f" new report fields: {new}" if new else ""))
        if not (ws and rs):
            bad += 1
            diff = [k for k in a[name]["report"] if not _same(a[name]["report"][k], b[name]["report"].get(k))]
            print(f"    differing report fields: {diff}")
    resumed = _same(b["cls-outputs-resumed"], b["cls-outputs-uninterrupted"])
    print(f"\nafter: killed-and-resumed run identical to the uninterrupted one: {resumed}")
    print(f"{len(set(a) | set(b)) - bad} of {len(set(a) | set(b))} configurations identical")
    return 0 if bad == 0 and resumed else 1


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "dump":
        dump(sys.argv[2])
    elif len(sys.argv) == 4 and sys.argv[1] == "compare":
        raise SystemExit(compare(sys.argv[2], sys.argv[3]))
    else:
        raise SystemExit(__doc__)
