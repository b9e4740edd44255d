r"""Multi-class classification: logits ``(B, C)``, class indices ``(B,)``.

Two surrogate networks, both independent of ``C`` and ``B``:

- :class:`ClassificationNet` (ReLoss, appendix A.1, generalised; ``kind="mlp"``): per sample, a few features
  of the softmax probabilities go through an ELU MLP; the absolute value of its output is averaged over the
  batch,

  .. math:: L(z, y) = \frac1B \sum_{b=1}^{B} \big|\,\mathrm{MLP}(\phi(\mathrm{softmax}(z_b), y_b))\big|,

  with :math:`\phi` the target-class probability :math:`p_{y}` (the paper's only input) and optionally the
  margin :math:`p_y - \max_{c \ne y} p_c`. It can only express metrics that are averages over samples.
- :class:`BatchClassificationNet` (``net=BATCH_NET``, ``kind="batch"``): a term that reads the batch's *soft
  confusion matrix* (at two sharpnesses of the softmax), so it can express macro F1, balanced accuracy, Cohen's kappa
  and MCC (see its docstring; its first version also added the per-sample term). ``learn`` uses it by default for
  metrics it *measures* batch-level (:meth:`~metricloss.tasks.base.Task.for_metric`: the metric of a batch is not
  the size-weighted mean of its values on sub-batches, :mod:`metricloss.metrics.decomposability`), whatever their
  name or form (a lambda, a ``functools.partial``, a torchmetrics object); for accuracy and top-k it made the
  surrogates worse (first version: top-5 held-out Spearman -0.07, the demo's digits CE + surrogate 0.938 instead of
  0.959; ``docs/results.md``), so they keep the per-sample net.

The baseline is cross-entropy.

G_R mixes two regimes. The authors': logits at random scales and labels equal to the arg-max with a uniformly
random fraction re-drawn, so batch accuracy spreads over :math:`[1/C, 1]` (a share of batches "confidently
wrong" or "barely right" so the logit scale and the metric are not confounded). And an imbalanced one: label
distributions from balanced to long-tailed (Zipf exponent up to 2.5), so minority classes are often absent
from a batch, and predictions biased toward the frequent classes, so accuracy and the class-averaged metrics
disagree. Metrics measured batch-level learn from an even mix of the two; per-sample metrics from the authors'
regime alone, as before the imbalanced one existed.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .._checks import check_int, check_tied_classes
from ..metrics.base import Metric
from ..metrics.classification import BUILTINS
from ._nets import mlp
from .base import ClassIndexTask, register_task

__all__ = ["BATCH_NET", "BatchClassificationNet", "ClassificationNet", "ClassificationTask", "LSEDNet",
           "class_statistics"]

FEATURES = ("target_prob", "margin", "log_target_prob", "logit_margin")
#: ``net=`` configuration of the batch-level surrogate, for class-averaged metrics (macro F1, balanced accuracy,
#: Cohen's kappa, MCC): ``ml.learn("macro_f1", num_classes=C, net=BATCH_NET)``.
BATCH_NET = {"kind": "batch", "sample": False, "sharpness": [1.0, 4.0], "class_hidden": 64, "class_depth": 2}
#: The built-in metrics (and torchmetrics classes, in their default configuration) that depend on the batch's whole
#: confusion matrix. For reference only: ``learn`` no longer reads names; it measures each metric
#: (:meth:`ClassificationTask.for_metric`), and these all measure batch-level.
CLASS_AVERAGED = frozenset({"macro_f1", "balanced_accuracy", "cohen_kappa", "mcc", "MulticlassF1Score",
                            "MulticlassFBetaScore", "MulticlassCohenKappa", "MulticlassMatthewsCorrCoef",
                            "MulticlassRecall", "MulticlassPrecision"})
#: Share of G_R batches the model regime (:meth:`ClassificationTask.model_batches`) draws for per-sample metrics.
MODEL_SHARE = 0.5
#: Features of the model regime's random linear models, the range of their logits' scale (standard deviation), and
#: how many batches' models are drawn at once.
MODEL_FEATURES = 32
MODEL_SCALES = (0.1, 16.0)
MODEL_CHUNK = 64
#: Per-class inputs of :class:`BatchClassificationNet` (see :func:`class_statistics`).
CLASS_FEATURES = ("tp", "fp", "fn", "support", "recall", "precision", "f1", "present")


def _first_max_index(scratch: torch.Tensor, top: torch.Tensor) -> torch.Tensor:
    """Index ``(..., 1)`` of the first entry of ``scratch`` ``(..., C)`` equal to its row maximum ``top`` ``(..., 1)``
    (as ``max(dim=-1)`` returns it), overwriting ``scratch``. Vectorised reductions only: an index-returning max
    over ``(256, 1000)`` costs as much as the rest of the features on a CPU."""
    c = scratch.shape[-1]
    if scratch.dtype not in (torch.float32, torch.float64) or c > 2 ** 24:  # class numbers not exact in the dtype
        return scratch.max(dim=-1, keepdim=True).indices
    # 1 at the maxima, times C - c: the first maximum gets the largest value. A row that is all -inf is all maxima,
    # so it gets index 0, as max() gives it.
    rank = torch.arange(c, 0, -1, dtype=scratch.dtype, device=scratch.device)
    return (c - scratch.ge_(top).mul_(rank).amax(dim=-1, keepdim=True)).long()


class _PickedLogProbs(torch.autograd.Function):
    r"""Log-probabilities ``(..., B, K)`` of the target class (``K = 1``), and of the most probable other class
    (``K = 2``, ``runner_up``), from logits ``(..., B, C)``: :math:`z_i - \log\sum_c e^{z_c}` at those classes.

    One pass for the largest other logit and its index (no autograd), one exp-sum for the normaliser, two gathers;
    the backward is :math:`\partial/\partial z = e_i - \mathrm{softmax}(z)` per picked class, written with the
    exponentials the forward kept (a plain backward), or with differentiable torch ops from the logits when the
    backward is itself differentiated (``create_graph=True``: the learning's gradient penalty). Against
    ``log_softmax(z).gather(...)`` this saves the full log-softmax output and its backward, the gather backward's
    ``(B, C)`` zero fill, and an index-returning max. ``jvp`` (forward mode) and ``vmap`` rules keep it usable under
    ``torch.func`` transforms, as the plain formula was.

    ``forward`` returns the log-probabilities and, not differentiable, what the other rules read: the picked indices,
    the row maxima, :math:`\exp(z - \max)` and its sums.
    """

    @staticmethod
    def forward(logits: torch.Tensor, target: torch.Tensor, runner_up: bool) -> tuple[torch.Tensor, ...]:
        target = target.unsqueeze(-1)
        if runner_up:
            scratch = logits.scatter(-1, target, float("-inf"))
            other_top = scratch.amax(dim=-1, keepdim=True)
            index = torch.cat([target, _first_max_index(scratch, other_top)], dim=-1)
            top = torch.maximum(other_top, logits.gather(-1, target))
        else:
            index, scratch = target, torch.empty_like(logits)
            top = logits.amax(dim=-1, keepdim=True)
        exp = torch.sub(logits, top, out=scratch).exp_()
        total = exp.sum(dim=-1, keepdim=True)
        # The order of log_softmax's kernel, (z - max) - log(sum), so the values match it to the last bits.
        return (logits.gather(-1, index) - top) - total.log(), index, top, exp, total

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: tuple[torch.Tensor, ...]) -> None:
        logits = inputs[0]
        _, index, top, exp, total = output
        ctx.mark_non_differentiable(index, top, exp, total)
        ctx.set_materialize_grads(False)  # no (B, C) zeros for the gradient of `exp`, which nothing reads
        ctx.save_for_backward(logits, index, top, total)
        ctx.save_for_forward(logits, index, top, total)
        # exp(z - max), which the backward turns into the gradient in place (one (B, C) buffer per call instead of
        # two: a fresh buffer of that size costs more in page faults than the arithmetic on it).
        ctx.exp = exp

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor | None, *_: Any) -> tuple[torch.Tensor | None, None, None]:
        if grad is None:
            return None, None, None
        logits, index, top, total = ctx.saved_tensors
        scale = grad.sum(dim=-1, keepdim=True)
        if torch.is_grad_enabled():  # create_graph: differentiable ops, so the gradient has a gradient
            grad_logits = logits.softmax(dim=-1) * -scale
            return grad_logits.scatter_add(-1, index, grad), None, None
        exp, ctx.exp = ctx.exp, None  # used once; a second backward (retain_graph=True) recomputes it
        if exp is None:
            exp = torch.sub(logits, top).exp_()
        scale = scale.div_(total).neg_()
        try:
            grad_logits = exp.mul_(scale)
        except RuntimeError:  # vmap over the backward (is_grads_batched): `scale` is batched, `exp` is not
            grad_logits = exp * scale
        return grad_logits.scatter_add_(-1, index, grad), None, None

    @staticmethod
    def jvp(ctx: Any, tangent: torch.Tensor, *_: Any) -> tuple[torch.Tensor | None, ...]:
        logits, index, top, total = ctx.saved_tensors
        # the softmax-weighted tangent (exp(z - max) recomputed: a reference kept to the forward's buffer would make
        # autograd copy the gradient the backward writes into it)
        mean = ((logits - top).exp_() * tangent).sum(dim=-1, keepdim=True) / total
        return tangent.gather(-1, index) - mean, None, None, None, None

    @staticmethod
    def vmap(info: Any, in_dims: tuple[int | None, ...], logits: torch.Tensor, target: torch.Tensor,
             runner_up: bool) -> tuple[tuple[torch.Tensor, ...], tuple[int, ...]]:
        # Every leading dimension is a stack already: move the mapped one to the front.
        logits, target = (x.movedim(d, 0) if d is not None else x.expand(info.batch_size, *x.shape)
                          for x, d in zip((logits, target), in_dims[:2], strict=True))
        return _PickedLogProbs.apply(logits, target, runner_up), (0, 0, 0, 0, 0)


#: From this many logits in a call (all its batches together) on, :func:`class_features` computes the two
#: log-probabilities with :class:`_PickedLogProbs`; below, with the composite formula (log-softmax and gathers),
#: whose fewer, larger ops cost less there. One thread, forward+backward: equal at 64,000 logits, the composite 0.06
#: ms cheaper at (256, 100), :class:`_PickedLogProbs` 1.1 ms cheaper at (256, 1000) (``docs/benchmarks.md``).
FUSED_MIN_LOGITS = 65536


def _picked_log_probs(logits: torch.Tensor, target: torch.Tensor, runner_up: bool) -> torch.Tensor:
    """``log p`` ``(..., B, 1 or 2)`` at the target and, with ``runner_up``, at the best other class."""
    if logits.numel() >= FUSED_MIN_LOGITS:
        return _PickedLogProbs.apply(logits, target, runner_up)[0]
    index = target.unsqueeze(-1)
    if runner_up:
        with torch.no_grad():  # max() returns the first of equal maxima, as _first_max_index does
            other = logits.detach().scatter(-1, index, float("-inf")).max(dim=-1, keepdim=True).indices
        index = torch.cat([index, other], dim=-1)
    return logits.log_softmax(dim=-1).gather(-1, index)


def class_features(logits: torch.Tensor, target: torch.Tensor, features: tuple[str, ...]) -> torch.Tensor:
    r"""Per-sample features ``(..., B, F)`` of logits ``(..., B, C)`` and targets ``(..., B)``, for any ``C >= 2``.

    ``target_prob`` :math:`p_y`, ``log_target_prob`` :math:`\max(\log p_y, -30)/10`, ``margin``
    :math:`p_y - \max_{c \ne y} p_c` and ``logit_margin`` :math:`\tanh(z_y - \max_{c \ne y} z_c)`, the margin in
    logits, which still tells a right sample from a wrong one when the logits are nearly flat (at ``C = 1000`` and a
    logit spread of 0.3 the probability margin is about :math:`10^{-4}`, the logit margin about 0.3). Only two
    log-probabilities are computed, :math:`\log p_y` and, for the margins,
    :math:`\log p_o` of the best other class :math:`o` (the first of the largest logits other than the target's,
    found without autograd): one normaliser :math:`\log\sum_c e^{z_c}` and two gathers, with a backward written
    for them (and itself differentiable, for learning's gradient penalty); below :data:`FUSED_MIN_LOGITS` logits, where
    that costs more than it saves, the same two from a log-softmax. This keeps the features' cost at ``C = 1000``
    near cross-entropy's; the per-sample MLP adds a cost that grows with ``B`` alone (``docs/benchmarks.md``).
    Classes with logit ``-inf`` (absent classes of :class:`~metricloss.tasks.base.ClassIndexTask`) get probability
    0 and gradient 0.

    Example:
        >>> z = torch.tensor([[2.0, 0.0, 1.0], [0.0, 3.0, 0.0]])
        >>> class_features(z, torch.tensor([2, 1]), ("target_prob", "margin"))
        tensor([[ 0.2447, -0.4205],
                [ 0.9094,  0.8642]])
    """
    picked = _picked_log_probs(logits, target.long(), "margin" in features or "logit_margin" in features)
    probs = picked.exp()
    out = []
    for name in features:
        if name == "target_prob":
            out.append(probs[..., 0])
        elif name == "log_target_prob":
            out.append(picked[..., 0].clamp_min(-30.0) / 10)
        elif name == "margin":
            out.append(probs[..., 0] - probs[..., 1])
        elif name == "logit_margin":
            out.append(torch.tanh(picked[..., 0] - picked[..., 1]))
    return torch.stack(out, dim=-1)


class ClassificationNet(nn.Module):
    """Per-sample ELU MLP on probability features, absolute value (the paper's; ``absolute=False`` drops it),
    mean over the batch."""

    def __init__(self, features: tuple[str, ...] | list[str] = ("target_prob",), hidden: int = 128,
                 depth: int = 3, absolute: bool = True) -> None:
        super().__init__()
        features = tuple(features)
        unknown = set(features) - set(FEATURES)
        if not features or unknown:
            raise ValueError(f"`features` must be a non-empty subset of {FEATURES}; got {features!r}")
        self.features = features
        self.absolute = bool(absolute)
        self.mlp = mlp(len(features), hidden, depth, 1)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        x = class_features(logits, target, self.features)
        # The MLP on a (samples, features) matrix: on a stack (1, B, F), as a surrogate call gives it, the linear
        # layers' backward cost about 0.1 ms more at B = 256 (docs/benchmarks.md, i13-speed).
        out = self.mlp(x.reshape(-1, x.shape[-1])).view(x.shape[:-1])
        return (out.abs() if self.absolute else out).mean(dim=-1)


def class_statistics(logits: torch.Tensor, target: torch.Tensor, sharpness: float = 1.0) -> torch.Tensor:
    r"""Per-class statistics of the soft confusion matrix, ``(..., C, 8)``, from logits ``(..., B, C)``.

    With :math:`p = \mathrm{softmax}(t z)` (``sharpness`` :math:`t`) and :math:`Y` the one-hot targets, per class
    :math:`c`: :math:`TP_c = \sum_b p_{bc} Y_{bc}`, :math:`P_c = \sum_b p_{bc}`, :math:`n_c = \sum_b Y_{bc}`,
    :math:`FP_c = P_c - TP_c`, :math:`FN_c = n_c - TP_c`. The features are the shares
    :math:`TP_c/B, FP_c/B, FN_c/B, n_c/B`, soft recall :math:`TP_c/\max(n_c, 1)`, soft precision
    :math:`TP_c/\max(P_c, 1)`, soft :math:`F_1 = 2TP_c/\max(P_c + n_c, 1)` and the indicator :math:`[n_c > 0]`.
    Every denominator is a count floored at one sample, so each feature's derivative in any :math:`p_{bc}` is at
    most 2 in size, whatever the batch size and the logit scale (in the logits, at most :math:`2t`). A sharpness
    above 1 moves the soft counts toward the arg-max counts the metrics use.
    """
    p = (logits * sharpness).softmax(dim=-1)
    y = F.one_hot(target.long(), logits.shape[-1]).to(p.dtype)
    b = float(max(target.shape[-1], 1))
    tp = (p * y).sum(dim=-2)
    predicted = p.sum(dim=-2)
    support = y.sum(dim=-2)
    fp, fn = predicted - tp, support - tp
    stats = [tp / b, fp / b, fn / b, support / b, tp / support.clamp_min(1.0), tp / predicted.clamp_min(1.0),
             2 * tp / (predicted + support).clamp_min(1.0), (support > 0).to(p.dtype)]
    return torch.stack(stats, dim=-1)


class BatchClassificationNet(nn.Module):
    r"""A classification surrogate that sees the whole batch: a term on the batch's soft confusion matrix, and
    optionally (``sample=True``) the per-sample term of :class:`ClassificationNet`,

    .. math:: L(z, y) = \Big[\frac1B \sum_b \big|\mathrm{MLP}_s(\phi_b)\big|\Big]
        + \rho\Big(\frac1C \sum_c \psi(s_c),\ \frac{\sum_c [n_c > 0]\,\psi(s_c)}{\max(1, \sum_c [n_c > 0])}\Big),

    with :math:`s_c` the per-class statistics of :func:`class_statistics` at each of the ``sharpness`` values
    (concatenated), :math:`\psi` an ELU MLP shared across classes and :math:`\rho` an ELU MLP on the two pooled
    vectors (over all classes, and over the classes present in the targets). It is invariant to the order of the
    samples, equivariant over classes (pooled by means), and has no weight that depends on ``C`` or ``B``.

    :data:`BATCH_NET` (what ``learn`` uses for the class-averaged metrics) is the batch term alone at sharpness 1
    and 4: on issue 14's imbalanced protocol (``benchmarks/imbalanced.py issue``) the sharper statistics, which
    follow the arg-max confusion matrix closely, raised the validation Spearman with macro F1 from 0.90 to 0.94,
    and dropping the per-sample term cost nothing and made learning about four times faster. The constructor's
    defaults (with the per-sample term, sharpness 1 alone; :math:`\rho`'s last layer starts at zero, so the
    untrained net is the per-sample surrogate) are the first version's, which surrogates saved with it load as.

    Shapes: logits ``(..., B, C)``, targets ``(..., B)`` -> ``(...)``.

    Example:
        >>> import torch
        >>> net = BatchClassificationNet(class_hidden=8, sample=False, sharpness=(1.0, 4.0))
        >>> net(torch.randn(4, 32, 7), torch.randint(0, 7, (4, 32))).shape
        torch.Size([4])
    """

    def __init__(self, features: tuple[str, ...] | list[str] = ("target_prob", "margin"), hidden: int = 128,
                 depth: int = 3, absolute: bool = True, class_hidden: int = 64, class_depth: int = 2,
                 sample: bool = True, sharpness: tuple[float, ...] | list[float] = (1.0,)) -> None:
        super().__init__()
        if (isinstance(sharpness, (str, bytes)) or not isinstance(sharpness, (tuple, list)) or not sharpness
                or not all(isinstance(t, (int, float)) and math.isfinite(t) and t > 0 for t in sharpness)):
            raise ValueError(f"`sharpness` must be a non-empty list of positive numbers (multipliers of the logits "
                             f"in the soft confusion matrix), got {sharpness!r}")
        self.sharpness = tuple(float(t) for t in sharpness)
        self.sample = ClassificationNet(features, hidden, depth, absolute) if sample else None
        self.features = tuple(features)
        width = len(CLASS_FEATURES) * len(self.sharpness)
        self.psi = nn.Sequential(mlp(width, class_hidden, class_depth - 1, class_hidden), nn.ELU())
        self.rho = mlp(2 * class_hidden, class_hidden, 1, 1)
        if sample:  # start as the per-sample surrogate; learning adds the batch term where the metric needs it
            nn.init.zeros_(self.rho[-1].weight)
            nn.init.zeros_(self.rho[-1].bias)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        stats = torch.cat([class_statistics(logits, target, t) for t in self.sharpness], dim=-1)
        h = self.psi(stats)
        present = stats[..., len(CLASS_FEATURES) - 1:len(CLASS_FEATURES)]
        pooled_all = h.mean(dim=-2)
        pooled_present = (h * present).sum(dim=-2) / present.sum(dim=-2).clamp_min(1.0)
        batch_term = self.rho(torch.cat([pooled_all, pooled_present], dim=-1)).squeeze(-1)
        if self.sample is None:
            return batch_term
        return self.sample(logits, target) + batch_term


class LSEDNet(nn.Module):
    r"""LS-ED (Patel et al. 2020), for classification: prediction and target are embedded by two networks and
    the loss is their Euclidean distance, averaged over the batch,

    .. math:: L(z, y) = \frac1B \sum_b \lVert \phi(\mathrm{softmax}(z_b)) - \psi(y_b) \rVert_2,

    with :math:`\phi` an ELU MLP and :math:`\psi` a learned embedding of the class. Fitted to the metric
    value (``objective="l2"``), it approximates the metric's error as a distance; used to post-tune a model.
    """

    def __init__(self, num_classes: int, embedding: int = 16, hidden: int = 64) -> None:
        super().__init__()
        self.num_classes = check_int(num_classes, "num_classes", 2)
        self.phi = nn.Sequential(nn.Linear(num_classes, hidden), nn.ELU(), nn.Linear(hidden, embedding))
        self.psi = nn.Embedding(num_classes, embedding)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        check_tied_classes(logits.shape[-1], self.num_classes, tied_to="LS-ED's class embedding")
        diff = self.phi(logits.softmax(dim=-1)) - self.psi(target.long())
        # sqrt with a floor keeps the gradient finite when an embedding lands exactly on its target's.
        return (diff.square().sum(dim=-1) + 1e-12).sqrt().mean(dim=-1)


@register_task
class ClassificationTask(ClassIndexTask):
    """``task="classification"``: logits ``(B, C)`` and int64 class indices ``(B,)``."""

    name = "classification"
    default_metric = "accuracy"
    measures_metric = True

    def __init__(self, num_classes: int | tuple[int, int] | list[int]) -> None:
        super().__init__(num_classes)
        #: Share of G_R batches from the imbalanced regime, and whether the default net is the batch net;
        #: :meth:`for_metric` sets both for metrics it measures batch-level.
        self.imbalanced_share = 0.0
        self.class_averaged = False
        #: Share of G_R batches from the model regime (:meth:`model_batches`; the rest from the authors' regime).
        #: 0 draws exactly what G_R drew before the regime existed.
        self.model_share = MODEL_SHARE

    def configure_for(self, per_sample: bool) -> None:
        """A metric measured batch-level (:meth:`~metricloss.tasks.base.Task.for_metric`: macro F1, balanced
        accuracy, kappa, MCC, whatever their names) draws half of G_R from the imbalanced regime and gets
        :data:`BATCH_NET` by default, the other half from the authors' regime, as before the model regime existed
        (the imbalanced regime's skill and bias already model a trained classifier for them); a per-sample one keeps
        this task's settings."""
        if not per_sample:
            self.imbalanced_share, self.class_averaged, self.model_share = 0.5, True, 0.0

    def probe_batches(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Half the batches imbalanced, where class-averaged metrics and accuracy differ most."""
        task = copy.copy(self)
        task.imbalanced_share = 0.5
        return task.random_batches(n, self.default_batch_size, generator)

    def net_label(self, net_config: dict[str, Any]) -> str:
        kind = net_config.get("kind", "mlp")
        return {"mlp": "the per-sample net (ClassificationNet)",
                "batch": "the batch net on the soft confusion matrix (BatchClassificationNet)",
                "lsed": "LS-ED (LSEDNet)"}.get(kind, str(kind))

    @property
    def metrics(self) -> dict[str, Metric]:
        return BUILTINS

    def random_batches(
        self, n: int, batch_size: int, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """G_R: a share :attr:`imbalanced_share` of the batches imbalanced, a share :attr:`model_share` from the
        model regime (:meth:`model_batches`), the rest from the authors' regime (see the module docstring). With a
        range of ``num_classes``, the authors' and the model regimes draw each batch's C from it (absent classes padded
        with ``-inf``, :class:`~metricloss.tasks.base.ClassIndexTask`); the imbalanced regime draws at the largest
        C."""
        if self.imbalanced_share == 0 and self.model_share == 0:
            return self._uniform_batches(n, batch_size, generator)
        u = torch.rand(n, generator=generator)
        imbalanced = u < self.imbalanced_share
        model = ~imbalanced & (u < self.imbalanced_share + self.model_share)
        authors = ~(imbalanced | model)
        pred = torch.empty(n, batch_size, self.num_classes)
        target = torch.empty(n, batch_size, dtype=torch.long)
        pred[authors], target[authors] = self._uniform_batches(int(authors.sum()), batch_size, generator)
        pred[imbalanced], target[imbalanced] = self._imbalanced_batches(int(imbalanced.sum()), batch_size, generator)
        if bool(model.any()):  # no draw when there are none, so model_share = 0 draws what G_R drew before it
            pred[model], target[model] = self.model_batches(int(model.sum()), batch_size, generator)
        return pred, target

    def model_batches(self, n: int, batch_size: int, generator: torch.Generator
                      ) -> tuple[torch.Tensor, torch.Tensor]:
        r"""G_R's model regime: batches like a real classifier's, at any C.

        Per batch, a random linear model :math:`W` (:data:`MODEL_FEATURES` Gaussian features, logits of unit
        standard deviation) reads fresh features :math:`x`; its logits :math:`s\,xW` come at a scale :math:`s`
        log-uniform in :data:`MODEL_SCALES` (a temperature from nearly flat to very confident). The labels come from
        a *noisier copy* of the same model, :math:`x(W + \nu E)` with :math:`E` Gaussian and :math:`\nu = 2.5u^2`,
        :math:`u` uniform in ``[0, 1]``, so the model's errors are correlated with its own scores: in a third of the
        batches the copy's arg-max, in a third a draw from the copy's softmax at the model's own scale (labels
        distributed as a calibrated model believes: flat batches get nearly random labels), in a third a draw at an
        independent scale.
        In a quarter of the batches a random fraction of the labels is the model's runner-up class (confidently
        wrong between two close classes). Accuracy then spreads over :math:`[0, 1]` at every temperature.
        """
        g, c, d = generator, self.num_classes, MODEL_FEATURES
        classes = self.draw_classes(n, g)
        absent = self.absent(classes, c)
        log_lo, log_hi = math.log(MODEL_SCALES[0]), math.log(MODEL_SCALES[1])
        preds, targets = [], []
        for start in range(0, n, MODEL_CHUNK):  # chunks bound the (k, d, C) models' memory at large C
            k = min(MODEL_CHUNK, n - start)
            x = torch.randn(k, batch_size, d, generator=g)
            w = torch.randn(k, d, c, generator=g) / math.sqrt(d)
            nu = torch.rand(k, 1, 1, generator=g).square() * 2.5  # more mass at low noise: high accuracy too
            z = x @ w
            teacher = x @ (w + nu * torch.randn(k, d, c, generator=g) / math.sqrt(d))
            if absent is not None:
                z = z.masked_fill(absent[start:start + k], float("-inf"))
                teacher = teacher.masked_fill(absent[start:start + k], float("-inf"))
            scale = torch.exp(torch.empty(k, 1, 1).uniform_(log_lo, log_hi, generator=g))
            other = torch.exp(torch.empty(k, 1, 1).uniform_(log_lo, log_hi, generator=g))
            mode = torch.rand(k, 1, 1, generator=g)
            sharp = torch.where(mode < 2 / 3, scale, other)
            drawn = torch.multinomial((teacher * sharp).softmax(dim=-1).view(-1, c), 1, replacement=True,
                                      generator=g).view(k, batch_size)
            target = torch.where(mode[..., 0] < 1 / 3, teacher.argmax(dim=-1), drawn)
            runner_up = z.topk(2, dim=-1).indices[..., 1]
            swap = (torch.rand(k, 1, generator=g) < 0.25) & (torch.rand(k, batch_size, generator=g)
                                                              < torch.rand(k, 1, generator=g))
            preds.append(z * scale)
            targets.append(torch.where(swap, runner_up, target))
        if not preds:
            return torch.empty(0, batch_size, c), torch.empty(0, batch_size, dtype=torch.long)
        return torch.cat(preds), torch.cat(targets)

    def _uniform_batches(self, n: int, batch_size: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        c = self.num_classes
        classes = self.draw_classes(n, g)  # None for one C: the draws below are then exactly the fixed-C ones
        absent = self.absent(classes, c)
        # Logit scale log-uniform in [0.3, 12]: from nearly uniform to very confident outputs.
        scale = torch.exp(torch.empty(n, 1, 1).uniform_(math.log(0.3), math.log(12.0), generator=g))
        logits = torch.randn(n, batch_size, c, generator=g) * scale
        if absent is not None:
            logits = logits.masked_fill(absent, float("-inf"))
        target = logits.argmax(dim=-1)
        # Re-draw a uniformly random fraction of the labels in each batch.
        frac = torch.rand(n, 1, generator=g)
        redraw = torch.rand(n, batch_size, generator=g) < frac
        if classes is None:
            random_labels = torch.randint(0, c, (n, batch_size), generator=g)
        else:
            random_labels = (torch.rand(n, batch_size, generator=g) * classes.view(-1, 1)).long()
        target = torch.where(redraw, random_labels, target)
        # A quarter of the batches: boost the target logit by a random amount so "barely right" and
        # "confidently right" batches both occur at every accuracy.
        boost = torch.rand(n, 1, generator=g) * (torch.rand(n, 1, generator=g) < 0.25) * 2 * scale[..., 0]
        keep = torch.rand(n, batch_size, generator=g) < 0.5
        logits = logits + F.one_hot(target, c) * (boost * keep).unsqueeze(-1)
        return logits, target

    def _imbalanced_batches(self, n: int, batch_size: int, g: torch.Generator
                            ) -> tuple[torch.Tensor, torch.Tensor]:
        """Long-tailed labels (Zipf exponent in [0, 2.5] over a random class order; in half the batches some
        minority classes removed), logits that separate the target by a random skill and lean toward the frequent
        classes by a random bias."""
        c = self.num_classes
        exponent = torch.rand(n, 1, generator=g) * 2.5
        order = torch.rand(n, c, generator=g).argsort(dim=-1).to(torch.float32)
        prior = (order + 1).pow(-exponent)
        # Half the batches: each class but the two most frequent goes missing with probability 0.3.
        drop = (torch.rand(n, c, generator=g) < 0.3) & (order >= 2) & (torch.rand(n, 1, generator=g) < 0.5)
        prior = prior.masked_fill(drop, 0.0)
        prior = prior / prior.sum(dim=-1, keepdim=True)
        target = torch.multinomial(prior, batch_size, replacement=True, generator=g)
        skill = torch.rand(n, 1, 1, generator=g) * 4  # target-logit lead, in units of the noise
        bias = torch.rand(n, 1, 1, generator=g) * 2.5  # weight of log-prior in the logits
        noise = torch.randn(n, batch_size, c, generator=g)
        logits = noise + skill * F.one_hot(target, c) + bias * prior.clamp_min(1e-4).log().unsqueeze(1)
        scale = torch.exp(torch.empty(n, 1, 1).uniform_(math.log(0.3), math.log(12.0), generator=g))
        return logits * scale, target

    def relabel(
        self, pred: torch.Tensor, target: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        # The authors' G_R on stored logits: arg-max labels, a uniformly random fraction re-drawn.
        n, b = target.shape
        frac = torch.rand(n, 1, generator=generator)
        redraw = torch.rand(n, b, generator=generator) < frac
        random_labels = torch.randint(0, pred.shape[-1], (n, b), generator=generator)
        return pred, torch.where(redraw, random_labels, pred.argmax(dim=-1))

    def default_net_config(self) -> dict[str, Any]:
        # The per-sample net, but for class-averaged metrics: the batch net (BATCH_NET) made accuracy and top-5
        # surrogates worse (docs/results.md).
        if self.class_averaged:
            return dict(BATCH_NET)
        return {"features": ["target_prob", "margin", "logit_margin"], "hidden": 128, "depth": 3, "absolute": True}

    def build_net(self, **net_config: Any) -> nn.Module:
        """``kind="mlp"`` (the default, also a config without ``kind``): :class:`ClassificationNet`; ``kind="batch"``
        (:data:`BATCH_NET`): :class:`BatchClassificationNet`; ``kind="lsed"``: :class:`LSEDNet`."""
        config = dict(net_config)
        kind = config.pop("kind", "mlp")
        if kind == "lsed":
            if self.min_classes != self.num_classes:
                raise ValueError(f"`net` kind 'lsed' embeds each of C classes, so it serves one C; got a range "
                                 f"num_classes={list(self.config()['num_classes'])}: pass one integer")
            return LSEDNet(self.num_classes, **config)
        if kind == "batch":
            return BatchClassificationNet(**config)
        if kind != "mlp":
            raise ValueError(f"`net` kind must be 'batch', 'mlp' or 'lsed', got {kind!r}")
        return ClassificationNet(**config)
