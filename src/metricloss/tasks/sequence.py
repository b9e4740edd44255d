r"""Sequence generation scored per sentence (BLEU, chrF, edit distance, ...): logits ``(B, T, V)``, tokens ``(B, T)``.

Call shapes: ``pred`` is token logits ``(B, T, V)``, any V >= 2 and any T up to :data:`MAX_LENGTH` (1024);
``target`` is token indices ``(B, T)`` in ``[0, V)``, int64, padded with ``-100`` (``cross_entropy``'s
``ignore_index``); every sentence holds at least one token. Stacks add a leading ``N``, and batches of different
lengths stack padded with -100 (bucketed batches). Metrics decode greedily, the arg-max token at every non-padding
position (see :mod:`metricloss.metrics.sequence`), so a non-autoregressive model's per-position logits are scored
directly; with ``pad_id`` that id means "no token" and is dropped before scoring.

**Surrogate** (ReLoss, appendix A.1: a per-token MLP with context for sequences). For each sentence :math:`b` and
valid position :math:`t`, with logits :math:`z = z_{b,t}`, arg-max :math:`a`, :math:`z_1 = z_a` and runner-up
logit :math:`z_2`, the default features (:func:`logit_features`) are

.. math:: \phi_t = \big(e^{z_{y_t} - z_1},\; \sigma(z_{y_t} - \max_{c \ne y_t} z_c),\; [a = y_t],\;
          e^{z_{y_{t+k}} - z_1}\,{}_{0 < |k| \le w},\; 1 - e^{z_2 - z_1}\big)

(and :math:`e^{z_\mathrm{pad} - z_1}` with ``pad_id``). They are logits *relative to the arg-max*: no softmax over
the vocabulary is taken, so they do not depend on V -- a batch whose other ids all lie below the runner-up has the
same features at V = 100 or V = 32000 -- and a call on ``(B, T, 32000)`` logits costs one top-2 pass and a gather
(the gradient reaches only the gathered columns). The neighbour terms :math:`e^{z_{y_{t+k}} - z_1}` let the network
see shifted, inserted and deleted tokens, which BLEU forgives in part and a position-wise loss does not; the
indicator :math:`[a = y_t]` tells it what the metric sees and carries no gradient. :math:`\phi_t` is embedded,
:math:`h_t = W\phi_t + \mathrm{PE}(r_t)` where :math:`r_t = t / (n_b - 1)` is the *relative* place in the
sentence (:func:`relative_positions`: no length is unseen, so a net learned at T <= 24 serves T = 1024),
normalised, averaged over the valid positions and mapped by an ELU MLP to one number per sentence (by default no
block mixes positions: the neighbour features carry the context; ``conv=n`` adds residual convolution blocks,
:class:`ConvBlock`, linear in T, and ``layers=n`` self-attention blocks); the loss of a batch is the mean over its
sentences,

.. math:: L(z, y) = \frac1B \sum_b \mathrm{MLP}\Big(\frac{1}{|\mathcal{V}_b|}\sum_{t \in \mathcal{V}_b}
          \mathrm{Enc}(h)_{t}\Big).

The baseline is token cross-entropy averaged over the non-padding tokens of the batch.

The first surrogates (saved before ``positions`` existed) read softmax probabilities (:func:`token_features`:
:math:`p_t(y_t)`, :math:`\max_c p_t(c)`, the margin, neighbour probabilities), add absolute sinusoidal positions
and mix positions by self-attention (:class:`SelfAttentionBlock`, quadratic in T, written out because PyTorch's
fused attention has no second derivative). They load unchanged (:attr:`SequenceTask.stored_net_defaults`) and
serve T <= the ``max_length`` they were learned with; a longer call gets an error naming the surrogate that serves
it. Both kinds of net are configurable (``features``, ``positions``, ``conv``, ``layers``).

**Storage at NMT size.** A batch of 16 sentences of 128 tokens over V = 32000 is 262 MB of float32 logits, so a
pool of hundreds cannot be held. Since the default net reads a handful of logits per position relative to the
arg-max, the family stores what it reads:

- G_R draws each batch over a *sub-vocabulary* of at most :data:`GEN_VOCAB` (128) ids, its size log-uniform in
  ``[32, 128]`` per batch when ``vocab_size`` is larger (sizes from a range), the unused ids far below the rest;
  such a batch stands for the V-wide one whose other ids lie below its runner-up (same features, same arg-max
  tokens, so the same BLEU), at 1 MB instead of 262 MB (:meth:`SequenceTask.batch_nbytes`). Token cross-entropy on
  it is over the drawn ids; ``benchmarks/real_sizes_sequence.py`` measures it on batches widened to V = 32000.
  Sentence lengths come from ranges too: a longest length per batch in ``[T/4, T]`` and sentences of a quarter to
  all of it, padded with -100 to ``max_length``.
- Model outputs (G_M) wider than :data:`GEN_VOCAB` ids are stored by :meth:`SequenceTask.compact` (through
  :meth:`SequenceTask.compact_outputs`, what ``learn(outputs=...)`` and ``OutputRecorder(task="sequence")`` call):
  each sentence's ids renumbered over those it uses (targets and arg-max; at most 2T + 1 columns with one for the
  rest, which holds the runner-up), which keeps the default net's values and the matching metrics (BLEU, edit
  distance, token F1, ROUGE-L) exactly. Batches of different widths or lengths stack with the narrower ones widened
  by ids below all others (:meth:`SequenceTask.widen`) and the shorter ones padded with -100, and so do the G_R pool
  and the model outputs.

G_R draws random reference sentences and derives hypotheses from them by substitutions, insertions (random tokens
or repeats), deletions, adjacent swaps and shifts at a random rate and mix per batch, then builds logits whose
arg-max is the hypothesis at random logit scales and confidence gaps (with the reference token sometimes the
runner-up), so BLEU and edit distance spread over nearly all of :math:`[0, 1]`.

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
    >>> wide = torch.randn(2, 30, 32000)   # any V, any T up to 1024
    >>> net(wide[None], torch.randint(0, 32000, (1, 2, 30))).shape
    torch.Size([1])
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from .._checks import check_float_tensor, check_int, check_int_tensor
from ..metrics.base import Metric
from ..metrics.sequence import IGNORE_INDEX, builtins
from .base import Task, capped_steps, register_task

__all__ = ["FEATURES", "SelfAttentionBlock", "SequenceNet", "SequenceTask", "token_features"]

#: Features read from the softmax over the whole vocabulary (the first surrogates' inputs).
SOFTMAX_FEATURES = ("target_prob", "log_target_prob", "max_prob", "margin", "neighbour_prob", "pad_prob")
#: Features read from a few logits per position relative to the arg-max logit: no softmax over V.
LOGIT_FEATURES = ("rel_target", "soft_match", "match", "rel_neighbour", "top_gap", "rel_pad")
FEATURES = (*SOFTMAX_FEATURES, *(f for f in LOGIT_FEATURES if f not in SOFTMAX_FEATURES))
#: Position encodings of :class:`SequenceNet`: sinusoids of the index ``t`` (the first surrogates'), of the relative
#: position ``t / (length - 1)`` in the sentence, or none.
POSITIONS = ("absolute", "relative", "none")
#: The longest sentence a surrogate serves (a net with self-attention blocks is quadratic in ``T``).
MAX_LENGTH = 1024
#: G_R draws its batches over at most this many token ids (a random sub-vocabulary size per batch), whatever
#: ``vocab_size``: the default net reads logits relative to the arg-max, which do not depend on V, so batches this
#: wide stand for any vocabulary at a fraction of the memory (see the module docstring).
GEN_VOCAB = 128
#: G_R batches drawn at once (bounds its temporaries).
GEN_CHUNK = 16


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


def _shifted(x: torch.Tensor, k: int, fill: int | bool) -> torch.Tensor:
    """``out[..., t] = x[..., t + k]``, ``fill`` where ``t + k`` is outside ``[0, T)``."""
    t = x.shape[-1]
    if k > 0:
        return F.pad(x[..., k:], (0, min(k, t)), value=fill)[..., :t]
    return F.pad(x[..., : max(t + k, 0)], (min(-k, t), 0), value=fill)


def logit_features(
    logits: torch.Tensor,
    target: torch.Tensor,
    features: tuple[str, ...],
    window: int = 2,
    pad_id: int | None = None,
) -> torch.Tensor:
    r"""Per-token features ``(..., T, F)`` read from a few logits per position, relative to the arg-max logit.

    With :math:`z` the logits of a position, :math:`a = \arg\max z`, :math:`z_1 = z_a` and :math:`z_2` the
    runner-up logit: ``rel_target`` :math:`e^{z_y - z_1}`, ``soft_match`` :math:`\sigma(z_y - \max_{c \ne y} z_c)`,
    ``match`` :math:`[a = y]`, ``rel_neighbour`` :math:`e^{z_{y_{t+k}} - z_1}` for
    :math:`k = -w, \dots, -1, 1, \dots, w` (0 outside the sentence), ``top_gap`` :math:`1 - e^{z_2 - z_1}` and
    ``rel_pad`` :math:`e^{z_\mathrm{pad} - z_1}`. No softmax over the vocabulary is taken: the features, and so
    the surrogate, depend on ``logits`` only through the gathered columns (the targets, their neighbours, the
    arg-max, the runner-up), chosen without gradient, so a (B, T, 32000) call costs one top-2 pass and a gather,
    and a batch whose other columns are lower than the runner-up has the same features at any V. 0 at padding.
    """
    unknown = set(features) - set(LOGIT_FEATURES)
    if unknown:
        raise ValueError(f"logit_features: {sorted(unknown)} are not in {LOGIT_FEATURES}")
    valid = target != IGNORE_INDEX
    y = target.clamp_min(0)
    with torch.no_grad():  # which columns to read: chosen, not differentiated
        first = logits.argmax(dim=-1)  # ties to the lowest id, as the metrics decode
        two = logits.topk(min(2, logits.shape[-1]), dim=-1).indices
        second = torch.where(two[..., 0] == first, two[..., -1], two[..., 0])
    offsets = [*range(-window, 0), *range(1, window + 1)] if "rel_neighbour" in features else []
    cols = [y, first, second, *(_shifted(y, k, 0) for k in offsets)]
    if "rel_pad" in features:
        if pad_id is None:
            raise ValueError("feature 'rel_pad' needs the task's `pad_id`")
        cols.append(torch.full_like(y, pad_id))
    z = logits.gather(-1, torch.stack(cols, dim=-1))
    rel = z - z[..., 1:2]  # every gathered logit relative to the arg-max's, <= 0
    is_top = first == y
    out: list[torch.Tensor] = []
    for name in features:
        if name == "rel_target":
            out.append(rel[..., 0].exp())
        elif name == "soft_match":
            out.append(torch.sigmoid(rel[..., 0] - torch.where(is_top, rel[..., 2], rel[..., 1])))
        elif name == "match":
            out.append(is_top.to(z.dtype))
        elif name == "rel_neighbour":
            out.extend(rel[..., 3 + i].exp() * _shifted(valid, k, False) for i, k in enumerate(offsets))
        elif name == "top_gap":
            out.append(1.0 - rel[..., 2].exp())
        elif name == "rel_pad":
            out.append(rel[..., -1].exp())
    return torch.stack(out, dim=-1) * valid.unsqueeze(-1)


def relative_positions(valid: torch.Tensor, dim: int, dtype: torch.dtype) -> torch.Tensor:
    r"""Position codes ``(S, T, dim)`` of the relative place :math:`r = t / (n - 1)` of each position in its
    sentence of :math:`n` tokens: :math:`\sin(\pi k r), \cos(\pi k r)` for :math:`k = 0, \dots, dim/2 - 1`; the same
    for a sentence of 10 or 1000 tokens, so no length is unseen."""
    n = valid.sum(dim=-1, keepdim=True).clamp_min(2) - 1
    r = torch.arange(valid.shape[-1], device=valid.device).to(torch.float64) / n.to(torch.float64)
    angle = r.unsqueeze(-1) * (math.pi * torch.arange(dim // 2, dtype=torch.float64, device=valid.device))
    return torch.stack((angle.sin(), angle.cos()), dim=-1).flatten(-2).to(dtype)


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


class ConvBlock(nn.Module):
    """Pre-norm residual block mixing each position with its ``kernel - 1`` neighbours: ``x + Conv(LN(x))`` then
    ``+ FF(LN(.))``; padding positions are zeroed before the convolution, so they never reach a valid one. Linear in
    T (self-attention is quadratic) and twice differentiable."""

    def __init__(self, d_model: int, kernel: int, ff: int) -> None:
        super().__init__()
        if kernel < 1 or kernel % 2 == 0:
            raise ValueError(f"`kernel` must be an odd integer >= 1, got {kernel!r}")
        self.norm1 = nn.LayerNorm(d_model)
        self.reach = kernel // 2
        self.conv = nn.Linear(kernel * d_model, d_model)  # a convolution as one matmul over shifted copies
        self.norm2 = nn.LayerNorm(d_model)
        self.ff = nn.Sequential(nn.Linear(d_model, ff), nn.GELU(), nn.Linear(ff, d_model))

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        h = self.norm1(x) * valid.unsqueeze(-1).to(x.dtype)
        # out[:, t] = h[:, t + k] (0 outside the sentence): negative padding crops, positive pads with zeros.
        shifted = [F.pad(h, (0, 0, -k, k)) if abs(k) < h.shape[1] else torch.zeros_like(h)
                   for k in range(-self.reach, self.reach + 1)]
        x = x + self.conv(torch.cat(shifted, dim=-1))
        return x + self.ff(self.norm2(x))


class SequenceNet(nn.Module):
    """Token features -> linear embedding + positions -> convolution blocks -> self-attention -> masked mean -> ELU MLP.

    ``net(pred (N, B, T, V), target (N, B, T)) -> (N,)``: the mean over the B sentences of each batch. Features
    all from :data:`LOGIT_FEATURES` are read by :func:`logit_features` (no softmax over V); a set with any of
    :data:`SOFTMAX_FEATURES` by :func:`token_features`. ``positions``: see :data:`POSITIONS`.
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
        positions: str = "absolute",
        conv: int = 0,
        kernel: int = 5,
    ) -> None:
        super().__init__()
        features = tuple(features)
        unknown = set(features) - set(FEATURES)
        if not features or unknown or len(set(features)) != len(features):
            raise ValueError(f"`features` must be a non-empty subset of {FEATURES} without repeats; got {features!r}")
        for pad_feature in ("pad_prob", "rel_pad"):
            if pad_feature in features and pad_id is None:
                raise ValueError(f"feature {pad_feature!r} needs the task's `pad_id`")
        window = check_int(window, "window", 0)
        neighbours = {"neighbour_prob", "rel_neighbour"} & set(features)
        if neighbours and window < 1:
            raise ValueError(f"feature {sorted(neighbours)[0]!r} needs `window` >= 1")
        d_model, heads, ff, hidden = (check_int(v, n, 1) for v, n in
                                      ((d_model, "d_model"), (heads, "heads"), (ff, "ff"), (hidden, "hidden")))
        layers, conv, kernel = check_int(layers, "layers", 0), check_int(conv, "conv", 0), check_int(
            kernel, "kernel", 1)
        if d_model % 2:
            raise ValueError(f"`d_model` must be even (sinusoidal positions), got {d_model}")
        if positions not in POSITIONS:
            raise ValueError(f"`positions` must be one of {POSITIONS}, got {positions!r}")
        self.features, self.window, self.pad_id, self.d_model = features, window, pad_id, d_model
        self.positions = positions
        self.softmax_inputs = bool(set(features) & set(SOFTMAX_FEATURES))
        mixed = set(features) - set(SOFTMAX_FEATURES) - {"soft_match", "match"} if self.softmax_inputs else set()
        if mixed:
            raise ValueError(f"`features` mixes softmax features {SOFTMAX_FEATURES} with logit-relative ones "
                             f"{sorted(mixed)}; use one kind")
        width = len(features) + (2 * window - 1) * len(neighbours)
        self.embed = nn.Linear(width, d_model)
        self.convs = nn.ModuleList([ConvBlock(d_model, kernel, ff) for _ in range(conv)])
        self.blocks = nn.ModuleList([SelfAttentionBlock(d_model, heads, ff) for _ in range(layers)])
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Sequential(nn.Linear(d_model, hidden), nn.ELU(), nn.Linear(hidden, hidden), nn.ELU(),
                                  nn.Linear(hidden, 1))

    def token_inputs(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The per-token features ``(S, T, F)`` the net embeds."""
        if not self.softmax_inputs:
            return logit_features(logits, target, self.features, self.window, self.pad_id)
        return token_features(logits, target, self.features, self.window, self.pad_id)

    def sentence_losses(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """One loss per sentence: logits ``(S, T, V)``, target ``(S, T)`` -> ``(S,)``."""
        valid = target != IGNORE_INDEX
        x = self.embed(self.token_inputs(logits, target))
        if self.positions == "absolute":
            x = x + sinusoidal_positions(x.shape[1], self.d_model, x.dtype, x.device)
        elif self.positions == "relative":
            x = x + relative_positions(valid, self.d_model, x.dtype)
        for block in (*self.convs, *self.blocks):
            x = block(x, valid)
        w = valid.to(x.dtype).unsqueeze(-1)
        pooled = (self.norm(x) * w).sum(dim=1) / w.sum(dim=1).clamp_min(1.0)
        return self.head(pooled).squeeze(-1)

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        lead = target.shape[:-1]
        losses = self.sentence_losses(pred.reshape(-1, *pred.shape[-2:]), target.reshape(-1, target.shape[-1]))
        return losses.view(lead).mean(dim=-1)


#: Target positions a run learns from in all by default (:attr:`SequenceTask.default_steps`): 100 steps of 32 batches
#: of 16 sentences at ``max_length = 128``. The net reads a few logits per position, so the vocabulary size does not
#: enter the cost. At V = 32000 such a run took 48 s on 2 cores, held-out Spearman 0.809 against cross-entropy's 0.316
#: (``benchmarks/real_sizes.py``, docs/benchmarks.md).
LEARN_TOKENS = 100 * 32 * 16 * 128


@register_task
class SequenceTask(Task):
    """``task="sequence"``: token logits ``(B, T, V)`` and int64 tokens ``(B, T)`` padded with -100.

    Args:
        vocab_size: V, the number of token ids (>= 2) of the model whose outputs the surrogate scores. G_R draws
            its batches over at most :data:`GEN_VOCAB` of them (module docstring); calls accept any V.
        max_length: the longest sentence G_R draws (at most :data:`MAX_LENGTH`). Calls accept any T up to
            :data:`MAX_LENGTH`, except for a net with absolute positions (the first surrogates'), which serves
            T <= ``max_length``.
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
    #: Files saved before ``positions`` existed used absolute sinusoidal positions.
    stored_net_defaults: ClassVar[dict[str, Any]] = {"positions": "absolute", "conv": 0}

    def __init__(self, vocab_size: int, max_length: int, pad_id: int | None = None) -> None:
        check_int(vocab_size, "vocab_size", 2)
        check_int(max_length, "max_length", 1)
        if max_length > MAX_LENGTH:
            raise ValueError(f"`max_length` must be at most {MAX_LENGTH} (the longest sentence a sequence surrogate "
                             f"serves), got {max_length}; score longer sequences in windows of at most {MAX_LENGTH} "
                             f"tokens")
        if pad_id is not None and (isinstance(pad_id, bool) or not isinstance(pad_id, int)
                                   or not 0 <= pad_id < vocab_size):
            raise ValueError(f"`pad_id` must be None or a token id in [0, {vocab_size - 1}], got {pad_id!r}")
        if pad_id is not None and vocab_size < 3:
            raise ValueError("`vocab_size` must be >= 3 with a `pad_id` (two content tokens at least)")
        self.vocab_size, self.max_length, self.pad_id = vocab_size, max_length, pad_id
        #: The longest T :meth:`check` accepts: :data:`MAX_LENGTH`, or ``max_length`` once a net with absolute
        #: positions is built for this task.
        self.length_limit = MAX_LENGTH
        self._metrics = builtins(pad_id)

    def config(self) -> dict[str, Any]:
        return {"vocab_size": self.vocab_size, "max_length": self.max_length, "pad_id": self.pad_id}

    @property
    def default_steps(self) -> int:  # type: ignore[override]
        """The default step bound: 2000 for short sentences, fewer for long ones, so all steps' default batches hold
        at most :data:`LEARN_TOKENS` positions (100 steps at ``max_length = 128``, 533 at 24, the floor of 50 from
        256 up; :func:`~metricloss.tasks.base.capped_steps`)."""
        return capped_steps(self.default_batches_per_step * self.default_batch_size * self.max_length, LEARN_TOKENS)

    @property
    def metrics(self) -> dict[str, Metric]:
        return self._metrics

    def _length_error(self, t: int) -> str:
        if self.length_limit >= MAX_LENGTH:
            return (f"`pred` must have 1 <= T <= {MAX_LENGTH} positions (the longest sentence a sequence surrogate "
                    f"serves), got T = {t}; score longer sequences in windows of at most {MAX_LENGTH}")
        return (f"`pred` must have 1 <= T <= max_length = {self.length_limit} positions for this surrogate, got "
                f"T = {t}: its net encodes absolute positions and never saw later ones. Use "
                f"ml.pretrained('sequence-bleu') (relative positions, any T up to {MAX_LENGTH}), or learn one with "
                f"the default net (positions='relative') or with max_length >= {t}")

    def check(self, pred: torch.Tensor, target: torch.Tensor, *, stacked: bool = False) -> None:
        lead = 1 if stacked else 0
        pred = check_float_tensor(pred, "pred")
        target = check_int_tensor(target, "target")
        want = "(N, B, T, V)" if stacked else "(B, T, V)"
        if pred.dim() != 3 + lead or pred.shape[-1] < 2:
            raise ValueError(f"`pred` must be token logits of shape {want} with V >= 2, got {tuple(pred.shape)}")
        if not 1 <= pred.shape[-2] <= self.length_limit:
            raise ValueError(self._length_error(pred.shape[-2]))
        if pred.shape[-3] < 1:
            raise ValueError("`pred` is an empty batch (B = 0)")
        if target.shape != pred.shape[:-1]:
            raise ValueError(f"`target` must have shape {tuple(pred.shape[:-1])} (one token index per position of "
                             f"`pred`), got {tuple(target.shape)}")
        v = pred.shape[-1]
        if self.pad_id is not None and self.pad_id >= v:
            raise ValueError(f"`pred` has V = {v} token ids, but the task's `pad_id` is {self.pad_id}: "
                             f"V must be > pad_id")
        bad = (target != IGNORE_INDEX) & ((target < 0) | (target >= v))
        if bool(bad.any()):
            raise ValueError(f"`target` holds token indices outside [0, {v - 1}] (V = pred.shape[-1]) that are not "
                             f"the padding value {IGNORE_INDEX}: e.g. {int(target[bad][0])}")
        if not bool((target != IGNORE_INDEX).any(dim=-1).all()):
            raise ValueError(f"every sentence of `target` must hold at least one token; some rows are all padding "
                             f"({IGNORE_INDEX})")

    # ----- G_R -----------------------------------------------------------------------------------------------

    @property
    def gen_width(self) -> int:
        """V of G_R's batches: ``vocab_size`` up to :data:`GEN_VOCAB` (wider only to hold a large ``pad_id``)."""
        wide = GEN_VOCAB if self.pad_id is None else max(GEN_VOCAB, self.pad_id + 1)
        return min(self.vocab_size, wide)

    def _batch_vocab(self, n: int, g: torch.Generator) -> torch.Tensor:
        """Token ids each of ``n`` G_R batches draws from, ``(n, 1, 1)``: all ``vocab_size`` when they fit in
        :attr:`gen_width`, else a log-uniform number in ``[GEN_VOCAB / 4, GEN_VOCAB]`` (sizes from a range)."""
        if self.vocab_size <= GEN_VOCAB:
            return torch.full((n, 1, 1), self.vocab_size)
        lo = math.log(GEN_VOCAB / 4)
        v = torch.exp(torch.empty(n, 1, 1).uniform_(lo, math.log(GEN_VOCAB + 1), generator=g)).long()
        return v.clamp(GEN_VOCAB // 4, GEN_VOCAB)

    def _content_tokens(self, shape: tuple[int, ...], g: torch.Generator, vocab: torch.Tensor | int) -> torch.Tensor:
        """Random token ids in ``[0, vocab)`` (``vocab`` broadcasts against ``shape``), never ``pad_id``."""
        vocab = torch.as_tensor(vocab)
        skip = torch.zeros_like(vocab) if self.pad_id is None else (vocab > self.pad_id).long()
        tok = (torch.rand(shape, generator=g) * (vocab - skip)).long().minimum(vocab - skip - 1)
        return tok if self.pad_id is None else tok + ((tok >= self.pad_id) & (skip > 0)).long()

    def _corrupt(self, source: torch.Tensor, length: torch.Tensor, g: torch.Generator,
                 vocab: torch.Tensor | int) -> torch.Tensor:
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
        fill = self._content_tokens((n, b, t), g, vocab)
        if self.pad_id is not None:
            fill = torch.where(past_end, torch.full_like(fill, self.pad_id), fill)
        out = torch.where(inside, out, fill)
        # Insertions: half repeat the previous output token (a typical non-autoregressive error), half are random.
        repeat = inserted & (u(n, b, t) < 0.5)
        out = torch.where(inserted & ~repeat, fill, out)
        out = torch.where(repeat, torch.roll(out, 1, dims=-1), out)
        sub = u(n, b, t) < p_sub
        return torch.where(sub, self._content_tokens((n, b, t), g, vocab), out)

    def _logits(self, hyp: torch.Tensor, target: torch.Tensor, vocab: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        """Logits ``(n, b, T, gen_width)`` whose arg-max is ``hyp``, at random scales and confidence gaps; the ids
        at or past each batch's ``vocab`` (but ``pad_id``) lie far below the rest (no mass, never chosen)."""
        n, b, t = hyp.shape
        v = self.gen_width
        scale = torch.exp(torch.empty(n, 1, 1, 1).uniform_(math.log(0.3), math.log(8.0), generator=g))
        z = torch.randn(n, b, t, v, generator=g) * scale
        if v > int(vocab.min()):
            unused = torch.arange(v) >= vocab.unsqueeze(-1)
            if self.pad_id is not None:
                unused[..., self.pad_id] = False
            z = torch.where(unused, z.amin(dim=-1, keepdim=True) - 30.0 * scale, z)
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
        return z.scatter(-1, y.unsqueeze(-1), torch.where(runner.unsqueeze(-1), below, current))

    def _draw(self, n: int, batch_size: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` G_R batches at once (see :meth:`random_batches`)."""
        t = self.max_length
        vocab = self._batch_vocab(n, g)
        # Lengths from ranges: a longest length per batch in [T/4, T], sentences of 1/4 to all of it (bucketed
        # batches of short and long sentences), padded with -100 to T.
        top = torch.randint(max(1, t // 4), t + 1, (n, 1), generator=g)
        lo = (top // 4).clamp_min(1)
        length = lo + (torch.rand(n, batch_size, generator=g) * (top - lo + 1)).long().minimum(top - lo)
        ref = self._content_tokens((n, batch_size, t), g, vocab)
        valid = torch.arange(t) < length.unsqueeze(-1)
        if self.pad_id is not None:
            # Half of the sentences are scored over all T positions, with pad_id after their content: a model
            # must predict "no token" there.
            padded = torch.rand(n, batch_size, 1, generator=g) < 0.5
            ref = torch.where(padded & ~valid, torch.full_like(ref, self.pad_id), ref)
            valid = valid | padded
        target = torch.where(valid, ref, torch.full_like(ref, IGNORE_INDEX))
        hyp = self._corrupt(ref, length, g, vocab)
        return self._logits(hyp, target, vocab, g), target

    def random_batches(
        self, n: int, batch_size: int, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """G_R: ``n`` batches ``(n, batch_size, max_length, gen_width)``, drawn :data:`GEN_CHUNK` at a time into one
        stack so that the temporaries stay a few batches big."""
        pred = torch.empty(n, batch_size, self.max_length, self.gen_width)
        target = torch.empty(n, batch_size, self.max_length, dtype=torch.long)
        for start in range(0, n, GEN_CHUNK):
            stop = min(n, start + GEN_CHUNK)
            pred[start:stop], target[start:stop] = self._draw(stop - start, batch_size, generator)
        return pred, target

    def batch_nbytes(self, batch_size: int) -> int:
        """Bytes one stored G_R batch takes: float32 logits over :attr:`gen_width` ids and int64 targets."""
        return batch_size * self.max_length * (4 * self.gen_width + 8)

    def compact(self, pred: torch.Tensor, target: torch.Tensor,
                chunk: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Model outputs ``(..., B, T, V)`` stored by what the default net reads: ``(..., B, T, W)``, W <= 2T + 1.

        Each sentence's token ids are renumbered, in their order, over the ids it uses: its targets and the arg-max
        of each position; one last column holds, per position, the largest logit of the other ids (the runner-up's
        when it is not one of them). The default net (:func:`logit_features`: the target, its neighbours, the
        arg-max and the runner-up logit) gives the same values on the compact batch, and so do the sentence metrics
        that see only which tokens match (BLEU, edit distance, token F1, ROUGE-L: not chrF, which reads the digits
        of the ids) -- compute anything else, cross-entropy included, before compacting. With ``pad_id`` (an id
        the metrics must keep) the batch is returned unchanged. Runs on ``pred``'s device, ``chunk`` sentences at a
        time (default: as many as hold about 2^24 logits).
        """
        if self.pad_id is not None:
            return pred, target
        lead, t, v = target.shape[:-1], target.shape[-1], pred.shape[-1]
        pred_s, target_s = pred.reshape(-1, t, v), target.reshape(-1, t)
        device = pred.device
        chunk = max(1, 2**24 // (t * v)) if chunk is None else check_int(chunk, "chunk", 1)
        with torch.no_grad():
            first = pred_s.argmax(dim=-1)  # ties to the lowest id, as the metrics decode
            valid = target_s != IGNORE_INDEX
            ids = torch.cat([torch.where(valid, target_s, first), first], dim=-1)  # (S, 2T) ids to keep
            ids, _ = ids.sort(dim=-1)
            new = torch.ones_like(ids, dtype=torch.bool)
            new[:, 1:] = ids[:, 1:] != ids[:, :-1]
            rank = new.cumsum(dim=-1) - 1  # the compact id of each sorted entry
            width = int(rank[:, -1].max()) + 2  # + the column of the other ids
            keep = torch.full((ids.shape[0], width - 1), -1, dtype=torch.long, device=device)
            keep.scatter_(1, rank, ids)  # keep[s, j] = the original id of compact id j (-1: unused)
            out = torch.empty(pred_s.shape[0], t, width, dtype=pred.dtype, device=device)
            for s0 in range(0, pred_s.shape[0], chunk):
                z, k = pred_s[s0:s0 + chunk], keep[s0:s0 + chunk]
                cols = k.clamp_min(0).unsqueeze(1).expand(-1, t, -1)
                rest = z.scatter(-1, cols, float("-inf")).amax(dim=-1, keepdim=True)
                rest = torch.where(rest.isinf(), z.amin(dim=-1, keepdim=True) - 1.0, rest)  # every id kept
                picked = torch.where(k.unsqueeze(1) >= 0, z.gather(-1, cols), rest)
                out[s0:s0 + chunk] = torch.cat([picked, rest], dim=-1)
            lookup = torch.searchsorted(ids, target_s.clamp_min(0))
            new_target = torch.where(valid, rank.gather(-1, lookup), target_s)
        return out.reshape(*lead, t, width), new_target.reshape(target.shape)

    def compact_outputs(self, pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`compact` where it saves memory: logits wider than :data:`GEN_VOCAB` ids (and no ``pad_id``) whose
        compact form is narrower; else the batch unchanged, so outputs of a small vocabulary keep their ids."""
        if self.pad_id is not None or pred.shape[-1] <= GEN_VOCAB:
            return pred, target
        small, small_target = self.compact(pred, target)
        return (small, small_target) if small.shape[-1] < pred.shape[-1] else (pred, target)

    def widen(self, pred: torch.Tensor, width: int) -> torch.Tensor:
        r"""``pred`` ``(..., V)`` with ``width - V`` columns appended, each position's far below all its logits (ids
        never chosen, like the unused ids of G_R's batches): at :math:`z_{min} - 30 (z_{max} - z_{min}) - 30`, so the
        default net's features and the arg-max tokens, and so the metrics, are unchanged, and each column's share of
        the softmax is below :math:`e^{-30}` (cross-entropy unchanged in float32)."""
        extra = width - pred.shape[-1]
        if extra <= 0:
            return pred
        lo, hi = pred.amin(dim=-1, keepdim=True), pred.amax(dim=-1, keepdim=True)
        return torch.cat([pred, (lo - 30.0 * (hi - lo) - 30.0).expand(*pred.shape[:-1], extra)], dim=-1)

    def relabel(
        self, pred: torch.Tensor, target: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        # Real logits, new references: the model's own greedy output, edited at a random rate per batch.
        valid = target != IGNORE_INDEX
        hyp = pred.argmax(dim=-1)
        length = valid.sum(dim=-1)
        # Compact the valid positions to the front so that edits act on the sentence, then scatter back.
        order = torch.sort((~valid).to(torch.int8), dim=-1, stable=True).indices
        new = self._corrupt(hyp.gather(-1, order), length, generator, pred.shape[-1])
        out = torch.full_like(target, IGNORE_INDEX).scatter(-1, order, new)
        return pred, torch.where(valid, out, target)

    def baseline(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        ce = F.cross_entropy(pred.flatten(0, -2), target.flatten(), ignore_index=IGNORE_INDEX, reduction="none")
        ce = ce.view(target.shape).flatten(1)
        count = (target != IGNORE_INDEX).flatten(1).sum(dim=1).clamp_min(1)
        return ce.sum(dim=1) / count

    def default_net_config(self) -> dict[str, Any]:
        features = ["rel_target", "soft_match", "match", "rel_neighbour", "top_gap"]
        if self.pad_id is not None:
            features.append("rel_pad")
        # No attention or convolution by default: the neighbour features carry the context, and at T = 128 a
        # convolution block (conv=1, kernel=3) cost 1.75x the CPU per step for +0.012 held-out Spearman at 100
        # steps (0.840 vs 0.828, cross-entropy 0.459; V = 32000, T = 128, measured on a loaded machine).
        return {"features": features, "window": 2, "d_model": 32, "heads": 2, "layers": 0, "ff": 64, "hidden": 32,
                "positions": "relative", "conv": 0}

    def build_net(self, **net_config: Any) -> nn.Module:
        if "pad_id" in net_config:
            raise TypeError("`pad_id` is a task argument (SequenceTask(pad_id=...)), not a network setting")
        net = SequenceNet(pad_id=self.pad_id, **net_config)
        # A net with absolute positions never saw positions past max_length: calls longer than that are refused.
        self.length_limit = self.max_length if net.positions == "absolute" else MAX_LENGTH
        return net
