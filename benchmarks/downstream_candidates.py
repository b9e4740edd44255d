"""Round-2 exploration for ``downstream.py`` (issue 15's sequence row): corrections of the surrogate's gradient, on
validation seeds only.

    PYTHONPATH=src nice -n 10 .venv/bin/python benchmarks/downstream_candidates.py sequence 50,51,52 plain,cos,pcg

Each candidate is ``combine(baseline, surrogate, "auto")`` at round 1's defaults (ratio 0.5, momentum 0.9) with the
surrogate's prediction-space gradient ``g_s`` replaced, before the weight is applied, by (``g_b``: the baseline's):

- ``plain``: ``g_s`` (round 1's default);
- ``cos``: ``max(0, cos(g_s, g_b)) * g_s`` -- auxiliary-loss gating by gradient similarity (Du et al. 2018);
- ``pcg`` / ``pcgpos``: PCGrad (Yu et al. 2020), the component of ``g_s`` along ``g_b`` removed where their inner
  product is negative, per sample / per token position (the last dimension's vectors);
- ``proj`` / ``projpos``: only the projection of ``g_s`` onto ``g_b``, kept where positive, per sample / position (the
  surrogate as a weighting of the baseline's own gradient);
- ``sign`` / ``signn``: ``g_s`` kept only on coordinates where its sign agrees with ``g_b``'s (cf. the AND-mask of
  Parascandolo et al. 2021, GradDrop of Chen et al. 2020); ``sign`` keeps the weight from the full ``g_s``'s norm,
  ``signn`` renormalises to the masked one.

The weight is ``ratio * |g_b| / |g'|`` (EMA), times the cosine gate for ``cos``; the replacement enters through a
linear term ``<pred, g'>`` whose value is cancelled, so the loss value is ``base + w * sur``. Seeds are validation
seeds (``downstream.py``'s evaluation seeds 0..9 are refused); the surrogate is ``downstream.record_and_learn``'s
(recording seed 100). ``--train-metric`` also prints the training-set metric of the plain fine-tune pair.

``--late-regime edits`` (sequence only) changes how that surrogate is learned, not the gradient: the sequence task's
late-training regime (``few_errors``, see ``metricloss.learning.regimes``) becomes the model's own greedy output
with 0..3 NAT-like edits of the reference (a substitution, a deleted or inserted token shifting the rest of the
sentence, or an adjacent swap) instead of 0..3 substituted tokens; ``edits_late`` also raises the late regime's share
of the trained-model batches from 0.15 to 0.5. Both are patched in for this process only (the library is unchanged).
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
import torch.nn.functional as F

import downstream as D
import metricloss as ml
from metricloss.learning import regimes
from metricloss.metrics.sequence import IGNORE_INDEX
from metricloss.tasks.sequence import SequenceTask

MODES = ("plain", "cos", "pcg", "pcgpos", "proj", "projpos", "sign", "signn")


def corrected(mode: str, gb: torch.Tensor, gs: torch.Tensor) -> tuple[torch.Tensor, float, torch.Tensor]:
    """``(g', gate, g_norm)``: the replacement gradient, the cosine gate and the gradient whose norm sets the weight."""
    cos = float(F.cosine_similarity(gb.flatten().double(), gs.flatten().double(), dim=0))
    if mode in ("pcg", "pcgpos", "proj", "projpos"):
        dims = 1 if mode in ("pcg", "proj") else gs.dim() - 1
        b, a = gb.flatten(dims), gs.flatten(dims)
        dot = (a * b).sum(-1, keepdim=True)
        nb = (b * b).sum(-1, keepdim=True).clamp_min(1e-30)
        g = (dot.clamp_min(0) / nb * b) if mode.startswith("proj") else (a - dot.clamp_max(0) / nb * b)
        return g.view_as(gs), 1.0, g.view_as(gs)
    if mode in ("sign", "signn"):
        g = gs * ((gs * gb) > 0)
        return g, 1.0, (gs if mode == "sign" else g)
    return gs, (max(0.0, cos) if mode == "cos" else 1.0), gs


def _edit(row: torch.Tensor, length: int, kind: int, j: int, token: int, pad: int, width: int) -> None:
    """One edit of a reference ``row`` (its first ``length`` positions) in place; ids are below ``width``."""
    if kind == 0:
        row[j] = token if token != int(row[j]) else (token + 1) % width
    elif kind == 1:  # the hypothesis has an extra token: the reference loses position j
        row[j:length - 1] = row[j + 1:length].clone()
        row[length - 1] = pad
    elif kind == 2:  # the hypothesis misses a token: the reference gains one at j
        row[j + 1:length] = row[j:length - 1].clone()
        row[j] = token
    else:
        j = min(j, length - 2)
        row[j], row[j + 1] = row[j + 1].clone(), row[j].clone()


def few_edits(task: SequenceTask, pred: torch.Tensor, target: torch.Tensor, errors: torch.Tensor,
              generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``--late-regime edits`` hook: references = the stacks' greedy outputs with ``errors[i]`` random edits."""
    valid = target != IGNORE_INDEX
    ref = torch.where(valid, pred.argmax(-1), target).clone()
    pad = task.pad_id if task.pad_id is not None else 0
    draw = lambda high: int(torch.randint(0, high, (1,), generator=generator))  # noqa: E731
    for i in range(ref.shape[0]):
        for _ in range(int(errors[i])):
            s = draw(ref.shape[1])
            length = int(valid[i, s].sum())
            if length >= 2:
                j, kind, token = draw(length), draw(4), draw(pred.shape[-1])
                _edit(ref[i, s], length, kind, j, token, pad, pred.shape[-1])
    return pred, ref


def patch_late_regime(kind: str) -> None:
    """Apply ``--late-regime`` to this process (see the module docstring)."""
    SequenceTask.few_errors = few_edits
    if kind == "edits_late":
        regimes.REGIME_WEIGHTS.update({"relabel": 0.2, "temperature": 0.1, "noise": 0.1, "mix": 0.1, "late": 0.5})


class Candidate(ml.CombinedLoss):
    """``CombinedLoss`` at round 1's auto weight with the surrogate's gradient replaced as ``mode`` says."""

    def __init__(self, base: D.LossFn, surrogate: ml.Surrogate, mode: str) -> None:
        super().__init__(base, surrogate, "auto", gate=None)
        self.mode = mode

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        base, sur = self.base(pred, target), self.surrogate(pred, target)
        if not self._updating(pred):
            return base + self.weight * sur
        (gb,) = torch.autograd.grad(base, pred, retain_graph=True)
        (gs,) = torch.autograd.grad(sur, pred, retain_graph=True)
        g, gate, g_norm = corrected(self.mode, gb, gs)
        nb, ng = float(gb.norm()), float(g_norm.norm())
        if nb > 0 and ng > 0:
            target_w = self.ratio * nb / ng
            self.weight_ema = target_w if self.updates == 0 else (
                self.momentum * self.weight_ema + (1 - self.momentum) * target_w)
            self.updates += 1
        self.step += 1
        lin = (pred * g.detach()).sum()
        return base + self.weight_ema * gate * (sur.detach() + lin - lin.detach())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("family", choices=list(D.FAMILIES))
    parser.add_argument("seeds", help="comma-separated validation seeds (not 0..9)")
    parser.add_argument("modes", help=f"comma-separated, of {', '.join(MODES)}")
    parser.add_argument("--train-metric", action="store_true")
    parser.add_argument("--late-regime", choices=["edits", "edits_late"], default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    seeds, modes = [int(s) for s in args.seeds.split(",")], args.modes.split(",")
    if any(0 <= s < 10 for s in seeds) or any(m not in MODES for m in modes):
        raise SystemExit(f"seeds must avoid the evaluation seeds 0..9 and modes be of {MODES}")
    if args.late_regime is not None:
        if args.family != "sequence":
            raise SystemExit("--late-regime is for the sequence family")
        patch_late_regime(args.late_regime)
    fam = D.FAMILIES[args.family]()
    t0 = time.process_time()
    sur, info = D.record_and_learn(fam)
    print(f"surrogate: Spearman {info['spearman']:.4f} vs {info['baseline_spearman']:.4f} "
          f"(d {info['spearman'] - info['baseline_spearman']:+.4f})", flush=True)
    sign = 1.0 if fam.higher_is_better else -1.0
    diffs: dict[str, dict[str, list[float]]] = {m: {"scratch": [], "fine-tune": []} for m in modes}
    for seed in seeds:
        data = fam.load(seed)
        start = fam.fit(fam.make_model(seed), data, fam.baseline, fam.epochs, fam.lr, seed)
        ft_lr, ft_seed = fam.lr * D.FT_LR_FACTOR, D.FT_SEED_OFFSET + seed
        ft_base = fam.fit(copy.deepcopy(start), data, fam.baseline, fam.ft_epochs, ft_lr, ft_seed)
        for mode in modes:
            scratch = fam.fit(fam.make_model(seed), data, Candidate(fam.baseline, sur, mode), fam.epochs, fam.lr, seed)
            ft = fam.fit(copy.deepcopy(start), data, Candidate(fam.baseline, sur, mode), fam.ft_epochs, ft_lr, ft_seed)
            d1 = sign * (fam.score(scratch, data) - fam.score(start, data))
            d2 = sign * (fam.score(ft, data) - fam.score(ft_base, data))
            diffs[mode]["scratch"].append(d1)
            diffs[mode]["fine-tune"].append(d2)
            extra = ""
            if args.train_metric and mode == "plain":
                train = (data[0], data[1], data[0], data[1])
                extra = f"; training-set metric, fine-tune: baseline {fam.score(ft_base, train):.4f}, " \
                        f"combine {fam.score(ft, train):.4f}"
            print(f"{fam.key} seed {seed} {mode}: scratch {d1:+.4f}, fine-tune {d2:+.4f} (better-is-positive)"
                  f"{extra}; {time.process_time() - t0:.0f} CPU s", flush=True)
    for mode in modes:
        for regime, d in diffs[mode].items():
            se = statistics.stdev(d) / len(d) ** 0.5 if len(d) > 1 else 0.0
            print(f"{fam.key} {mode} {regime}: {statistics.mean(d):+.4f} ± {se:.4f}, better / worse "
                  f"{sum(x > 0 for x in d)} / {sum(x < 0 for x in d)}")


if __name__ == "__main__":
    main()
