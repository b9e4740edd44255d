"""`OutputRecorder`: every-k-th subsampling, the byte bound, uniform reservoir sampling, detached CPU copies."""

from __future__ import annotations

import pytest
import torch
from scipy import stats

from metricloss import OutputRecorder


def batch(i: int, rows: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    """Batch ``i``: its index is readable from its first value."""
    return torch.full((rows, 3), float(i)), torch.full((rows,), i, dtype=torch.int64)


BATCH_BYTES = 4 * 3 * 4 + 4 * 8


def indices(recorder: OutputRecorder) -> list[int]:
    return [int(t[0]) for _, t in recorder]


def test_every_kth_batch_while_it_fits():
    rec = OutputRecorder(every=3)
    for i in range(10):
        rec.record(*batch(i))
    assert indices(rec) == [0, 3, 6, 9]
    assert rec.seen == 10 and rec.candidates == 4 and rec.nbytes == 4 * BATCH_BYTES
    for (p, t), i in zip(rec, [0, 3, 6, 9], strict=True):
        assert torch.equal(p, batch(i)[0]) and torch.equal(t, batch(i)[1])


def test_byte_budget_holds_and_order_is_kept():
    rec = OutputRecorder(max_bytes=5 * BATCH_BYTES + 7, seed=1)
    for i in range(200):
        rec.record(*batch(i))
        assert rec.nbytes <= rec.max_bytes
    kept = indices(rec)
    assert len(kept) == 5 and kept == sorted(kept) and len(set(kept)) == 5
    assert rec.nbytes == 5 * BATCH_BYTES == sum(p.nbytes + t.nbytes for p, t in rec)


def test_reservoir_keeps_each_candidate_with_equal_probability():
    # Algorithm R: each of n candidates is kept with probability k / n. 600 runs, 12 candidates, k = 3.
    counts = torch.zeros(12)
    runs = 600
    for seed in range(runs):
        rec = OutputRecorder(max_bytes=3 * BATCH_BYTES, seed=seed)
        for i in range(12):
            rec.record(*batch(i))
        counts[indices(rec)] += 1
    assert counts.sum() == 3 * runs
    # chi-square goodness of fit against the uniform 1/4 inclusion rate (each run adds 3 draws)
    p = stats.chisquare(counts.numpy(), [runs * 3 / 12] * 12).pvalue
    assert p > 1e-3, counts


def test_every_and_reservoir_compose():
    rec = OutputRecorder(max_bytes=4 * BATCH_BYTES, every=5, seed=0)
    for i in range(100):
        rec.record(*batch(i))
    kept = indices(rec)
    assert len(kept) == 4 and all(i % 5 == 0 for i in kept) and rec.candidates == 20


def test_larger_replacements_evict_until_the_budget_holds():
    rec = OutputRecorder(max_bytes=4 * BATCH_BYTES, seed=3)
    for i in range(4):
        rec.record(*batch(i))
    for i in range(4, 60):
        rec.record(*batch(i, rows=8 if i % 2 else 2))  # double or half the bytes
        assert rec.nbytes <= rec.max_bytes
    assert len(rec) >= 2


def test_copies_are_detached_compact_and_independent():
    logits = torch.randn(6, 10, requires_grad=True)
    out = logits * 2
    target = torch.arange(6)
    view = out[:, :4]  # a strided view of a larger tensor
    rec = OutputRecorder()
    rec.record(view, target)
    target[0] = 9
    (p, t), = list(rec)
    assert not p.requires_grad and p.grad_fn is None and p.is_contiguous() and p.device.type == "cpu"
    assert torch.equal(p, view.detach()) and int(t[0]) == 0
    assert p.untyped_storage().nbytes() == 6 * 4 * 4  # only the view's elements are held


def test_keep_transform_is_applied_and_counted():
    rec = OutputRecorder(keep=lambda p, t: (p[:, :1].half(), t))
    rec.record(*batch(2))
    ((p, t),) = list(rec)
    assert t.shape == (4,) and p.dtype == torch.float16 and p.shape == (4, 1)
    assert rec.nbytes == 4 * 2 + 4 * 8


def test_bad_input():
    with pytest.raises(ValueError, match="`max_bytes`"):
        OutputRecorder(max_bytes=0)
    with pytest.raises(ValueError, match="`every`"):
        OutputRecorder(every=0)
    with pytest.raises(TypeError, match="`keep`"):
        OutputRecorder(keep="half")
    with pytest.raises(ValueError, match="max_bytes"):
        OutputRecorder(max_bytes=10).record(*batch(0))
    with pytest.raises(TypeError, match="`pred`"):
        OutputRecorder().record([1.0], torch.zeros(1))
    with pytest.raises(TypeError, match="pair"):
        OutputRecorder(keep=lambda p, t: p).record(*batch(0))


def test_clear_resets():
    rec = OutputRecorder(max_bytes=2 * BATCH_BYTES)
    for i in range(5):
        rec(*batch(i))
    rec.clear()
    assert len(rec) == 0 and rec.nbytes == 0 and rec.seen == 0 and rec.capacity is None
    rec(*batch(7))
    assert indices(rec) == [7]
    assert "batches=1" in repr(rec)
