"""The parts the tabular downstream benchmarks share (``downstream_set.py``, ``downstream_ordinal.py``).

Each of those scripts brings its data (``load``), model (``make_model``), baseline loss, surrogates and metrics;
this module holds what is the same for both:

* :func:`standardised_split` — a stratified 70/30 split, features standardised on the training part;
* :func:`train` — Adam over shuffled full batches (the surrogates were learned for one batch size), optionally
  keeping training-set outputs at evenly spaced epochs (the G_M of ``metricloss.learn``);
* :func:`compare` — the protocol, per seed: the baseline and baseline + each surrogate from scratch, then a
  fine-tune of a copy of that seed's baseline model with the baseline alone and with baseline + each surrogate;
* :func:`gradient_norms` — how large each loss's gradient w.r.t. the outputs is on a trained model;
* :func:`summary_table` and :func:`paired_table` — mean ± std per row, and each row's paired difference to the row
  it is compared with (same seed: same split, initialisation and batch order), with wins / ties / losses.
"""

from __future__ import annotations

import copy
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.model_selection import train_test_split
from torch import nn

from common import mean_std

Outputs = list[tuple[torch.Tensor, torch.Tensor]]
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Split = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]

#: Fine-tune protocol, fixed before any fine-tune was run: this many epochs at the from-scratch learning rate
#: times FT_LR_FACTOR, surrogate weight 1, batch order seeded with FT_SEED_OFFSET + seed (the same for every arm).
FT_EPOCHS = 10
FT_LR_FACTOR = 0.1
FT_SEED_OFFSET = 1000


@dataclass(frozen=True)
class Metric:
    """A column: key in the ``evaluate`` dict, printed label, and its direction."""

    key: str
    label: str
    higher_is_better: bool = True


def standardised_split(x: np.ndarray, y: np.ndarray, seed: int, y_dtype: torch.dtype,
                       test_size: float = 0.3) -> Split:
    """Stratified split ``seed``; features standardised with the training part's mean and std."""
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=test_size, stratify=y, random_state=seed)
    mean, std = x_tr.mean(0), x_tr.std(0)

    def features(a: np.ndarray) -> torch.Tensor:
        return torch.tensor((a - mean) / std, dtype=torch.float32)

    return features(x_tr), torch.tensor(y_tr, dtype=y_dtype), features(x_te), torch.tensor(y_te, dtype=y_dtype)


def plus(loss_fn: LossFn, surrogate: LossFn, weight: float = 1.0) -> LossFn:
    """``loss_fn + weight * surrogate``."""
    return lambda out, target: loss_fn(out, target) + weight * surrogate(out, target)


def train(x: torch.Tensor, y: torch.Tensor, model: nn.Module, loss_fn: LossFn, epochs: int, lr: float, batch: int,
          seed: int, checkpoints: int = 0,
          on_checkpoint: Callable[[nn.Module], None] | None = None) -> tuple[nn.Module, Outputs]:
    """Adam on ``loss_fn`` over shuffled full batches of ``batch`` (``model`` is trained in place and returned).

    With ``checkpoints`` > 0 also returns the outputs on the whole training set, in a random order, with their
    targets, after that many evenly spaced epochs (first and last included); ``on_checkpoint(model)`` is then called
    too, without autograd (e.g. to record test-set outputs at the same checkpoints).
    """
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    keep = set(torch.linspace(0, epochs - 1, checkpoints).round().long().tolist()) if checkpoints else set()
    outputs: Outputs = []
    for epoch in range(epochs):
        perm = torch.randperm(x.shape[0], generator=gen)
        for i in range(0, x.shape[0] - batch + 1, batch):  # full batches only: the surrogate sees one batch size
            idx = perm[i: i + batch]
            loss = loss_fn(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        if epoch in keep:
            with torch.no_grad():
                order = torch.randperm(x.shape[0], generator=gen)
                outputs.append((model(x[order]), y[order]))
                if on_checkpoint is not None:
                    on_checkpoint(model)
    return model, outputs


def gradient_norms(model: nn.Module, x: torch.Tensor, y: torch.Tensor, losses: dict[str, LossFn], batch: int,
                   seed: int = 0) -> dict[str, float]:
    """Mean over one epoch's full batches of ``||d loss / d outputs||`` for each loss, and for each loss after the
    first its mean cosine with the first loss's gradient (key ``"cos <name>"``)."""
    perm = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(seed))
    norms: dict[str, list[float]] = {k: [] for k in [*losses, *(f"cos {n}" for n in list(losses)[1:])]}
    first = next(iter(losses))
    for i in range(0, x.shape[0] - batch + 1, batch):
        idx = perm[i: i + batch]
        with torch.no_grad():
            out = model(x[idx])
        grads = {}
        for name, loss_fn in losses.items():
            z = out.clone().requires_grad_(True)
            (grads[name],) = torch.autograd.grad(loss_fn(z, y[idx]), z)
            norms[name].append(float(grads[name].norm()))
            if name != first:
                norms[f"cos {name}"].append(float(F.cosine_similarity(grads[name].flatten(),
                                                                      grads[first].flatten(), dim=0)))
    return {k: statistics.mean(v) for k, v in norms.items()}


