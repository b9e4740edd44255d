"""The library runs on its runtime dependencies alone; the demo's and the tests' packages are extras."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]
EXTRAS_ONLY = ("scipy", "sklearn", "matplotlib", "mlxtend", "sacrebleu", "rapidfuzz", "hypothesis", "pytest")

# Every module of the package imports, and a shipped surrogate trains a step, with the extras made unimportable.
SCRIPT = f"""
import importlib, pkgutil, sys
for name in {EXTRAS_ONLY!r}:
    sys.modules[name] = None
import torch
import metricloss as ml
for info in pkgutil.walk_packages(ml.__path__, "metricloss."):
    importlib.import_module(info.name)
sur = ml.pretrained("classification-accuracy")
logits = torch.randn(16, 10, requires_grad=True)
sur(logits, torch.randint(0, 10, (16,))).backward()
assert torch.isfinite(logits.grad).all()
try:
    ml.datasets.digits()
except ImportError as err:
    assert "pip install 'metricloss[demo]'" in str(err), err
else:
    raise AssertionError("digits() ran without scikit-learn")
print("ok")
"""


def test_library_imports_and_trains_without_the_extras():
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith("ok")


def test_runtime_dependencies_exclude_the_extras():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = " ".join(project["dependencies"]).lower()
    for name in ("scipy", "scikit-learn", "matplotlib", "mlxtend", "sacrebleu", "rapidfuzz"):
        assert name not in runtime
    demo = {d.split(">")[0] for d in project["optional-dependencies"]["demo"]}
    assert {"scikit-learn", "matplotlib", "mlxtend"} <= demo
