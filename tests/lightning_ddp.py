"""Run by tests/test_integration_lightning.py: a Lightning DDP fit on 2 CPU processes with ``ml.combine`` inside the
LightningModule and ``RecordOutputs`` recording each rank's batches; each rank writes what the test checks.

Usage: ``python tests/lightning_ddp.py OUT_DIR`` (Lightning's ``ddp`` launcher re-runs this script for rank 1).
"""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

import metricloss as ml
from metricloss.integrations.lightning import RecordOutputs

# pytest --doctest-modules imports every module under tests/: without the extra this one is skipped there
pl = pytest.importorskip("lightning.pytorch", reason="needs the optional `lightning` extra")

N, D, C = 64, 6, 4


class Classifier(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Linear(D, C)
        self.loss_fn = ml.combine(F.cross_entropy, ml.pretrained("classification-accuracy"))

    def training_step(self, batch, batch_idx):
        x, y = batch
        logits = self.net(x)
        return {"loss": self.loss_fn(logits, y), "logits": logits, "target": y}

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def main(out: Path) -> None:
    g = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(N, D, generator=g), torch.arange(N) % C)
    torch.manual_seed(0)
    model = Classifier()
    recorder = ml.OutputRecorder(max_bytes=2**20)
    trainer = pl.Trainer(strategy="ddp", devices=2, accelerator="cpu", max_steps=4, logger=False,
                         enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
                         callbacks=[RecordOutputs(recorder)])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit(model, DataLoader(data, batch_size=8, shuffle=False))
    rank = trainer.global_rank
    trainer.save_checkpoint(out / "last.ckpt")  # every rank must call it; rank 0 writes the file
    trainer.strategy.barrier()
    reloaded = Classifier.load_from_checkpoint(out / "last.ckpt")
    (out / f"rank{rank}.json").write_text(json.dumps({
        "warnings": [str(w.message) for w in caught],
        "targets": [t.tolist() for _, t in recorder],
        "pred_shapes": [list(p.shape) for p, _ in recorder],
        "weight": model.net.weight.tolist(),
        "step": model.loss_fn.step,
        "loss_weight": model.loss_fn.weight,
        "loss_fn_training": model.loss_fn.training,
        "reloaded_weight": reloaded.net.weight.tolist(),
        "reloaded_step": reloaded.loss_fn.step,
        "reloaded_loss_weight": reloaded.loss_fn.weight,
    }))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
