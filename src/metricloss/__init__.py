"""metricloss: turn any evaluation metric into a loss a network can train with."""

__version__ = "0.1.0"

from . import metrics, objectives, ranking, tasks
from .io import load
from .learn import learn
from .report import Report
from .surrogate import Surrogate
from .zoo import pretrained

__all__ = [
    "Report",
    "Surrogate",
    "__version__",
    "learn",
    "load",
    "metrics",
    "nonparametric",
    "objectives",
    "pretrained",
    "ranking",
    "tasks",
    "uniloss",
]
