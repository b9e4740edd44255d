"""metricloss.integrations.lightning: RecordOutputs records what the model output, ml.combine inside a
LightningModule trains without Lightning's eval-mode warning, and both work under ``strategy="ddp"`` on 2 CPU
processes (checkpoint and reload included). Skipped without the ``lightning`` extra."""

from __future__ import annotations

import collections
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import metricloss as ml

pl = pytest.importorskip("lightning.pytorch", reason="needs the optional `lightning` extra: "
                         "pip install 'metricloss[lightning]'")
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

from metricloss.integrations.lightning import RecordOutputs  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
EVAL_WARNING = "module(s) in eval mode at the start of training"


class Classifier(pl.LightningModule):
    def __init__(self, lr: float = 0.1) -> None:
        super().__init__()
        self.lr = lr
        self.net = torch.nn.Linear(6, 4)
        self.loss_fn = ml.combine(F.cross_entropy, ml.pretrained("classification-accuracy"))

    def training_step(self, batch, batch_idx):
        x, y = batch
        logits = self.net(x)
        return {"loss": self.loss_fn(logits, y), "logits": logits, "target": y}

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.lr)


def _data(n: int = 32) -> TensorDataset:
    g = torch.Generator().manual_seed(0)
    return TensorDataset(torch.randn(n, 6, generator=g), torch.randint(0, 4, (n,), generator=g))


def _fit(model, callbacks=(), steps: int = 4):
    trainer = pl.Trainer(accelerator="cpu", devices=1, max_steps=steps, logger=False, enable_progress_bar=False,
                         enable_model_summary=False, enable_checkpointing=False, callbacks=list(callbacks))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit(model, DataLoader(_data(), batch_size=8, shuffle=False))
    return [str(w.message) for w in caught]


def test_record_outputs_records_each_training_batch_as_the_model_output_it():
    torch.manual_seed(0)
    model = Classifier(lr=0.0)  # the model does not move, so each recorded batch is model(x) of that batch
    recorder = ml.OutputRecorder(max_bytes=2**20)
    _fit(model, [RecordOutputs(recorder)])
    data = _data()
    assert len(recorder) == 4 and recorder.seen == 4
    for i, (pred, target) in enumerate(recorder):
        x, y = data[i * 8:(i + 1) * 8]
        assert torch.equal(target, y)
        with torch.no_grad():
            assert torch.allclose(pred, model.net(x))
        assert not pred.requires_grad


def test_combined_loss_in_a_lightning_module_raises_no_eval_mode_warning():
    torch.manual_seed(0)
    model = Classifier()
    assert not any(EVAL_WARNING in m for m in _fit(model))
    assert model.loss_fn.step == 4 and model.loss_fn.weight > 0  # the balancing ran in every training step
    # the control: a module left in eval mode is what Lightning warns about (so the check above can fail)
    model = Classifier()
    model.loss_fn.surrogate.eval()
    assert any(EVAL_WARNING in m for m in _fit(model))


def test_record_outputs_names_what_training_step_must_return():
    callback = RecordOutputs(ml.OutputRecorder(max_bytes=2**20))
    with pytest.raises(TypeError, match=r"training_step to return a dict.*returned Tensor.*get="):
        callback.on_train_batch_end(None, None, torch.tensor(1.0), None, 0)
    with pytest.raises(KeyError, match=r"'logits' or 'preds' or 'pred'.*'target'.*\['loss', 'out'\]"):
        callback.on_train_batch_end(None, None, {"loss": 1.0, "out": torch.zeros(2, 3)}, None, 0)
    with pytest.raises(TypeError, match=r"`recorder` must be a metricloss\.OutputRecorder"):
        RecordOutputs([])
    # other keys, or a getter that reads the targets from the batch
    named = RecordOutputs(ml.OutputRecorder(max_bytes=2**20), pred="scores", target="y")
    named.on_train_batch_end(None, None, {"scores": torch.zeros(2, 3), "y": torch.zeros(2).long()}, None, 0)
    getter = RecordOutputs(ml.OutputRecorder(max_bytes=2**20), get=lambda out, batch: (out["logits"], batch[1]))
    getter.on_train_batch_end(None, None, {"logits": torch.zeros(2, 3)}, (None, torch.ones(2).long()), 0)
    assert [t.tolist() for _, t in getter.recorder] == [[1, 1]] and len(named.recorder) == 1


def test_ddp_on_two_cpu_processes_records_trains_checkpoints_and_reloads(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    run = subprocess.run([sys.executable, str(ROOT / "tests" / "lightning_ddp.py"), str(tmp_path)], env=env,
                         capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    for r in ranks:
        assert not any(EVAL_WARNING in m for m in r["warnings"])
        assert r["pred_shapes"] == [[8, 4]] * 4 and r["step"] == 4 and r["loss_weight"] > 0
        # the checkpoint holds the model and the combined loss's balancing state
        assert r["reloaded_weight"] == r["weight"] and r["reloaded_step"] == 4
        assert r["reloaded_loss_weight"] == r["loss_weight"]
    # DDP kept the replicas identical, and combine used one weight on both ranks
    assert ranks[0]["weight"] == ranks[1]["weight"] and ranks[0]["loss_weight"] == ranks[1]["loss_weight"]
    # each rank recorded its own shard: 4 steps x 8 samples x 2 ranks is the 64-sample data set once
    recorded = collections.Counter(t for r in ranks for batch in r["targets"] for t in batch)
    assert recorded == collections.Counter((torch.arange(64) % 4).tolist())
