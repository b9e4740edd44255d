"""metricloss: turn any evaluation metric into a loss a network can train with."""

from . import anchored, metrics, nonparametric, objectives, ranking, tasks, uniloss
from ._version import __version__
from .io import load
from .learn import learn
from .nonparametric import NonParametricLoss, fit_nonparametric
from .report import Report
from .surrogate import MetricLoss, Surrogate
from .uniloss import UniLoss, build_uniloss
from .zoo import pretrained

__all__ = [
    "MetricLoss",
    "NonParametricLoss",
    "Report",
    "Surrogate",
    "UniLoss",
    "__version__",
    "anchored",
    "build_uniloss",
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
]
