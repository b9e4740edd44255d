"""Reliability: every bad input gets a clear error, shipped surrogates stay finite on wild inputs, learning
is deterministic and resumes exactly after being killed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st
from safetensors import safe_open

import metricloss as ml
from bad_inputs import CASES
from profiles import examples

#: docs/reliability.md ("Numerical safety"): every shipped surrogate's gradient norm is bounded by construction;
#: the issue's requirement is 100 (measured maxima are about 20).
GRAD_BOUND = 100.0
FP16_MAX = float(torch.finfo(torch.float16).max)


@pytest.mark.parametrize("case", CASES, ids=[f"{c.where}: {c.what}" for c in CASES])
def test_bad_input_gets_a_clear_error(case):
    with pytest.raises(case.error, match=case.match):
        case.call()


def test_a_batch_of_one_is_fine():
    sur = ml.pretrained("classification-accuracy")
    z = torch.randn(1, 10, requires_grad=True)
    loss = sur(z, torch.tensor([3]))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(z.grad).all()


def _gradient(sur: ml.Surrogate, pred: torch.Tensor, target: torch.Tensor,
              dtype: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Loss and gradient of ``sur(pred, target)``; for bfloat16/float16, under CPU autocast with the predictions in
    that dtype, as a model under autocast emits them (float16 saturated at its largest finite value)."""
    if dtype == "float32":
        pred = pred.detach().requires_grad_(True)
        loss = sur(pred, target)
    else:
        low = getattr(torch, dtype)
        pred = pred.clamp(-FP16_MAX, FP16_MAX) if low == torch.float16 else pred
        pred = pred.detach().to(low).requires_grad_(True)
        with torch.autocast("cpu", dtype=low):
            loss = sur(pred, target)
    loss.float().backward()
    return loss, pred.grad


#: Families whose samples are whole images: their "large" batch (a segmentation batch of 32 at 64 x 64 and 11 classes
#: already holds 1.4M logits; 4096 images took 20-45 s a surrogate).
IMAGE_BATCH = {"segmentation": 32}


@pytest.mark.parametrize("name", ml.zoo.available())
@settings(max_examples=examples(25), deadline=None)
@given(log_scale=st.floats(-2, 4), batch=st.integers(1, 300), seed=st.integers(0, 2**16),
       dtype=st.sampled_from(["float32", "bfloat16", "float16"]))
@example(log_scale=-2.0, batch=1, seed=0, dtype="float32")  # issue 11: ordinal-mae's gradient norm was 1478
@example(log_scale=-2.0, batch=1, seed=197, dtype="float32")  # ordinal-mae: 6666 before the spread floor
@example(log_scale=-2.0, batch=2, seed=123, dtype="float32")  # set-f1: 6398 before the sign and rank floors
@example(log_scale=-2.0, batch=2, seed=0, dtype="bfloat16")
@example(log_scale=4.0, batch=1, seed=0, dtype="float16")
def test_shipped_surrogates_are_finite_with_bounded_gradients(name, log_scale, batch, seed, dtype):
    sur = ml.pretrained(name)
    batch = min(batch, IMAGE_BATCH[sur.task.name]) if sur.task.name in IMAGE_BATCH else batch
    pred, target = sur.task.random_batches(1, batch, torch.Generator().manual_seed(seed))
    loss, grad = _gradient(sur, pred[0] * 10.0**log_scale, target[0], dtype)
    assert torch.isfinite(loss).all()
    assert torch.isfinite(grad.float()).all()
    assert float(grad.float().norm()) < GRAD_BOUND


@pytest.mark.parametrize("name", ml.zoo.available())
def test_shipped_surrogates_are_bounded_on_batches_of_4096(name):
    # Large batches, deterministic (the property test above keeps its random batches small to stay fast).
    sur = ml.pretrained(name)
    pred, target = sur.task.random_batches(1, IMAGE_BATCH.get(sur.task.name, 4096), torch.Generator().manual_seed(4096))
    for scale, dtype in ((1e-2, "float32"), (1e4, "bfloat16")):
        loss, grad = _gradient(sur, pred[0] * scale, target[0], dtype)
        assert torch.isfinite(loss).all() and torch.isfinite(grad.float()).all()
        assert float(grad.float().norm()) < GRAD_BOUND


def test_low_precision_inputs_without_autocast():
    sur = ml.pretrained("classification-accuracy")
    z = (torch.randn(16, 10) * 5).bfloat16().requires_grad_(True)
    loss = sur(z, torch.randint(0, 10, (16,)))
    loss.backward()
    assert z.grad.dtype == torch.bfloat16 and torch.isfinite(z.grad.float()).all()


LEARN = {"num_classes": 5, "steps": 300, "batches_per_step": 24, "batch_size": 32, "pool_size": 96,
         "validation_batches": 16, "eval_every": 10, "patience": 1000, "progress": False, "seed": 11}


def _same_weights(a: ml.Surrogate, b: ml.Surrogate) -> bool:
    sa, sb = a.net.state_dict(), b.net.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_same_seed_gives_bit_identical_weights():
    kw = {**LEARN, "steps": 20}
    assert _same_weights(ml.learn("accuracy", **kw), ml.learn("accuracy", **kw))


def _checkpoint_step(path: Path) -> int:
    try:
        with safe_open(str(path), framework="pt") as fh:
            return int(json.loads(fh.metadata()["metricloss"])["step"])
    except Exception:
        return -1


def test_killed_learning_resumes_to_the_same_weights(tmp_path):
    ckpt = tmp_path / "progress.safetensors"
    script = (
        "import torch, metricloss as ml\n"
        "torch.set_num_threads(1)\n"
        f"ml.learn('accuracy', checkpoint={str(ckpt)!r}, **{LEARN!r})\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        deadline = time.monotonic() + 240
        while _checkpoint_step(ckpt) < 30:
            assert proc.poll() is None, "learning ended before it could be interrupted"
            assert time.monotonic() < deadline, "no checkpoint appeared"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    killed_at = _checkpoint_step(ckpt)
    assert 30 <= killed_at < LEARN["steps"], "the run was not interrupted mid-way"

    torch.set_num_threads(1)
    resumed = ml.learn("accuracy", checkpoint=ckpt, **LEARN)
    fresh = ml.learn("accuracy", **LEARN)
    assert _same_weights(resumed, fresh)
    assert resumed.report.best_step == fresh.report.best_step
    assert [h["step"] for h in resumed.report.history] == [h["step"] for h in fresh.report.history]


def test_a_checkpoint_of_another_run_is_refused(tmp_path):
    ckpt = tmp_path / "progress.safetensors"
    kw = {**LEARN, "steps": 10}
    ml.learn("accuracy", checkpoint=ckpt, **kw)
    with pytest.raises(ValueError, match=r"`checkpoint`: .* different learning run"):
        ml.learn("accuracy", checkpoint=ckpt, **{**kw, "seed": 12})
    ckpt.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="`checkpoint`"):
        ml.learn("accuracy", checkpoint=ckpt, **kw)
