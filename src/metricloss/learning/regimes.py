r"""The trained-model regime: batches like those a trained model produces, made from its real output batches.

Random batches (G_R) spread the metric over its whole range; a trained model's batches crowd near its best values and
differ from one another by a few errors, by confidence, by how far training went. With ``outputs=``,
:func:`metricloss.learn` fills half of the G_R pool from the G_M learning batches through :func:`trained_regime`, so
the surrogate also learns to rank those. Each batch gets one perturbation, drawn with the weights
:data:`REGIME_WEIGHTS`:

- ``"relabel"``: the family's ``task.relabel`` (real predictions, targets made from them with a random fraction
  re-drawn): what all of that half of the pool was before these regimes existed;
- ``"temperature"``: predictions times :math:`t`, :math:`\log t \sim U(\log\frac13, \log 3)` (confidence changes,
  arg-max metrics do not);
- ``"noise"``: predictions plus Gaussian noise of standard deviation :math:`\sigma s`, :math:`s` the batch's standard
  deviation, :math:`\log\sigma \sim U(\log 0.03, \log 1)` (a nearby model);
- ``"mix"``: each sample (prediction and target together) taken from another of the drawn batches with probability
  :math:`q \sim U(0, 1)` (a batch between two checkpoints);
- ``"late"``: the late-training regime, :func:`few_errors`: targets set to the predicted classes, then 0 to
  :data:`MAX_ERRORS` of them changed to another class. Defined here for class-index layouts (logits ``(..., C)`` and
  int64 class indices, as classification, ordinal and sequence use; the sequence task's padding ``-100`` stays
  untouched); for other layouts the batch is relabelled instead.

A family overrides all of it by defining ``trained_regime(pred, target, generator) -> (pred, target)`` on its task,
or only the late regime by defining ``few_errors(pred, target, errors, generator) -> (pred, target)`` (``errors``:
``(n,)`` int64, how many errors each batch gets). Both take and return stacks ``(n, B, ...)`` of the task's shapes.
"""

from __future__ import annotations

import math

import torch

from ..tasks.base import Task

__all__ = ["MAX_ERRORS", "REGIME_WEIGHTS", "add_noise", "few_errors", "mix_samples", "scale_temperature",
           "trained_regime"]

#: The default share of each perturbation among the regime's batches.
REGIME_WEIGHTS: dict[str, float] = {"relabel": 0.4, "temperature": 0.15, "noise": 0.15, "mix": 0.15, "late": 0.15}
#: The late-training regime gives each batch 0 .. MAX_ERRORS errors.
MAX_ERRORS = 3

Stacks = tuple[torch.Tensor, torch.Tensor]


