r"""Built-in sequence metrics: sentence BLEU, chrF, normalised edit distance, token F1 and ROUGE-L.

Call shapes (one batch, or a stack of batches with any leading dimensions):

- ``logits``: token logits ``(..., B, T, V)``, float;
- ``target``: token indices ``(..., B, T)``, int64, with padding ``-100`` (as
  :func:`torch.nn.functional.cross_entropy`'s ``ignore_index``).

**Decoding.** The hypothesis of a sentence is decoded greedily: the arg-max token at every position where the
target is not padding (ties go to the lowest id, as :func:`torch.argmax`). So, without ``pad_id``, a hypothesis has
exactly its reference's length. With ``pad_id`` (a vocabulary id meaning "no token", e.g. the blank or padding
symbol a non-autoregressive model predicts at unused positions), that id is removed from the hypothesis and from
the reference before scoring, so hypotheses can be shorter or longer than their references.

**Scoring.** Each metric is computed per sentence and averaged over the batch (``reduction="mean"``) or returned
per sentence (``reduction="none"``), all in :math:`[0, 1]`. Token id ``i`` is the word ``"t<i>"`` for sacrebleu.

=================  ===========================================================================  ==========
name               per sentence, hypothesis :math:`h`, reference :math:`r`                        better
=================  ===========================================================================  ==========
``bleu``           sacrebleu ``BLEU(effective_order=True).sentence_score(h, [r]).score / 100``  higher
``chrf``           sacrebleu ``CHRF().sentence_score(h, [r]).score / 100``                      higher
``edit_distance``  :math:`\mathrm{lev}(h, r) / \max(|h|, |r|)` over tokens (rapidfuzz)           lower
``token_f1``       :math:`2|h \cap r| / (|h| + |r|)`, bag-of-tokens overlap as in SQuAD          higher
``rouge_l``        :math:`2\,\mathrm{LCS}(h, r) / (|h| + |r|)`, the LCS F-measure with β = 1      higher
=================  ===========================================================================  ==========

An empty hypothesis or reference (possible only with ``pad_id``) scores as SQuAD does: perfect (1, or edit
distance 0) if both are empty, else 0 (edit distance 1).

Example:
    >>> import torch
    >>> from metricloss.metrics import sequence
    >>> target = torch.tensor([[3, 1, 4, 1, 5, -100]])
    >>> logits = torch.nn.functional.one_hot(torch.tensor([[3, 1, 4, 2, 5, 0]]), 8).float()
    >>> round(float(sequence.token_f1(logits, target)), 4)   # 4 of 5 tokens shared
    0.8
    >>> round(float(sequence.edit_distance(logits, target)), 4)   # one substitution in 5 tokens
    0.2
    >>> round(float(sequence.rouge_l(logits, target)), 4)
    0.8

References:
    Papineni et al., *BLEU: a method for automatic evaluation of machine translation*, ACL 2002;
    Popović, *chrF: character n-gram F-score for automatic MT evaluation*, WMT 2015;
    Post, *A call for clarity in reporting BLEU scores*, WMT 2018 (sacrebleu);
    Rajpurkar et al., *SQuAD: 100,000+ questions for machine comprehension of text*, EMNLP 2016;
    Lin, *ROUGE: a package for automatic evaluation of summaries*, 2004.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from functools import lru_cache, partial
from typing import Any, Literal

import numpy as np
import torch

from .._checks import check_choice, check_float_tensor, check_int_tensor
from .base import Metric

__all__ = [
    "BUILTINS",
    "IGNORE_INDEX",
    "bleu",
    "builtins",
    "chrf",
    "decode",
    "edit_distance",
    "rouge_l",
    "token_f1",
    "tokens_to_text",
]

#: Padding value of targets, as ``torch.nn.functional.cross_entropy``'s default ``ignore_index``.
IGNORE_INDEX = -100

Reduction = Literal["mean", "none"]


def check_sequence_pair(logits: Any, target: Any, pad_id: int | None = None) -> None:
    """Check ``logits`` ``(..., B, T, V)`` against ``target`` ``(..., B, T)`` with values in ``[0, V)`` or -100."""
    logits = check_float_tensor(logits, "pred")
    target = check_int_tensor(target, "target")
    if logits.dim() < 3:
        raise ValueError(f"`pred` must be token logits of shape (B, T, V), got {tuple(logits.shape)}")
    if target.shape != logits.shape[:-1]:
        raise ValueError(
            f"`target` must have shape {tuple(logits.shape[:-1])} (one token index per position of `pred`), "
            f"got {tuple(target.shape)}"
        )
    v = logits.shape[-1]
    bad = (target != IGNORE_INDEX) & ((target < 0) | (target >= v))
    if bool(bad.any()):
        raise ValueError(
            f"`target` holds token indices outside [0, {v - 1}] (V = pred.shape[-1]) that are not the padding "
            f"value {IGNORE_INDEX}: e.g. {int(target[bad][0])}"
        )
    if pad_id is not None:
        _check_pad_id(pad_id, v)


def _check_pad_id(pad_id: Any, vocab_size: int) -> int:
    if isinstance(pad_id, bool) or not isinstance(pad_id, int) or not 0 <= pad_id < vocab_size:
        raise ValueError(f"`pad_id` must be None or a token id in [0, {vocab_size - 1}], got {pad_id!r}")
    return pad_id


def decode(
    logits: torch.Tensor, target: torch.Tensor, pad_id: int | None = None
) -> tuple[list[list[int]], list[list[int]]]:
    """Greedy hypotheses and references as token-id lists, one per sentence, in row-major order.

    The hypothesis keeps the arg-max token of every position where ``target`` is not -100; with ``pad_id``
    that id is dropped from both lists.

    Example:
        >>> import torch
        >>> logits = torch.nn.functional.one_hot(torch.tensor([[2, 0, 1, 1]]), 3).float()
        >>> decode(logits, torch.tensor([[2, 1, 1, -100]]))
        ([[2, 0, 1]], [[2, 1, 1]])
        >>> decode(logits, torch.tensor([[2, 1, 1, -100]]), pad_id=0)
        ([[2, 1]], [[2, 1, 1]])
    """
    hyp = logits.detach().argmax(dim=-1).reshape(-1, logits.shape[-2]).cpu().tolist()
    ref = target.detach().reshape(-1, target.shape[-1]).cpu().tolist()
    drop = {IGNORE_INDEX} if pad_id is None else {IGNORE_INDEX, pad_id}
    hyps = [[h for h, r in zip(hr, rr, strict=True) if r != IGNORE_INDEX and h not in drop]
            for hr, rr in zip(hyp, ref, strict=True)]
    refs = [[r for r in rr if r not in drop] for rr in ref]
    return hyps, refs


@lru_cache(maxsize=8)
def _words(vocab_size: int) -> tuple[str, ...]:
    return tuple(f"t{i}" for i in range(vocab_size))


def tokens_to_text(tokens: Sequence[int]) -> str:
    """Token ids as whitespace-separated words for sacrebleu: ``[3, 17] -> "t3 t17"``."""
    return " ".join(f"t{i}" for i in tokens)


def _texts(seqs: list[list[int]], vocab_size: int) -> list[str]:
    words = _words(vocab_size)
    return [" ".join(words[i] for i in s) for s in seqs]


def _chars(seqs: list[list[int]]) -> list[str]:
    # One character per token id: edit operations on these strings are edit operations on the token lists,
    # and rapidfuzz runs much faster on strings than on Python lists.
    return ["".join(chr(0x100 + i) for i in s) for s in seqs]


def _require(module: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ImportError(
            f"the sequence metrics need {module.split('.')[0]!r}: install it with `pip install 'metricloss[text]'`"
        ) from None


@lru_cache(maxsize=1)
def _bleu_scorer() -> Any:
    BLEU = _require("sacrebleu.metrics").BLEU
    # The words "t<i>" are unchanged by sacrebleu's 13a tokenizer, so skipping it gives identical scores, faster.
    return BLEU(effective_order=True, tokenize="none")


@lru_cache(maxsize=1)
def _chrf_scorer() -> Any:
    CHRF = _require("sacrebleu.metrics").CHRF
    return CHRF()


def _reduce(scores: torch.Tensor, lead: torch.Size, reduction: Reduction) -> torch.Tensor:
    check_choice(reduction, "reduction", ("mean", "none"))
    scores = scores.to(torch.float64).reshape(lead)
    return scores.mean(dim=-1) if reduction == "mean" else scores


def _empty_rule(hyps: list[list[int]], refs: list[list[int]], perfect: float, worst: float) -> list[float | None]:
    """Score of pairs with an empty side (``None`` where both are non-empty)."""
    return [None if h and r else (perfect if not h and not r else worst) for h, r in zip(hyps, refs, strict=True)]


def _sacrebleu_scores(hyps: list[list[int]], refs: list[list[int]], vocab_size: int, scorer: Any) -> torch.Tensor:
    fixed = _empty_rule(hyps, refs, 1.0, 0.0)
    htxt, rtxt = _texts(hyps, vocab_size), _texts(refs, vocab_size)
    out = [f if f is not None else scorer.sentence_score(h, [r]).score / 100.0
           for f, h, r in zip(fixed, htxt, rtxt, strict=True)]
    return torch.tensor(out, dtype=torch.float64)


def _pairwise_ints(hyps: list[list[int]], refs: list[list[int]], scorer: Callable[..., Any]) -> torch.Tensor:
    values = _require("rapidfuzz.process").cpdist(_chars(hyps), _chars(refs), scorer=scorer, dtype=np.int64, workers=1)
    return torch.from_numpy(np.asarray(values, dtype=np.int64))


def _lengths(seqs: list[list[int]]) -> torch.Tensor:
    return torch.tensor([len(s) for s in seqs], dtype=torch.float64)


def _sacrebleu_metric(logits: torch.Tensor, target: torch.Tensor, pad_id: int | None, reduction: Reduction,
                      scorer: Any) -> torch.Tensor:
    """A sacrebleu sentence score of greedy hypotheses, divided by 100 and reduced over the batch."""
    check_sequence_pair(logits, target, pad_id)
    hyps, refs = decode(logits, target, pad_id)
    return _reduce(_sacrebleu_scores(hyps, refs, logits.shape[-1], scorer), target.shape[:-1], reduction)


def bleu(
    logits: torch.Tensor, target: torch.Tensor, *, pad_id: int | None = None, reduction: Reduction = "mean"
) -> torch.Tensor:
    r"""Sentence BLEU of greedy hypotheses, in :math:`[0, 1]`, averaged over the batch.

    Per sentence, sacrebleu's :math:`\mathrm{BP}\cdot\exp\big(\sum_{n} \tfrac14 \log p_n\big)` with effective
    order (only n-gram orders the shorter sentence has) and exponential smoothing, divided by 100.

    Args:
        logits: ``(..., B, T, V)``. target: ``(..., B, T)`` int64, padding -100.
        pad_id: a "no token" id dropped from hypotheses and references (see the module docstring).
        reduction: ``"mean"`` over the batch -> ``(...)``, or ``"none"`` -> ``(..., B)``.

    Example:
        >>> import torch
        >>> target = torch.tensor([[5, 6, 7, 8, 9]])
        >>> logits = torch.nn.functional.one_hot(target, 10).float()
        >>> round(float(bleu(logits, target)), 4)
        1.0
        >>> swapped = torch.nn.functional.one_hot(torch.tensor([[5, 6, 8, 7, 9]]), 10).float()
        >>> round(float(bleu(swapped, target)), 4)   # n-gram matches 5/5, 1/4, 0/3, 0/2 (exp-smoothed)
        0.2686
    """
    return _sacrebleu_metric(logits, target, pad_id, reduction, _bleu_scorer())


def chrf(
    logits: torch.Tensor, target: torch.Tensor, *, pad_id: int | None = None, reduction: Reduction = "mean"
) -> torch.Tensor:
    r"""Sentence chrF (character 6-grams, β = 2) of greedy hypotheses, in :math:`[0, 1]`, averaged over the batch.

    Per sentence, sacrebleu's :math:`\mathrm{chrF}_\beta = (1 + \beta^2)\,\frac{P\,R}{\beta^2 P + R}` over
    character n-grams of the words ``"t<i>"`` (whitespace removed), divided by 100. Arguments as :func:`bleu`.

    Example:
        >>> import torch
        >>> target = torch.tensor([[5, 6, 7, 8, 9]])
        >>> round(float(chrf(torch.nn.functional.one_hot(target, 10).float(), target)), 4)
        1.0
    """
    return _sacrebleu_metric(logits, target, pad_id, reduction, _chrf_scorer())


def edit_distance(
    logits: torch.Tensor, target: torch.Tensor, *, pad_id: int | None = None, reduction: Reduction = "mean"
) -> torch.Tensor:
    r"""Normalised token edit distance of greedy hypotheses, in :math:`[0, 1]` (lower is better).

    Per sentence, :math:`\mathrm{lev}(h, r) / \max(|h|, |r|)`: the Levenshtein distance (unit-cost insertions,
    deletions and substitutions of tokens, computed by rapidfuzz) over the longer length, as rapidfuzz's
    ``Levenshtein.normalized_distance``. Arguments as :func:`bleu`.

    Example:
        >>> import torch
        >>> target = torch.tensor([[1, 2, 3, 4]])
        >>> logits = torch.nn.functional.one_hot(torch.tensor([[2, 3, 4, 4]]), 5).float()
        >>> float(edit_distance(logits, target))   # delete 1, insert 4
        0.5
    """
    check_sequence_pair(logits, target, pad_id)
    hyps, refs = decode(logits, target, pad_id)
    dist = _pairwise_ints(hyps, refs, _require("rapidfuzz.distance").Levenshtein.distance).to(torch.float64)
    longest = torch.maximum(_lengths(hyps), _lengths(refs))
    scores = torch.where(longest > 0, dist / longest.clamp_min(1), torch.zeros_like(dist))
    return _reduce(scores, target.shape[:-1], reduction)


def rouge_l(
    logits: torch.Tensor, target: torch.Tensor, *, pad_id: int | None = None, reduction: Reduction = "mean"
) -> torch.Tensor:
    r"""ROUGE-L F-measure (β = 1) over tokens of greedy hypotheses, in :math:`[0, 1]`.

    With :math:`\ell = \mathrm{LCS}(h, r)` (longest common subsequence, rapidfuzz ``LCSseq``),
    :math:`P = \ell/|h|`, :math:`R = \ell/|r|` and :math:`F = 2PR/(P + R) = 2\ell/(|h| + |r|)`.
    Arguments as :func:`bleu`.

    Example:
        >>> import torch
        >>> target = torch.tensor([[1, 2, 3, 4]])
        >>> logits = torch.nn.functional.one_hot(torch.tensor([[2, 1, 3, 4]]), 5).float()
        >>> float(rouge_l(logits, target))   # LCS = 3 of 4
        0.75
    """
    check_sequence_pair(logits, target, pad_id)
    hyps, refs = decode(logits, target, pad_id)
    lcs = _pairwise_ints(hyps, refs, _require("rapidfuzz.distance").LCSseq.similarity).to(torch.float64)
    total = _lengths(hyps) + _lengths(refs)
    scores = torch.where(total > 0, 2 * lcs / total.clamp_min(1), torch.ones_like(lcs))
    return _reduce(scores, target.shape[:-1], reduction)


def token_f1(
    logits: torch.Tensor, target: torch.Tensor, *, pad_id: int | None = None, reduction: Reduction = "mean"
) -> torch.Tensor:
    r"""Bag-of-tokens F1 of greedy hypotheses (SQuAD's F1), in :math:`[0, 1]`; vectorised, no Python loop.

    With :math:`c = \sum_v \min(n_h(v), n_r(v))` the number of shared tokens counted with multiplicity,
    :math:`P = c/|h|`, :math:`R = c/|r|` and :math:`F_1 = 2PR/(P + R) = 2c/(|h| + |r|)` (0 when :math:`c = 0`).
    Arguments as :func:`bleu`.

    Example:
        >>> import torch
        >>> target = torch.tensor([[1, 1, 2, -100]])
        >>> logits = torch.nn.functional.one_hot(torch.tensor([[1, 2, 2, 0]]), 3).float()
        >>> round(float(token_f1(logits, target)), 4)   # shared {1, 2}: 2 * 2 / 6
        0.6667
    """
    check_sequence_pair(logits, target, pad_id)
    v = logits.shape[-1]
    valid = target != IGNORE_INDEX
    hyp = logits.detach().argmax(dim=-1)
    ref = target.clamp_min(0)
    keep_h, keep_r = valid, valid
    if pad_id is not None:
        keep_h, keep_r = valid & (hyp != pad_id), valid & (ref != pad_id)
    flat = (-1, target.shape[-1])
    counts_h = torch.zeros(hyp.reshape(flat).shape[0], v, dtype=torch.float64)
    counts_r = torch.zeros_like(counts_h)
    counts_h.scatter_add_(1, hyp.reshape(flat).cpu(), keep_h.reshape(flat).cpu().to(torch.float64))
    counts_r.scatter_add_(1, ref.reshape(flat).cpu(), keep_r.reshape(flat).cpu().to(torch.float64))
    common = torch.minimum(counts_h, counts_r).sum(dim=1)
    total = counts_h.sum(dim=1) + counts_r.sum(dim=1)
    both_empty = total == 0
    scores = torch.where(both_empty, torch.ones_like(common), 2 * common / total.clamp_min(1))
    return _reduce(scores, target.shape[:-1], reduction)


_FUNCTIONS: dict[str, tuple[Callable[..., torch.Tensor], bool]] = {
    "bleu": (bleu, True),
    "chrf": (chrf, True),
    "edit_distance": (edit_distance, False),
    "token_f1": (token_f1, True),
    "rouge_l": (rouge_l, True),
}


def builtins(pad_id: int | None = None) -> dict[str, Metric]:
    """The built-in metrics as :class:`Metric` objects, bound to ``pad_id``; each works on batches and stacks."""
    out = {}
    for name, (fn, hib) in _FUNCTIONS.items():
        bound = fn if pad_id is None else partial(fn, pad_id=pad_id)
        out[name] = Metric(name, bound, hib, bound)
    return out


BUILTINS: dict[str, Metric] = builtins()
