"""Learn the shipped ``classification-macro-f1`` surrogate and write its model card.

Reproduce with::

    PYTHONPATH=src .venv/bin/python scripts/zoo_macro_f1.py

It learns macro F1 (the built-in ``"macro_f1"``) with the batch-level net (``BATCH_NET``) from G_R and the training-set
outputs of 25 CE checkpoints on MNIST-5k subsampled to a long tail (``benchmarks/imbalanced.py``'s data and
checkpoints). Every number in the card is measured by this script when it runs.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

import metricloss as ml
from metricloss import datasets, demo
from metricloss.evaluation import agreement
from metricloss.tasks.classification import BATCH_NET, ClassificationTask

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import imbalanced
from make_zoo import ZOO, net_losses, write_card

NAME = "classification-macro-f1"
METRIC = "macro_f1"


def _random_row(sur: ml.Surrogate, c: int, b: int, n: int = 512, seed: int = 777) -> tuple[str, str, dict, dict]:
    task = ClassificationTask(c)
    pred, target = task.random_batches(n, b, torch.Generator().manual_seed(seed))
    values = task.metrics[METRIC].evaluate(pred, target)
    return (f"{n} random batches (G_R, unseen seed), C = {c}, B = {b}", "cross-entropy",
            agreement(task.baseline(pred, target), values, True),
            agreement(net_losses(sur, pred, target), values, True))


def _output_row(sur: ml.Surrogate, where: str, split: datasets.Split, test_out: list, seed: int) -> tuple:
    pred, target = demo.heldout_batches(test_out, split.y_test, per_checkpoint=8, seed=seed)
    task = ClassificationTask(split.num_classes)
    values = task.metrics[METRIC].evaluate(pred, target)
    return (f"{pred.shape[0]} batches of 128 {where}", "cross-entropy",
            agreement(task.baseline(pred, target), values, True),
            agreement(net_losses(sur, pred, target), values, True))


def make() -> None:
    data = imbalanced.split()
    outputs, test_out = imbalanced.checkpoint_outputs(data)
    t0 = time.perf_counter()
    sur = ml.learn(METRIC, num_classes=10, outputs=outputs, seed=0, progress=False, net=BATCH_NET)
    seconds = time.perf_counter() - t0
    sur.save(ZOO / f"{NAME}.safetensors")
    digits = datasets.long_tail(datasets.digits(), ratio=10.0)
    _, digits_out = demo.checkpoint_outputs(digits, demo.SETTINGS["digits"], seed=0)
    rows = [_random_row(sur, 10, 128), _random_row(sur, 3, 32), _random_row(sur, 100, 256),
            _output_row(sur, "MNIST-5k long-tail test-set outputs of the CE checkpoints (held out)", data, test_out, 2),
            _output_row(sur, "digits long-tail (ratio 10) test-set outputs of another CE run (never seen)", digits,
                        digits_out, 3)]
    write_card(NAME, sur, seconds, rows,
               "G_R (half the batches the authors' uniform-label regime, half long-tailed labels with absent minority "
               "classes and predictions biased toward frequent classes) and G_M: training-set outputs of 25 "
               "checkpoints of an MLP trained with cross-entropy on MNIST-5k subsampled to a long tail (class shares "
               "30 % .. 1.3 %, `metricloss.datasets.long_tail(ratio=22.5)`).",
               command="PYTHONPATH=src python scripts/zoo_macro_f1.py",
               usage="import torch.nn.functional as F, metricloss as ml\n"
                     f"sur = ml.pretrained({NAME!r})\n"
                     "loss = F.cross_entropy(logits, y) + sur(logits, y)",
               note="Macro F1 averages per-class F1 over the classes present in the batch's targets or predictions "
                    "(scikit-learn's `f1_score(average=\"macro\")`). The net (`kind=\"batch\"`) reads per-sample "
                    "features and per-class statistics of the batch's soft confusion matrix pooled by means over "
                    f"classes, so it has no weight tied to C or B: `ml.pretrained({NAME!r}, num_classes=C)` accepts "
                    "other class counts. It was checked at the sizes in the rows above (C = 3, 10, 100; B = 32, 128, "
                    "256); elsewhere it is unmeasured.")


if __name__ == "__main__":
    torch.set_num_threads(2)
    make()
