"""The integration modules import without their frameworks, and using one without it names the extra to install."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHECK = """
import sys
for name in ("lightning", "lightning.pytorch", "transformers", "accelerate"):
    sys.modules[name] = None  # as if not installed: importing them raises ImportError
import torch.nn.functional as F
import metricloss as ml
from metricloss.integrations import huggingface, lightning
try:
    lightning.RecordOutputs(ml.OutputRecorder())
except ImportError as err:
    assert "pip install 'metricloss[lightning]'" in str(err), err
else:
    raise AssertionError("RecordOutputs without Lightning did not raise")
fn = huggingface.compute_loss(F.cross_entropy)  # needs no transformers
print(float(fn({"logits": torch.zeros(2, 3)}, torch.zeros(2, dtype=torch.long))))
"""


def test_integration_modules_import_without_their_frameworks():
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    run = subprocess.run([sys.executable, "-c", "import torch\n" + CHECK], env=env, capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    assert abs(float(run.stdout.strip()) - 1.0986122886681098) < 1e-6  # log 3: CE of uniform logits over 3 classes
