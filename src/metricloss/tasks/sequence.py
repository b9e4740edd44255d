r"""Sequence generation scored per sentence (BLEU, chrF, edit distance, ...): logits ``(B, T, V)``, tokens ``(B, T)``.

Call shapes: ``pred`` is token logits ``(B, T, V)`` with ``T <= max_length`` and ``V = vocab_size``; ``target`` is
token indices ``(B, T)``, int64, padded with ``-100`` (``cross_entropy``'s ``ignore_index``); every sentence holds at
least one token. Stacks add a leading ``N``. Metrics decode greedily, the arg-max token at every non-padding
position (see :mod:`metricloss.metrics.sequence`), so a non-autoregressive model's per-position logits are scored
directly; with ``pad_id`` that id means "no token" and is dropped before scoring.

Surrogate (ReLoss, appendix A.1: the classification MLP with self-attention added for sequences). For each
sentence :math:`b` and valid position :math:`t`, with :math:`p_t = \mathrm{softmax}(z_{b,t})`, a feature vector

.. math:: \phi_t = \big(p_t(y_t),\; \max_c p_t(c),\; p_t(y_t) - \max_{c \ne y_t} p_t(c),\;
          [\arg\max p_t = y_t],\; p_t(y_{t+k})_{0 < |k| \le w} \big)

(the default features). The neighbour probabilities :math:`p_t(y_{t+k})` let the network see shifted, inserted
and deleted tokens, which BLEU forgives in part and a position-wise loss does not; the indicator
:math:`[\arg\max p_t = y_t]` tells it what the metric sees and carries no gradient (the gradient flows through the
probabilities). Optional features: ``log_target_prob``, ``soft_match`` (:math:`\sigma(z_y - \max_{c \ne y} z_c)`)
and, with ``pad_id``, ``pad_prob`` (:math:`p_t(\mathrm{pad})`, on by default then). :math:`\phi_t` is embedded,
:math:`h_t = W\phi_t + \mathrm{PE}(t)` (sinusoidal), passed through pre-norm self-attention blocks masked to the
valid positions (one by default), averaged over them, and mapped by an ELU MLP to one number per sentence; the loss
of a batch is the mean over its sentences,

.. math:: L(z, y) = \frac1B \sum_b \mathrm{MLP}\Big(\frac{1}{|\mathcal{V}_b|}\sum_{t \in \mathcal{V}_b}
          \mathrm{Enc}(h)_{t}\Big).

None of the inputs depend on ``vocab_size`` or ``max_length``, so a learned net applies to other shapes. The
attention is written out (not ``nn.MultiheadAttention``) because PyTorch's fused attention kernels have no
second derivative, which the learner's gradient penalty needs. The baseline is token cross-entropy averaged over
the non-padding tokens of the batch.

G_R draws random reference sentences of random lengths and derives hypotheses from them by substitutions,
insertions (random tokens or repeats), deletions, adjacent swaps and shifts at a random rate and mix per batch,
then builds logits whose arg-max is the hypothesis at random logit scales and confidence gaps (with the
reference token sometimes the runner-up), so BLEU and edit distance spread over nearly all of :math:`[0, 1]`.

Example:
    >>> import torch
    >>> from metricloss.tasks import sequence
    >>> task = sequence.SequenceTask(vocab_size=20, max_length=12)
    >>> pred, target = task.random_batches(4, 8, torch.Generator().manual_seed(0))
    >>> pred.shape, target.shape
    (torch.Size([4, 8, 12, 20]), torch.Size([4, 8, 12]))
    >>> net = task.build_net(**task.default_net_config())
    >>> net(pred, target).shape
    torch.Size([4])
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from .._checks import check_float_tensor, check_int_tensor
from ..metrics.base import Metric
from ..metrics.sequence import IGNORE_INDEX, builtins
from .base import Task, register_task

__all__ = ["FEATURES", "SelfAttentionBlock", "SequenceNet", "SequenceTask", "token_features"]

FEATURES = ("target_prob", "log_target_prob", "max_prob", "margin", "soft_match", "match", "neighbour_prob",
            "pad_prob")


def _positive_int(value: Any, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"`{name}` must be an integer >= {minimum}, got {value!r}")
    return value


def token_features(
    logits: torch.Tensor,
    target: torch.Tensor,
    features: tuple[str, ...],
    window: int = 2,
    pad_id: int | None = None,
) -> torch.Tensor:
    """Per-token features ``(..., T, F)`` of logits ``(..., T, V)`` and targets ``(..., T)``; 0 at padding.

    ``neighbour_prob`` contributes ``2 * window`` columns: :math:`p_t(y_{t+k})` for
    :math:`k = -w, \\dots, -1, 1, \\dots, w` (0 where :math:`t + k` is outside the sentence).
    """
    valid = target != IGNORE_INDEX
    y = target.clamp_min(0)
    t = target.shape[-1]
    logp = logits.log_softmax(dim=-1)
    # One gather for the target and its neighbours: index columns y_t, y_{t-w}, ..., y_{t+w} (k != 0).
    offsets = [*range(-window, 0), *range(1, window + 1)] if "neighbour_prob" in features else []
    cols, masks = [y], [valid]
    for k in offsets:
        if k > 0:  # y_k[t] = y[t + k], False outside [0, T)
            cols.append(F.pad(y[..., k:], (0, min(k, t)))[..., :t])
            masks.append(F.pad(valid[..., k:], (0, min(k, t)), value=False)[..., :t])
        else:
            cols.append(F.pad(y[..., : max(t + k, 0)], (min(-k, t), 0)))
            masks.append(F.pad(valid[..., : max(t + k, 0)], (min(-k, t), 0), value=False))
    if "pad_prob" in features:
        if pad_id is None:
            raise ValueError("feature 'pad_prob' needs the task's `pad_id`")
        cols.append(torch.full_like(y, pad_id))
    picked = logp.gather(-1, torch.stack(cols, dim=-1))
    logp_y = picked[..., 0]
    p_y = logp_y.exp()
    if {"max_prob", "margin", "soft_match"} & set(features):
        top2, top_idx = logp.topk(min(2, logp.shape[-1]), dim=-1)
        p_max = top2[..., 0].exp()
    out: list[torch.Tensor] = []
    for name in features:
        if name == "target_prob":
            out.append(p_y)
        elif name == "log_target_prob":
            out.append(logp_y.clamp_min(-30.0) / 10)
        elif name == "max_prob":
            out.append(p_max)
        elif name == "margin":
            # p_y minus the largest other probability: the runner-up where y is the arg-max.
            other = torch.where(top_idx[..., 0] == y, top2[..., -1].exp(), p_max)
            out.append(p_y - other)
        elif name == "soft_match":
            # sigmoid(z_y - max_{c != y} z_c) = p_y / (p_y + max_{c != y} p_c): above 1/2 exactly where the
            # arg-max is the target, a smooth version of `match`.
            other = torch.where(top_idx[..., 0] == y, top2[..., -1], top2[..., 0])
            out.append(torch.sigmoid(logp_y - other))
        elif name == "match":
            out.append((logits.argmax(dim=-1) == y).to(p_y.dtype))
        elif name == "neighbour_prob":
            out.extend(picked[..., 1 + i].exp() * masks[1 + i] for i in range(len(offsets)))
        elif name == "pad_prob":
            out.append(picked[..., -1].exp())
    return torch.stack(out, dim=-1) * valid.unsqueeze(-1)


def sinusoidal_positions(length: int, dim: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Vaswani et al.'s position encoding ``(length, dim)``: sin and cos of ``t / 10000^(2i/dim)``."""
    pos = torch.arange(length, dtype=torch.float64, device=device).unsqueeze(1)
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float64, device=device) * (-math.log(10000.0) / dim))
    pe = torch.zeros(length, dim, dtype=torch.float64, device=device)
    pe[:, 0::2] = torch.sin(pos * freq)
    pe[:, 1::2] = torch.cos(pos * freq)[:, : dim // 2]
    return pe.to(dtype)


class SelfAttentionBlock(nn.Module):
    """Pre-norm transformer encoder block with explicit (twice differentiable) masked multi-head attention.

    ``x + Attn(LN(x))`` then ``+ FF(LN(.))``; keys at masked positions get zero attention weight.
    """

    def __init__(self, d_model: int, heads: int, ff: int) -> None:
        super().__init__()
        if d_model % heads:
            raise ValueError(f"`d_model` ({d_model}) must be divisible by `heads` ({heads})")
        self.heads = heads
        self.norm1 = nn.LayerNorm(d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.ff = nn.Sequential(nn.Linear(d_model, ff), nn.GELU(), nn.Linear(ff, d_model))

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        s, t, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(s, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        scores = q @ k.transpose(-1, -2) / math.sqrt(d // self.heads)
        scores = scores.masked_fill(~valid[:, None, None, :], torch.finfo(scores.dtype).min)
        attn = scores.softmax(dim=-1) @ v
        x = x + self.proj(attn.transpose(1, 2).reshape(s, t, d))
        return x + self.ff(self.norm2(x))


class SequenceNet(nn.Module):
    """Token features -> linear embedding + sinusoidal positions -> self-attention -> masked mean -> ELU MLP.

    ``net(pred (N, B, T, V), target (N, B, T)) -> (N,)``: the mean over the B sentences of each batch.
    """

    def __init__(
        self,
        features: tuple[str, ...] | list[str] = ("target_prob", "max_prob", "margin", "match", "neighbour_prob"),
        window: int = 2,
        d_model: int = 32,
        heads: int = 2,
        layers: int = 1,
        ff: int = 64,
        hidden: int = 32,
        pad_id: int | None = None,
    ) -> None:
        super().__init__()
        features = tuple(features)
        unknown = set(features) - set(FEATURES)
        if not features or unknown or len(set(features)) != len(features):
            raise ValueError(f"`features` must be a non-empty subset of {FEATURES} without repeats; got {features!r}")
        if "pad_prob" in features and pad_id is None:
            raise ValueError("feature 'pad_prob' needs the task's `pad_id`")
        window = _positive_int(window, "window", 0)
        if "neighbour_prob" in features and window < 1:
            raise ValueError("feature 'neighbour_prob' needs `window` >= 1")
        d_model, heads, ff, hidden = (_positive_int(v, n) for v, n in
                                      ((d_model, "d_model"), (heads, "heads"), (ff, "ff"), (hidden, "hidden")))
        layers = _positive_int(layers, "layers", 0)
        if d_model % 2:
            raise ValueError(f"`d_model` must be even (sinusoidal positions), got {d_model}")
        self.features, self.window, self.pad_id, self.d_model = features, window, pad_id, d_model
        width = len(features) + (2 * window - 1 if "neighbour_prob" in features else 0)
        self.embed = nn.Linear(width, d_model)
        self.blocks = nn.ModuleList([SelfAttentionBlock(d_model, heads, ff) for _ in range(layers)])
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Sequential(nn.Linear(d_model, hidden), nn.ELU(), nn.Linear(hidden, hidden), nn.ELU(),
                                  nn.Linear(hidden, 1))

    def sentence_losses(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """One loss per sentence: logits ``(S, T, V)``, target ``(S, T)`` -> ``(S,)``."""
        valid = target != IGNORE_INDEX
        x = self.embed(token_features(logits, target, self.features, self.window, self.pad_id))
        x = x + sinusoidal_positions(x.shape[1], self.d_model, x.dtype, x.device)
        for block in self.blocks:
            x = block(x, valid)
        w = valid.to(x.dtype).unsqueeze(-1)
        pooled = (self.norm(x) * w).sum(dim=1) / w.sum(dim=1).clamp_min(1.0)
        return self.head(pooled).squeeze(-1)

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        lead = target.shape[:-1]
        losses = self.sentence_losses(pred.reshape(-1, *pred.shape[-2:]), target.reshape(-1, target.shape[-1]))
        return losses.view(lead).mean(dim=-1)


@register_task
class SequenceTask(Task):
    """``task="sequence"``: token logits ``(B, T, V)`` and int64 tokens ``(B, T)`` padded with -100.

    Args:
        vocab_size: V, the number of token ids (>= 2).
        max_length: the largest T accepted (G_R draws sentences of up to this many tokens).
        pad_id: optional id in ``[0, V)`` meaning "no token", dropped from hypotheses and references before
            scoring (hypotheses can then differ in length from their references).
    """

    name = "sequence"
    baseline_name = "cross-entropy"
    default_metric = "bleu"
    default_batch_size = 16
    default_batches_per_step = 32  # per step, 32 x batch_size sentences through self-attention
    default_pool_size = 512
    #: The target value of positions that hold no token: batches of different lengths are padded with it when
    #: stacked (:func:`metricloss.evaluation.stack_batches`); every sequence metric and the surrogate ignore them.
    pad_target: ClassVar[int] = IGNORE_INDEX

    def __init__(self, vocab_size: int, max_length: int, pad_id: int | None = None) -> None:
        if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < 2:
            raise ValueError(f"`vocab_size` must be an integer >= 2, got {vocab_size!r}")
        if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 1:
            raise ValueError(f"`max_length` must be an integer >= 1, got {max_length!r}")
        if pad_id is not None and (isinstance(pad_id, bool) or not isinstance(pad_id, int)
                                   or not 0 <= pad_id < vocab_size):
            raise ValueError(f"`pad_id` must be None or a token id in [0, {vocab_size - 1}], got {pad_id!r}")
        if pad_id is not None and vocab_size < 3:
            raise ValueError("`vocab_size` must be >= 3 with a `pad_id` (two content tokens at least)")
        self.vocab_size, self.max_length, self.pad_id = vocab_size, max_length, pad_id
        self._metrics = builtins(pad_id)

    def config(self) -> dict[str, Any]:
        return {"vocab_size": self.vocab_size, "max_length": self.max_length, "pad_id": self.pad_id}

    @property
    def metrics(self) -> dict[str, Metric]:
        return self._metrics

    def check(self, pred: torch.Tensor, target: torch.Tensor, *, stacked: bool = False) -> None:
        lead = 1 if stacked else 0
        pred = check_float_tensor(pred, "pred")
        target = check_int_tensor(target, "target")
        want = "(N, B, T, V)" if stacked else "(B, T, V)"
        if pred.dim() != 3 + lead or pred.shape[-1] != self.vocab_size:
            raise ValueError(f"`pred` must be token logits of shape {want} with V = vocab_size = {self.vocab_size}, "
                             f"got {tuple(pred.shape)}")
        if not 1 <= pred.shape[-2] <= self.max_length:
            raise ValueError(f"`pred` must have 1 <= T <= max_length = {self.max_length} positions, "
                             f"got T = {pred.shape[-2]}")
        if pred.shape[-3] < 1:
            raise ValueError("`pred` is an empty batch (B = 0)")
        if target.shape != pred.shape[:-1]:
            raise ValueError(f"`target` must have shape {tuple(pred.shape[:-1])} (one token index per position of "
                             f"`pred`), got {tuple(target.shape)}")
        bad = (target != IGNORE_INDEX) & ((target < 0) | (target >= self.vocab_size))
        if bool(bad.any()):
            raise ValueError(f"`target` holds token indices outside [0, {self.vocab_size - 1}] that are not the "
                             f"padding value {IGNORE_INDEX}: e.g. {int(target[bad][0])}")
        if not bool((target != IGNORE_INDEX).any(dim=-1).all()):
            raise ValueError(f"every sentence of `target` must hold at least one token; some rows are all padding "
                             f"({IGNORE_INDEX})")

    # ----- G_R -----------------------------------------------------------------------------------------------

    def _content_tokens(self, shape: tuple[int, ...], g: torch.Generator) -> torch.Tensor:
        """Random token ids, never ``pad_id``."""
        if self.pad_id is None:
            return torch.randint(0, self.vocab_size, shape, generator=g)
        tok = torch.randint(0, self.vocab_size - 1, shape, generator=g)
        return tok + (tok >= self.pad_id).long()

    def _corrupt(self, source: torch.Tensor, length: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        """Edit each row of ``source`` ``(n, b, T)`` (its first ``length`` tokens) at a random rate per batch.

        Returns ``(n, b, T)`` tokens: output position j copies source position s_j, where s follows the
        source with deletions (skip), insertions (stay: a repeat or a random token), adjacent swaps and a
        shift, and a random share of positions is substituted. Positions past the source's end get ``pad_id``
        (if set) or a random token.
        """
        n, b, t = source.shape
        u = lambda *s: torch.rand(*s, generator=g)  # noqa: E731
        rate = u(n, 1, 1) ** 1.5                                   # per batch error level in [0, 1]
        rate = (rate * (1.0 + 0.3 * torch.randn(n, b, 1, generator=g))).clamp(0.0, 1.0)  # per sentence
        mix = -torch.log(u(n, 1, 1, 5).clamp_min(1e-12))           # Dirichlet(1) mix of the edit types
        mix = mix / mix.sum(dim=-1, keepdim=True)
        p_sub, p_del, p_ins, p_swap, p_shift = ((rate * 2.0 * mix[..., 0, i:i + 1]).clamp(0, 1) for i in range(5))
        p_sub = (p_sub + rate.square()).clamp(0, 1)  # substitutions take over at high rates: BLEU reaches ~0
        # Alignment: steps of 2 (deletion), 0 (insertion) or 1.
        r = u(n, b, t)
        step = torch.ones(n, b, t, dtype=torch.long)
        step = torch.where(r < p_del / 2, torch.full_like(step, 2), step)
        inserted = (r >= p_del / 2) & (r < (p_del + p_ins) / 2)
        step = torch.where(inserted, torch.zeros_like(step), step)
        src = step.cumsum(dim=-1) - 1
        # Shift by a few positions (a missing or extra prefix).
        shifted = u(n, b, 1) < p_shift
        offset = torch.randint(1, 4, (n, b, 1), generator=g) * (2 * (u(n, b, 1) < 0.5).long() - 1)
        src = src + offset * shifted
        # Swap adjacent pairs starting at positions of one random parity.
        parity = torch.randint(0, 2, (n, b, 1), generator=g)
        pos = torch.arange(t)
        start = ((pos - parity) % 2 == 0) & (pos < t - 1) & (u(n, b, t) < p_swap / 2)
        second = F.pad(start[..., :-1], (1, 0), value=False)
        src = torch.where(start, torch.roll(src, -1, dims=-1), torch.where(second, torch.roll(src, 1, dims=-1), src))
        # Gather, then fill the positions that point outside the source.
        inside = (src >= 0) & (src < length.unsqueeze(-1))
        out = source.gather(-1, src.clamp(0, t - 1))
        past_end = src >= length.unsqueeze(-1)
        fill = self._content_tokens((n, b, t), g)
        if self.pad_id is not None:
            fill = torch.where(past_end, torch.full_like(fill, self.pad_id), fill)
        out = torch.where(inside, out, fill)
        # Insertions: half repeat the previous output token (a typical non-autoregressive error), half are random.
        repeat = inserted & (u(n, b, t) < 0.5)
        out = torch.where(inserted & ~repeat, fill, out)
        out = torch.where(repeat, torch.roll(out, 1, dims=-1), out)
        sub = u(n, b, t) < p_sub
        return torch.where(sub, self._content_tokens((n, b, t), g), out)

    def _logits(self, hyp: torch.Tensor, target: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        """Logits ``(n, b, T, V)`` whose arg-max is ``hyp``, at random scales and confidence gaps."""
        n, b, t = hyp.shape
        v = self.vocab_size
        scale = torch.exp(torch.empty(n, 1, 1, 1).uniform_(math.log(0.3), math.log(8.0), generator=g))
        z = torch.randn(n, b, t, v, generator=g) * scale
        top = z.amax(dim=-1, keepdim=True)
        spread = torch.empty(n, 1, 1, 1).uniform_(0.05, 3.0, generator=g)
        gap = scale * spread * torch.empty(n, b, t, 1).uniform_(0.02, 1.0, generator=g)
        z = z.scatter(-1, hyp.unsqueeze(-1), top + gap)
        # Where the hypothesis is wrong, make the reference token the runner-up in a random share of batches.
        y = target.clamp_min(0)
        near = torch.rand(n, 1, 1, generator=g) * (torch.rand(n, 1, 1, generator=g) < 0.5)
        runner = (hyp != y) & (target != IGNORE_INDEX) & (torch.rand(n, b, t, generator=g) < near)
        below = top + gap * torch.empty(n, b, t, 1).uniform_(0.05, 0.95, generator=g)
        current = z.gather(-1, y.unsqueeze(-1))
        z = z.scatter(-1, y.unsqueeze(-1), torch.where(runner.unsqueeze(-1), below, current))
        return z

    def random_batches(
        self, n: int, batch_size: int, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        g, t = generator, self.max_length
        lo = max(1, t // 4)
        length = torch.randint(lo, t + 1, (n, batch_size), generator=g)
        ref = self._content_tokens((n, batch_size, t), g)
        valid = torch.arange(t) < length.unsqueeze(-1)
        if self.pad_id is not None:
            # Half of the sentences are scored over all T positions, with pad_id after their content: a model
            # must predict "no token" there.
            padded = torch.rand(n, batch_size, 1, generator=g) < 0.5
            ref = torch.where(padded & ~valid, torch.full_like(ref, self.pad_id), ref)
            valid = valid | padded
        target = torch.where(valid, ref, torch.full_like(ref, IGNORE_INDEX))
        hyp = self._corrupt(ref, length, g)
        return self._logits(hyp, target, g), target

    def relabel(
        self, pred: torch.Tensor, target: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        # Real logits, new references: the model's own greedy output, edited at a random rate per batch.
        valid = target != IGNORE_INDEX
        hyp = pred.argmax(dim=-1)
        length = valid.sum(dim=-1)
        # Compact the valid positions to the front so that edits act on the sentence, then scatter back.
        order = torch.sort((~valid).to(torch.int8), dim=-1, stable=True).indices
        new = self._corrupt(hyp.gather(-1, order), length, generator)
        out = torch.full_like(target, IGNORE_INDEX).scatter(-1, order, new)
        return pred, torch.where(valid, out, target)

    def baseline(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        ce = F.cross_entropy(pred.flatten(0, -2), target.flatten(), ignore_index=IGNORE_INDEX, reduction="none")
        ce = ce.view(target.shape).flatten(1)
        count = (target != IGNORE_INDEX).flatten(1).sum(dim=1).clamp_min(1)
        return ce.sum(dim=1) / count

    def default_net_config(self) -> dict[str, Any]:
        features = ["target_prob", "max_prob", "margin", "match", "neighbour_prob"]
        if self.pad_id is not None:
            features.append("pad_prob")
        return {"features": features, "window": 2, "d_model": 32, "heads": 2, "layers": 1, "ff": 64, "hidden": 32}

    def build_net(self, **net_config: Any) -> nn.Module:
        if "pad_id" in net_config:
            raise TypeError("`pad_id` is a task argument (SequenceTask(pad_id=...)), not a network setting")
        return SequenceNet(pad_id=self.pad_id, **net_config)
