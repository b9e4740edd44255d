"""Hand-made losses practitioners use for each family's metrics, one module per family: the baselines a learned
surrogate is compared with (``benchmarks/``, reports). Those from maintained packages are optional extras.

- :mod:`metricloss.references.segmentation`: soft Dice and Lovász-softmax (written here), MONAI's Dice, Dice + CE,
  focal and Tversky losses (``pip install 'metricloss[segmentation]'``).
"""

from . import segmentation

__all__ = ["segmentation"]
