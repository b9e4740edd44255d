"""UniLoss behind the same interface as learned surrogates: learn(method="uniloss"), save and load."""

from __future__ import annotations

import pytest
import torch

import metricloss as ml
from metricloss.io import SurrogateFileError


def test_learn_method_uniloss_returns_a_measured_drop_in_loss(tmp_path):
    loss = ml.learn("accuracy", num_classes=5, method="uniloss", validation_batches=16, batch_size=32, seed=1)
    assert isinstance(loss, ml.uniloss.UniLoss)
    assert loss.report.method == "uniloss" and -1 <= loss.report.spearman <= 1
    z = torch.randn(32, 5, requires_grad=True)
    y = torch.randint(0, 5, (32,))
    out = loss(z, y)
    out.backward()
    assert out.dim() == 0 and torch.isfinite(z.grad).all()

    path = tmp_path / "uni.safetensors"
    loss.save(path)
    again = ml.load(path)
    assert isinstance(again, ml.uniloss.UniLoss)
    assert again.config() == loss.config()
    assert again.report.spearman == loss.report.spearman
    # same seed, same anchor draws: two fresh loads give the same loss value
    assert torch.equal(again(z.detach(), y), ml.load(path)(z.detach(), y))


def test_user_refactoring_needs_its_code_back_on_load(tmp_path):
    def f(scores, y):
        return scores[y == 1].unsqueeze(1) - scores[y == 0].unsqueeze(0)

    def g(bits, context):
        return bits.all(dim=-1).double().mean(dim=-1)

    ref = ml.uniloss.FunctionRefactoring(f, g, name="positives_on_top")
    loss = ml.uniloss.UniLoss(ref, seed=0)
    path = tmp_path / "mine.safetensors"
    loss.save(path)
    with pytest.raises(SurrogateFileError, match="refactoring"):
        ml.load(path)
    assert ml.load(path, refactoring=ref).config() == loss.config()


def test_unknown_method_is_a_clear_error():
    with pytest.raises(ValueError, match="`method` must be one of"):
        ml.learn("accuracy", num_classes=3, method="magic")
