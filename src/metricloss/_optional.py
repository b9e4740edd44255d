"""Optional third-party packages: imported where they are needed, with an error that names the extra to install.

The library itself needs only torch, numpy, safetensors, torchmetrics and tqdm. The demo's data splits and
plots need scikit-learn, matplotlib and mlxtend (``pip install 'metricloss[demo]'``); segmentation's surface Dice,
HD95 and MONAI baseline losses need MONAI and SciPy (``pip install 'metricloss[segmentation]'``).
"""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["require"]


def require(module: str, extra: str, purpose: str) -> ModuleType:
    """Import ``module`` or raise an :class:`ImportError` that says which extra of metricloss brings it.

    Example:
        >>> require("math", "demo", "nothing").sqrt(4.0)
        2.0
    """
    try:
        return importlib.import_module(module)
    except ImportError as err:
        package = module.split(".")[0]
        raise ImportError(
            f"{purpose} needs the optional package `{package}`, which is not installed; "
            f"install it with `pip install 'metricloss[{extra}]'`"
        ) from err
