"""The library runs on its runtime dependencies alone; the demo's and the tests' packages are extras."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import tomllib
import torch

ROOT = Path(__file__).resolve().parents[1]
# Distributions of the extras (import names and dist-info names, lower case): absent from the simulated install.
EXTRAS_ONLY = ("scipy", "sklearn", "scikit_learn", "matplotlib", "mpl_toolkits", "mlxtend", "sacrebleu", "rapidfuzz",
               "hypothesis", "_hypothesis", "pytest", "_pytest", "xdist", "pytest_xdist", "monai",
               "coral_pytorch", "libauc", "dlordinal",
               "pytorch_lightning", "transformers", "accelerate", "mkdocs", "mkdocstrings", "griffe", "material")
#: Lightning's own package (not lightning_utilities, which torchmetrics needs): matched by exact name.
EXTRAS_EXACT = ("lightning",)

# Every module of the package imports, and a shipped surrogate trains a step, on an install without the extras.
SCRIPT = """
import importlib, pkgutil
import torch
import metricloss as ml
for info in pkgutil.walk_packages(ml.__path__, "metricloss."):
    importlib.import_module(info.name)
sur = ml.pretrained("classification-accuracy")
logits = torch.randn(16, 10, requires_grad=True)
sur(logits, torch.randint(0, 10, (16,))).backward()
assert torch.isfinite(logits.grad).all()
for extra in ("sklearn", "matplotlib", "scipy", "monai", "lightning", "transformers"):
    assert importlib.util.find_spec(extra) is None, extra
seg_logits, seg_target = torch.randn(1, 3, 8, 8), torch.randint(0, 3, (1, 8, 8))
assert 0 <= float(ml.metrics.segmentation.boundary_iou(seg_logits, seg_target)) <= 1  # needs nothing extra
try:
    ml.metrics.segmentation.hd95(seg_logits, seg_target)
except ImportError as err:
    assert "pip install 'metricloss[segmentation]'" in str(err), err
else:
    raise AssertionError("hd95 ran without MONAI")
try:
    ml.datasets.digits()
except ImportError as err:
    assert "pip install 'metricloss[demo]'" in str(err), err
else:
    raise AssertionError("digits() ran without scikit-learn")
print("ok")
"""


def _site_without_extras(folder: Path) -> Path:
    """A copy (by symbolic links) of this environment's site-packages without the extras' packages and metadata,
    so that neither imports nor installed-distribution checks (torchmetrics makes some) can find them."""
    site = Path(torch.__file__).resolve().parents[1]
    out = folder / "site"
    out.mkdir()
    for entry in site.iterdir():
        name = entry.name.lower()
        if name.split("-")[0] in EXTRAS_EXACT:
            continue
        if not name.replace("-", "_").startswith(EXTRAS_ONLY):
            (out / entry.name).symlink_to(entry)
    return out


def test_library_imports_and_trains_without_the_extras(tmp_path):
    path = os.pathsep.join([str(_site_without_extras(tmp_path)), str(ROOT / "src")])
    env = {**os.environ, "PYTHONPATH": path}
    out = subprocess.run([sys.executable, "-S", "-c", SCRIPT], capture_output=True, text=True, timeout=180,
                         cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith("ok")


def test_runtime_dependencies_exclude_the_extras():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = " ".join(project["dependencies"]).lower()
    for name in ("scipy", "scikit-learn", "matplotlib", "mlxtend", "sacrebleu", "rapidfuzz", "monai"):
        assert name not in runtime
    demo = {d.split(">")[0] for d in project["optional-dependencies"]["demo"]}
    assert {"scikit-learn", "matplotlib", "mlxtend"} <= demo
    segmentation = {d.split(">")[0] for d in project["optional-dependencies"]["segmentation"]}
    assert {"monai", "scipy"} <= segmentation and "segmentation" in project["optional-dependencies"]["dev"][0]