def _per_batch(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return values.to(like.dtype).view(-1, *[1] * (like.dim() - 1))


def _log_uniform(n: int, low: float, high: float, generator: torch.Generator) -> torch.Tensor:
    return torch.exp(math.log(low) + (math.log(high) - math.log(low)) * torch.rand(n, generator=generator))


def scale_temperature(pred: torch.Tensor, generator: torch.Generator, low: float = 1 / 3,
                      high: float = 3.0) -> torch.Tensor:
    """Each batch of the stack ``pred`` ``(n, ...)`` times a factor drawn log-uniformly in ``[low, high]``."""
    return pred * _per_batch(_log_uniform(pred.shape[0], low, high, generator), pred)


def add_noise(pred: torch.Tensor, generator: torch.Generator, low: float = 0.03, high: float = 1.0) -> torch.Tensor:
    """Each batch plus Gaussian noise of std ``sigma`` times its own std, ``sigma`` log-uniform in ``[low, high]``."""
    n = pred.shape[0]
    scale = pred.flatten(1).std(dim=1).clamp_min(1e-6) * _log_uniform(n, low, high, generator).to(pred.dtype)
    return pred + _per_batch(scale, pred) * torch.randn(pred.shape, generator=generator, dtype=pred.dtype)


def mix_samples(pred: torch.Tensor, target: torch.Tensor, generator: torch.Generator) -> Stacks:
    """Each batch's samples replaced, with a per-batch probability ``q ~ U(0, 1)``, by the same positions of a
    partner batch (a random permutation of the stack); a sample's prediction and target move together."""
    n, b = pred.shape[:2]
    partner = torch.randperm(n, generator=generator)
    take = torch.rand(n, b, generator=generator) < torch.rand(n, 1, generator=generator)
    out_pred = torch.where(take.view(n, b, *[1] * (pred.dim() - 2)), pred[partner], pred)
    out_target = torch.where(take.view(n, b, *[1] * (target.dim() - 2)), target[partner], target)
    return out_pred, out_target


def _class_index_layout(pred: torch.Tensor, target: torch.Tensor) -> bool:
    return target.dtype == torch.int64 and pred.dim() == target.dim() + 1 and pred.shape[:-1] == target.shape


def few_errors(task: Task, pred: torch.Tensor, target: torch.Tensor, errors: torch.Tensor,
               generator: torch.Generator) -> Stacks:
    """The late-training regime: each batch's targets set to its predicted classes, then ``errors[i]`` of its valid
    positions (target not the task's ``pad_target``) changed to a uniformly drawn other class.

    The family's own ``task.few_errors`` when it defines one; else, for a class-index layout (logits ``(n, B, ..., C)``,
    int64 targets ``(n, B, ...)``) as above; for any other layout ``task.relabel``.
    """
    hook = getattr(task, "few_errors", None)
    if hook is not None:
        return hook(pred, target, errors, generator)
    if not _class_index_layout(pred, target):
        return task.relabel(pred, target, generator)
    n, c = pred.shape[0], pred.shape[-1]
    pad = getattr(task, "pad_target", None)
    valid = (target != pad) if pad is not None else torch.ones_like(target, dtype=torch.bool)
    flat_valid = valid.reshape(n, -1)
    order = torch.rand(flat_valid.shape, generator=generator).masked_fill(~flat_valid, 2.0).argsort(dim=1)
    rank = torch.empty_like(order).scatter_(1, order, torch.arange(order.shape[1]).expand_as(order))
    flip = ((rank < errors.view(n, 1)) & flat_valid).view(target.shape)
    predicted = pred.argmax(dim=-1)
    other = (predicted + torch.randint(1, c, predicted.shape, generator=generator)) % c
    new = torch.where(flip, other, predicted)
    return pred, torch.where(valid, new, target)


def trained_regime(task: Task, pred: torch.Tensor, target: torch.Tensor, generator: torch.Generator,
                   weights: dict[str, float] | None = None) -> Stacks:
    """Batches like a trained model's, made from the real output batches ``pred`` / ``target`` ``(n, B, ...)``.

    The task's own ``trained_regime`` when it defines one; else each batch gets one of the module's perturbations,
    drawn with ``weights`` (default :data:`REGIME_WEIGHTS`). Shapes and dtypes are kept; deterministic given
    ``generator``'s state.
    """
    hook = getattr(task, "trained_regime", None)
    if hook is not None:
        return hook(pred, target, generator)
    weights = REGIME_WEIGHTS if weights is None else weights
    names = list(weights)
    kinds = torch.multinomial(torch.tensor([float(weights[k]) for k in names]), pred.shape[0], replacement=True,
                              generator=generator)
    out_pred, out_target = pred.clone(), target.clone()
    for i, name in enumerate(names):
        idx = (kinds == i).nonzero().flatten()
        if idx.numel() == 0:
            continue
        p, t = pred[idx], target[idx]
        if name == "relabel":
            p, t = task.relabel(p, t, generator)
        elif name == "temperature":
            p = scale_temperature(p, generator)
        elif name == "noise":
            p = add_noise(p, generator)
        elif name == "mix":
            p, t = mix_samples(p, t, generator)
        elif name == "late":
            errors = torch.randint(0, MAX_ERRORS + 1, (idx.numel(),), generator=generator)
            p, t = few_errors(task, p, t, errors, generator)
        else:
            raise ValueError(f"`weights`: unknown perturbation {name!r}; known: {', '.join(REGIME_WEIGHTS)}")
        out_pred[idx], out_target[idx] = p.to(pred.dtype), t.to(target.dtype)
    return out_pred, out_target