def compare(seeds: int, load: Callable[[int], Split], make_model: Callable[[int], nn.Module], baseline_name: str,
            baseline: LossFn, surrogates: dict[str, LossFn], evaluate: Callable[[nn.Module, torch.Tensor,
                                                                                  torch.Tensor], dict[str, float]],
            epochs: int, lr: float, batch: int, progress: bool = True) -> dict[str, Any]:
    """The protocol for seeds ``0 .. seeds - 1`` (split, initialisation and batch order).

    Rows ``"scratch: <baseline>"`` and ``"scratch: <baseline> + <surrogate>"`` train from scratch for ``epochs``;
    rows ``"fine-tune: ..."`` continue from a copy of that seed's from-scratch baseline model for FT_EPOCHS at
    ``lr * FT_LR_FACTOR``. Returns ``results`` (row -> per-seed metric dicts), ``reference`` (row -> the row it is
    paired with: scratch surrogate rows with the scratch baseline, fine-tune surrogate rows with the fine-tune
    baseline, the fine-tune baseline with the scratch baseline) and ``grads`` (:func:`gradient_norms` of seed 0's
    baseline model on its training set).
    """
    arms = {baseline_name: baseline, **{f"{baseline_name} + {n}": plus(baseline, s) for n, s in surrogates.items()}}
    results: dict[str, list[dict[str, float]]] = {f"{stage}: {a}": [] for stage in ("scratch", "fine-tune")
                                                  for a in arms}
    base_s, base_ft = f"scratch: {baseline_name}", f"fine-tune: {baseline_name}"
    reference = {row: (base_ft if row.startswith("fine-tune") else base_s) for row in results}
    reference[base_ft], reference[base_s] = base_s, ""
    grads: dict[str, float] = {}
    for seed in range(seeds):
        x, y, x_te, y_te = load(seed)
        models = {}
        for name, loss_fn in arms.items():
            models[name], _ = train(x, y, make_model(seed), loss_fn, epochs, lr, batch, seed)
            results[f"scratch: {name}"].append(evaluate(models[name], x_te, y_te))
        for name, loss_fn in arms.items():
            model, _ = train(x, y, copy.deepcopy(models[baseline_name]), loss_fn, FT_EPOCHS, lr * FT_LR_FACTOR,
                             batch, FT_SEED_OFFSET + seed)
            results[f"fine-tune: {name}"].append(evaluate(model, x_te, y_te))
        if seed == 0:
            grads = gradient_norms(models[baseline_name], x, y, {baseline_name: baseline, **surrogates}, batch)
        if progress:
            cells = "; ".join(f"{row} {_short(runs[-1])}" for row, runs in results.items())
            print(f"seed {seed}: {cells}", flush=True)
    return {"results": results, "reference": reference, "grads": grads}


