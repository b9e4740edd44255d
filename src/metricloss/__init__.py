"""metricloss: turn any evaluation metric into a loss a network can train with."""

__version__ = "0.1.0"

from . import metrics, objectives, ranking, tasks
from .combine import CombinedLoss, combine
from .io import load
from .learn import learn
from .recording import OutputRecorder
from .report import Report
from .surrogate import Surrogate
from .zoo import pretrained

__all__ = [
    "CombinedLoss",
    "OutputRecorder",
    "Report",
    "Surrogate",
    "__version__",
    "combine",
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
