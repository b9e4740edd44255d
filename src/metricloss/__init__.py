"""metricloss: turn any evaluation metric into a loss a network can train with."""

from . import ranking

__version__ = "0.1.0"

__all__ = ["__version__", "ranking"]
