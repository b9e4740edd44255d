"""The hand-made losses practitioners pick instead of a learned surrogate, per task family, so that reports and
benchmarks compare with them and not only with the family's baseline loss.

One module per family holds its losses (written from their papers where no maintained package has them, from the
package otherwise, and each says which) and registers its list; :func:`for_task` returns a task's list. Optional
packages (MONAI, coral-pytorch, dlordinal, LibAUC) are extras: a reference whose package is missing is left out.
:mod:`metricloss.references.segmentation` also offers its losses as ``nn.Module`` classes (``REFERENCES``).
"""

from . import classification, ordinal, pose, segmentation, sequence, set
from .base import Reference, as_references, for_task, register_references, stacked

__all__ = ["Reference", "as_references", "classification", "for_task", "ordinal", "pose", "register_references",
           "segmentation", "sequence", "set", "stacked"]
