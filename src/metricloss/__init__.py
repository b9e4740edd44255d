"""metricloss: turn any evaluation metric into a loss a network can train with."""

from . import anchored, metrics, nonparametric, objectives, ranking, tasks, uniloss, verdict
from ._version import __version__
from .combine import CombinedLoss, combine
from .io import load
from .learn import MeasurementError, learn
from .nonparametric import NonParametricLoss, fit_nonparametric
from .recording import OutputRecorder
from .report import Report
from .surrogate import MetricLoss, Surrogate
from .uniloss import UniLoss, build_uniloss
from .verdict import Verdict, WeakSurrogateWarning
from .zoo import pretrained

__all__ = [
    "CombinedLoss",
    "MeasurementError",
    "MetricLoss",
    "NonParametricLoss",
    "OutputRecorder",
    "Report",
    "Surrogate",
    "UniLoss",
    "Verdict",
    "WeakSurrogateWarning",
    "__version__",
    "anchored",
    "build_uniloss",
    "combine",
    "fit_nonparametric",
    "learn",
    "load",
    "metrics",
    "nonparametric",
    "objectives",
    "pretrained",
    "ranking",
    "tasks",
    "uniloss",
    "verdict",
]
