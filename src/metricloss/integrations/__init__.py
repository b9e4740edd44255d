"""One small module per training framework: recording a baseline run's outputs, and the ``combine`` pattern.

- :mod:`metricloss.integrations.lightning`: :class:`~metricloss.integrations.lightning.RecordOutputs`, a Lightning
  callback that feeds an :class:`~metricloss.OutputRecorder` (``pip install 'metricloss[lightning]'``).
- :mod:`metricloss.integrations.huggingface`: :func:`~metricloss.integrations.huggingface.compute_loss`, a
  ``compute_loss_func`` for ``transformers.Trainer`` that applies a metricloss loss and can record
  (``pip install 'metricloss[huggingface]'``).

Import the module of the framework you use (``from metricloss.integrations import lightning``); this package
imports neither, so importing one never imports the other framework. Each module imports without its framework
installed and raises an :class:`ImportError` naming the extra to install when it is used.
"""

__all__: list[str] = []