def _short(values: dict[str, float]) -> str:
    return "(" + ", ".join(f"{k} {v:.4f}" for k, v in values.items()) + ")"


def summary_table(results: dict[str, list[dict[str, float]]], metrics: Sequence[Metric]) -> str:
    """| row | each metric as mean ± std over seeds |"""
    n = len(next(iter(results.values())))
    head = [f"{m.label} ({'higher' if m.higher_is_better else 'lower'} is better)" for m in metrics]
    lines = [f"| loss (mean ± std over {n} seeds) | {' | '.join(head)} |", "|" + " --- |" * (len(metrics) + 1)]
    for row, runs in results.items():
        lines.append(f"| {row} | {' | '.join(mean_std([r[m.key] for r in runs]) for m in metrics)} |")
    return "\n".join(lines)


def paired(runs: list[dict[str, float]], refs: list[dict[str, float]], metric: Metric) -> str:
    """``"+mean ± std (b/t/w)"`` of ``run - ref`` over seeds; b/t/w: seeds where the run is better / equal / worse."""
    diffs = [r[metric.key] - q[metric.key] for r, q in zip(runs, refs, strict=True)]
    sign = 1.0 if metric.higher_is_better else -1.0
    better = sum(sign * d > 0 for d in diffs)
    ties = sum(d == 0 for d in diffs)
    sd = statistics.stdev(diffs) if len(diffs) > 1 else 0.0
    return f"{statistics.mean(diffs):+.4f} ± {sd:.4f} ({better}/{ties}/{len(diffs) - better - ties})"


def paired_table(results: dict[str, list[dict[str, float]]], reference: dict[str, str],
                 metrics: Sequence[Metric]) -> str:
    """| row | reference row | per metric: mean ± std of the paired difference (better/tie/worse seeds) |"""
    head = [f"Δ {m.label}" for m in metrics]
    lines = [f"| loss | compared with (same seed) | {' | '.join(head)} |", "|" + " --- |" * (len(metrics) + 2)]
    for row, ref in reference.items():
        if ref:
            cells = " | ".join(paired(results[row], results[ref], m) for m in metrics)
            lines.append(f"| {row} | {ref} | {cells} |")
    return "\n".join(lines)


def gradient_line(grads: dict[str, float], baseline_name: str) -> str:
    """One sentence on :func:`gradient_norms`."""
    names = [k for k in grads if not k.startswith("cos ")]
    norms = ", ".join(f"{k} {grads[k]:.4f}" for k in names)
    cos = ", ".join(f"{k} {grads['cos ' + k]:+.3f}" for k in names[1:])
    return (f"Gradient w.r.t. the outputs on seed 0's from-scratch {baseline_name} model, mean over its training "
            f"batches: norm {norms}; cosine with {baseline_name}'s: {cos}.")


def report(out: dict[str, Any], metrics: Sequence[Metric], baseline_name: str) -> str:
    """The whole printed report of a run: the surrogates' agreement on held-out model outputs (``out["agreement"]``:
    surrogate name -> Spearman of it and of the baseline, batch count, learning seconds), then
    :func:`summary_table`, :func:`paired_table` and :func:`gradient_line`."""
    lines = [f"| surrogate | held-out batches of model outputs | {baseline_name} Spearman | surrogate Spearman "
             "| learn s |", "| --- | --- | --- | --- | --- |"]
    for metric, a in out["agreement"].items():
        lines.append(f"| {metric} | {a['batches']} | {a['baseline_spearman']:.4f} | {a['spearman']:.4f} "
                     f"| {a['learn_seconds']:.1f} |")
    return "\n\n".join(["\n".join(lines), summary_table(out["results"], metrics),
                        "Paired differences (row − compared row, same seed), mean ± std; in brackets the seeds where "
                        "the row was better / tied / worse:",
                        paired_table(out["results"], out["reference"], metrics),
                        gradient_line(out["grads"], baseline_name)])
