"""The losses users pick instead, head to head: one table for every family and metric (issue 24, item 4).

    cd benchmarks && PYTHONPATH=../src nice -n 10 ../.venv/bin/python versus.py --family diabetes   # one family
    cd benchmarks && PYTHONPATH=../src ../.venv/bin/python versus.py --table                         # cached ones

Protocol (fixed in this docstring before the first run of this script; not changed after seeing results):

**Families and metrics.** ``downstream.py``'s six data sets with their models, loops, baseline losses, epochs, learning
rates, splits and test metrics (imported, not copied: digits and MNIST-5k accuracy, breast cancer F1, diabetes MAE,
pose PCK@0.05, sequence BLEU), plus the imbalanced 8-class task of issue 24 for **balanced accuracy** and **macro F1**
(two rows, one surrogate each): ``imbalanced.issue_parts()`` (MNIST-5k classes 0..7 at the shares 45 .. 2 %), trained on
its ``train`` and ``learn`` parts together (828 digits), tested on its ``test`` part (282), the MLP 784-128-8 of
``imbalanced.py``, Adam 1e-3, batch 128, 40 epochs from scratch, 10 fine-tune epochs, cross-entropy as the baseline.

**Surrogate** (per family and metric, as ``downstream.py``'s steps 1-2): a recording run of the baseline loss with seed
100 offered to ``ml.OutputRecorder(max_bytes=16 MiB)``, then ``ml.learn(metric, outputs=recorder, seed=0)`` with the
sibling's settings (``downstream.py``'s; the imbalanced rows: ``learn``'s defaults for their metric).

**Reference losses**: ``metricloss.references.for_task(task, y_train)`` of the family, class frequencies from the
training targets of the recording seed's split: classification label smoothing (0.1), focal (γ 2), logit-adjusted CE
(τ 1), class-balanced CE (β 0.9999), LDAM (0.5); set soft F1, sigmoidF1; ordinal SORD, weighted kappa; pose heatmap
L1; sequence token label smoothing (0.1). Left out, with the reason: **CORN / CORAL** (they need a ``K - 1`` output
head and their own decoding, so the model and the test metric's input change; not wired into the shared loops yet);
**LibAUC AP (SOAP) and AUC-M (PESG, DualSampler)**: they optimise AP and AUROC with their own optimiser, index and
sampler, and the set row's metric is F1 at a threshold of 0, which neither targets; a row for them belongs with an
AP / AUROC metric, which this table does not have.

**Held-out Spearman** (recorded outputs): from the surrogate's report (``sur.report.verdict``): the surrogate's, the
baseline's and each reference's Spearman with the metric on the same held-out recorded batches (real-output regime).

**Rows** (training arms), each trained for every evaluation seed s = 0..9 from scratch and as a fine-tune exactly as
``downstream.py`` does (the same initialisation, data and batch order for every arm of a seed; the fine-tune continues a
copy of seed s's scratch *baseline* model at a tenth of the learning rate with batch-order seed 1000 + s):

1. the baseline loss;
2. each reference loss alone;
3. each reference added to the baseline as users do: ``base + ref`` (weight 1);
4. ``ml.combine(base, surrogate)`` at every default (``weight="auto"``, ratio 0.5, the default gate): the library's
   documented way;
5. ``ml.combine(best, surrogate)`` with ``best`` the reference that ranks the held-out recorded outputs best by the
   verdict's Spearman (references only; chosen by measurement before any training run).

**Statistics.** Per row: test metric mean ± std over the seeds; paired difference to the baseline row (same seed),
oriented so that positive is better, mean ± standard error (std / sqrt(10)), seeds better / tied / worse, and the
verdict of ``downstream.py`` (significantly worse if mean < -SE, better if mean > +SE, tie otherwise). For issue
24's target, the documented way (row 4) is also paired with the **best reference row** of the same family, metric
and regime (the row of kinds 2-3 with the best mean; picked on these seeds, which favours the reference): "not
significantly worse" is mean >= -SE, "significantly better" mean > +SE.

Results are cached per family under ``benchmarks/results/versus/<family>.json`` (per-seed numbers, the references,
the Spearman table, the machine load); ``--table`` prints every cached family. A family not cached is "not yet run".
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import time
import warnings
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

import downstream as ds
import imbalanced as imb
import metricloss as ml
from common import machine_line
from metricloss import training
from metricloss.metrics.classification import BUILTINS
from metricloss.references import Reference, for_task
from metricloss.verdict import REAL

RESULTS = Path(__file__).resolve().parent / "results" / "versus"
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
IMB_EPOCHS, IMB_FT_EPOCHS, IMB_LR = 40, 10, 1e-3


@cache
def _imbalanced_data() -> ds.Data:
    parts = imb.issue_parts()
    x = torch.cat([parts["train"][0], parts["learn"][0]])
    y = torch.cat([parts["train"][1], parts["learn"][1]])
    return x, y, parts["test"][0], parts["test"][1]


def _imbalanced(metric: str) -> ds.Family:
    classes = len(imb.ISSUE_SHARES)

    def make_model(seed: int) -> nn.Module:
        torch.manual_seed(1000 + seed)
        return training.mlp(784, classes, imb.CFG["hidden"])

    def fit(model: nn.Module, data: ds.Data, loss_fn: LossFn, epochs: int, lr: float, seed: int) -> nn.Module:
        return training.fit(model, data[0], data[1], loss_fn, epochs=epochs, batch_size=128, lr=lr, seed=1000 + seed)

    def score(model: nn.Module, data: ds.Data) -> float:
        return float(BUILTINS[metric].fn(training.predict(model, data[2]), data[3]))

    def learn(rec: ml.OutputRecorder) -> ml.Surrogate:
        return ml.learn(metric, task="classification", outputs=rec, seed=0, progress=False)

    label = f"imbalanced 8-class ({metric.replace('_', ' ')})"
    return ds.Family(f"imbalanced_{metric}", label, metric.replace("_", " "), True, lambda seed: _imbalanced_data(),
                     make_model, fit, score, F.cross_entropy, "CE", learn, IMB_EPOCHS, IMB_LR, IMB_FT_EPOCHS)


FAMILIES: dict[str, Callable[[], ds.Family]] = {
    **ds.FAMILIES,
    "imbalanced_balanced_accuracy": lambda: _imbalanced("balanced_accuracy"),
    "imbalanced_macro_f1": lambda: _imbalanced("macro_f1"),
}


def one_batch(ref: Reference) -> LossFn:
    """A reference (stacked, ``(N, B, ...) -> (N,)``) as a training loss on one batch."""
    def loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return ref(pred.unsqueeze(0), target.unsqueeze(0)).squeeze(0)
    return loss


def plus(a: LossFn, b: LossFn) -> LossFn:
    return lambda pred, target: a(pred, target) + b(pred, target)


def spearman_table(sur: ml.Surrogate, base_name: str) -> dict[str, float]:
    """Every loss's Spearman on the held-out recorded outputs (the verdict's real-output regime)."""
    v = sur.report.verdict
    out = {"surrogate": v.real.spearman, base_name: v.real.baseline_spearman}
    out.update({c.against: c.baseline_spearman for c in v.references if c.regime == REAL})
    return out


def arms(fam: ds.Family, sur: ml.Surrogate, refs: list[Reference], best: str | None) -> dict[str, Callable[[], LossFn]]:
    """Row name -> a factory of a fresh training loss (combine is stateful: one per run)."""
    out: dict[str, Callable[[], LossFn]] = {fam.baseline_name: lambda: fam.baseline}
    for r in refs:
        out[r.name] = lambda r=r: one_batch(r)
    for r in refs:
        out[f"{fam.baseline_name} + {r.name}"] = lambda r=r: plus(fam.baseline, one_batch(r))
    out[f"combine({fam.baseline_name}, sur)"] = lambda: ml.combine(fam.baseline, sur)
    if best is not None:
        ref = next(r for r in refs if r.name == best)
        out[f"combine({best}, sur)"] = lambda: ml.combine(one_batch(ref), sur)
    return out


def run_family(fam: ds.Family, seeds: int) -> dict[str, Any]:
    t0, load_start = time.perf_counter(), os.getloadavg()
    sur, info = ds.record_and_learn(fam)
    y_train = fam.load(ds.RECORD_SEED)[1]
    refs = for_task(sur.task, y_train)
    rho = spearman_table(sur, fam.baseline_name)
    ranked = sorted((r.name for r in refs if r.name in rho), key=lambda n: -rho[n])
    best = ranked[0] if ranked else None
    print(f"  {fam.label}: held-out Spearman {json.dumps({k: round(v, 4) for k, v in rho.items()})}; best reference "
          f"{best}; references {[r.name for r in refs]}", flush=True)
    factories = arms(fam, sur, refs, best)
    runs = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ml.WeakSurrogateWarning)
        gate = ml.combine(fam.baseline, sur)
        for seed in range(seeds):
            data = fam.load(seed)
            scratch, ft, models = {}, {}, {}
            for name, make in factories.items():
                models[name] = fam.fit(fam.make_model(seed), data, make(), fam.epochs, fam.lr, seed)
                scratch[name] = fam.score(models[name], data)
            start = models[fam.baseline_name]
            for name, make in factories.items():
                model = fam.fit(copy.deepcopy(start), data, make(), fam.ft_epochs, fam.lr * ds.FT_LR_FACTOR,
                                ds.FT_SEED_OFFSET + seed)
                ft[name] = fam.score(model, data)
            runs.append({"scratch": scratch, "fine-tune": ft})
            print(f"  {fam.label} seed {seed}: " + "; ".join(f"{k} {v:.4f}" for k, v in scratch.items()), flush=True)
    return {"family": fam.key, "label": fam.label, "metric": fam.metric, "higher_is_better": fam.higher_is_better,
            "baseline": fam.baseline_name, "seeds": seeds, "references": [[r.name, r.source] for r in refs],
            "best_reference": best, "spearman": rho, "gated": gate.gated, "gate_reason": gate.gate_reason,
            "surrogate": info, "runs": runs, "seconds": time.perf_counter() - t0, "threads": torch.get_num_threads(),
            "load_start": load_start, "load_end": os.getloadavg()}


def _paired(res: dict[str, Any], regime: str, row: str, against: str) -> dict[str, Any]:
    sign = 1.0 if res["higher_is_better"] else -1.0
    d = [sign * round(r[regime][row] - r[regime][against], 12) for r in res["runs"]]
    mean = statistics.mean(d)
    se = statistics.stdev(d) / len(d) ** 0.5 if len(d) > 1 else 0.0
    verdict = "significantly worse" if mean < -se else ("better" if mean > se else "tie")
    return {"mean": mean, "se": se, "verdict": verdict,
            "tally": f"{sum(x > 0 for x in d)} / {sum(x == 0 for x in d)} / {sum(x < 0 for x in d)}"}


def _ms(values: list[float]) -> str:
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values) if len(values) > 1 else 0.0:.4f}"


def family_table(res: dict[str, Any]) -> str:
    base = res["baseline"]
    rows = list(res["runs"][0]["scratch"])
    refs = {name for name, _ in res["references"]}
    rho = res["spearman"]
    lines = [f"**{res['label']}** — {res['metric']} ({'higher' if res['higher_is_better'] else 'lower'} is better); "
             f"{res['seeds']} seeds; best reference by held-out Spearman: {res['best_reference']}; "
             f"combine's gate: {res['gate_reason']}", "",
             "| row | held-out Spearman | scratch | Δ vs " + base + " | verdict | fine-tune | Δ vs " + base
             + " | verdict |", "|" + " --- |" * 8]
    for row in rows:
        spear = rho.get("surrogate" if row.startswith("combine") else row)
        spear_s = "–" if spear is None or row.startswith(f"{base} + ") else f"{spear:.3f}"
        if row.startswith("combine"):
            spear_s = f"sur {rho['surrogate']:.3f}"
        cells = []
        for regime in ("scratch", "fine-tune"):
            vals = [r[regime][row] for r in res["runs"]]
            if row == base:
                cells += [_ms(vals), "–", "–"]
            else:
                p = _paired(res, regime, row, base)
                cells += [_ms(vals), f"{p['mean']:+.4f} ± {p['se']:.4f} ({p['tally']})", p["verdict"]]
        lines.append(f"| {row} | {spear_s} | " + " | ".join(cells) + " |")
    lines.append("")
    doc = f"combine({base}, sur)"
    for regime in ("scratch", "fine-tune"):
        cands = [row for row in rows if row in refs or row.startswith(f"{base} + ")]
        if not cands:
            continue
        sign = 1.0 if res["higher_is_better"] else -1.0
        best = max(cands, key=lambda row: sign * statistics.mean(r[regime][row] for r in res["runs"]))
        p = _paired(res, regime, doc, best)
        lines.append(f"- {regime}: {doc} against the best reference row ({best}): {p['mean']:+.4f} ± {p['se']:.4f} "
                     f"({p['tally']}), {p['verdict']}.")
    return "\n".join(lines)


def recorded_metric(key: str) -> str:
    """A diagnostic (issue 24 item 5, added after the protocol, not a row): the metric on the batches the recording run
    (seed 100) offers to the recorder, by part of the run: how much of what the surrogate learns from is already
    perfect."""
    fam = FAMILIES[key]()
    rec = ml.OutputRecorder(max_bytes=ds.RECORD_BYTES)
    data = fam.load(ds.RECORD_SEED)
    fam.fit(fam.make_model(ds.RECORD_SEED), data, ds.recording(fam.baseline, rec), fam.epochs, fam.lr, ds.RECORD_SEED)
    metric = BUILTINS[fam.key.removeprefix("imbalanced_")] if key.startswith("imbalanced_") else None
    if metric is None:
        raise SystemExit("--recorded is for the imbalanced families")
    values = [float(metric.fn(p, t)) for p, t in rec]
    n, lines = len(values), []
    for part, sl in (("first quarter", slice(0, n // 4)), ("second half", slice(n // 2, n)), ("all", slice(0, n))):
        v = values[sl]
        lines.append(f"{key} recorded batches, {part}: {len(v)} batches, mean {statistics.mean(v):.4f}, "
                     f"{sum(x == 1.0 for x in v)} exactly 1.0")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", nargs="*", default=[], choices=list(FAMILIES))
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--table", action="store_true", help="print the cached families' tables")
    parser.add_argument("--recorded", choices=[k for k in FAMILIES if k.startswith("imbalanced_")],
                        help="a diagnostic: the metric on the recording run's batches (not a row of the table)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(machine_line() + " (at start)", flush=True)
    if args.recorded:
        print(recorded_metric(args.recorded), flush=True)
    for key in args.family:
        res = run_family(FAMILIES[key](), args.seeds)
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / f"{key}.json").write_text(json.dumps(res, indent=1))
        print(f"  {key}: {res['seconds']:.0f} s, load {res['load_start'][0]:.1f} -> {res['load_end'][0]:.1f}",
              flush=True)
        print(family_table(res), flush=True)
    if args.table:
        for key in FAMILIES:
            path = RESULTS / f"{key}.json"
            print(family_table(json.loads(path.read_text())) if path.exists() else f"{key}: not yet run", "\n")
    print(machine_line() + " (at end)", flush=True)


if __name__ == "__main__":
    main()
