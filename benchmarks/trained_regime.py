"""The trained-model regime (issue 15, item 2): does a surrogate learned with ``outputs=`` rank real model outputs
better than cross-entropy, before and after the regime perturbations (``metricloss.learning.regimes``)?

Protocol (fixed before the runs):

- data: classification accuracy on digits and MNIST-5k (the demo's CE checkpoints, seed 0:
  ``benchmarks/common.demo_outputs``); ordinal MAE on diabetes in 5 quantile classes (the MLP and CE training of
  ``benchmarks/downstream_ordinal.py``, split seed 100, 16 checkpoints, batches of 64);
- for seeds 0, 1, 2: ``ml.learn(metric, outputs=<training-set checkpoint outputs>, seed=seed, **LEARN)``;
- measured: Spearman of the surrogate and of cross-entropy against the metric (a) on the report's held-out real-output
  batches (a quarter of the training-set output batches, never learned from) and (b) on batches of the same
  checkpoints' *test-set* outputs (8 random batches per checkpoint, generator seed 2, as the demo does);
- before / after: the same script on the starting tree and on this branch (only the public API is used)::

      cd /work/wt/base && PYTHONPATH=$PWD/src:/path/to/benchmarks python /path/to/trained_regime.py run before.json
      PYTHONPATH=$PWD/src:benchmarks python benchmarks/trained_regime.py run after.json
      python benchmarks/trained_regime.py table before.json after.json
"""

from __future__ import annotations

import json
import sys
import time

import torch
import torch.nn.functional as F

import downstream_ordinal as ordinal
import downstream_tabular as tab
import metricloss as ml
from common import demo_outputs, machine_line
from metricloss import demo
from metricloss.evaluation import agreement
from metricloss.metrics import ordinal as ordinal_metrics

try:  # this branch's verdict rule; the starting tree has none
    from metricloss.verdict import compare_ranking
except ImportError:
    compare_ranking = None

SEEDS = (0, 1, 2)
LEARN = {"steps": 300, "batches_per_step": 64, "pool_size": 1024, "validation_batches": 64, "eval_every": 25,
         "patience": 4, "gradient_probe": 0, "progress": False}


def _ce(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(pred.flatten(0, 1), target.flatten(), reduction="none").view(target.shape).mean(1)


def classification(name: str) -> dict:
    split, outputs, test_out = demo_outputs(name)
    pred, target = demo.heldout_batches(test_out, split.y_test, per_checkpoint=8, seed=2)
    values = (pred.argmax(-1) == target).double().mean(-1)
    return {"metric": "accuracy", "kwargs": {"num_classes": split.num_classes}, "outputs": outputs,
            "test": (pred, target, values)}


def ordinal_data() -> dict:
    """downstream_ordinal's CE run (split and init seed 100, as tab.train trains it), keeping at 16 epochs the
    training-set outputs (shuffled, as tab.train keeps them) and the test-set outputs."""
    x, y, x_test, y_test = ordinal.load(100)
    test_logits: list[torch.Tensor] = []
    _, train_out = tab.train(x, y, ordinal.make_model(100), ordinal.ce, ordinal.EPOCHS, ordinal.LR, ordinal.BATCH, 100,
                             checkpoints=16, on_checkpoint=lambda model: test_logits.append(model(x_test)))
    gen = torch.Generator().manual_seed(2)
    preds, targets = [], []
    for logits in test_logits:
        for _ in range(8):
            idx = torch.randperm(y_test.shape[0], generator=gen)[: ordinal.BATCH]
            preds.append(logits[idx])
            targets.append(y_test[idx])
    pred, target = torch.stack(preds), torch.stack(targets)
    values = -ordinal_metrics.mae(pred, target).double()  # oriented: higher is better
    return {"metric": "mae", "kwargs": {"task": "ordinal", "num_classes": ordinal.K, "batch_size": ordinal.BATCH},
            "outputs": train_out, "test": (pred, target, values)}


def run(path: str) -> None:
    torch.set_num_threads(1)
    rows = []
    for name, make in (("digits", lambda: classification("digits")), ("mnist_5k", lambda: classification("mnist_5k")),
                       ("diabetes-ordinal", ordinal_data)):
        data = make()
        pred, target, values = data["test"]
        ce_test = agreement(_ce(pred, target), values, True)["spearman"]
        for seed in SEEDS:
            t0 = time.perf_counter()
            sur = ml.learn(data["metric"], outputs=data["outputs"], seed=seed, **LEARN, **data["kwargs"])
            with torch.no_grad():
                test_losses = sur.batch_losses(pred, target)
                test = agreement(test_losses, values, True)["spearman"]
            test_verdict = None
            if compare_ranking is not None:  # the verdict's rule applied to the test outputs
                c = compare_ranking(test_losses, _ce(pred, target), values, "real outputs")
                test_verdict = f"{c.outcome} ({c.difference:+.3f} ± {c.standard_error:.3f})"
            rep = sur.report
            verdict = getattr(rep, "verdict", None)
            rows.append({"data": name, "seed": seed, "heldout_sur": rep.spearman, "heldout_ce": rep.baseline_spearman,
                         "heldout_batches": rep.n_validation_batches, "test_sur": test, "test_ce": ce_test,
                         "test_batches": int(pred.shape[0]), "steps": rep.steps, "seconds": time.perf_counter() - t0,
                         "verdict": verdict.outcome if verdict is not None else None, "test_verdict": test_verdict})
            print(rows[-1], flush=True)
    json.dump({"rows": rows, "machine": machine_line()}, open(path, "w"), indent=1)


def table(before: str, after: str) -> None:
    b, a = json.load(open(before)), json.load(open(after))
    print(f"before: {b['machine']}\nafter: {a['machine']}\n")
    print("| data | seed | held-out real: CE | before | after | verdict after | test outputs: CE | before | after "
          "| rule on test outputs, after (d ± SE) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for rb, ra in zip(b["rows"], a["rows"], strict=True):
        print(f"| {rb['data']} ({rb['heldout_batches']} / {rb['test_batches']} batches) | {rb['seed']} | "
              f"{rb['heldout_ce']:.4f} | {rb['heldout_sur']:.4f} | {ra['heldout_sur']:.4f} | {ra['verdict']} | "
              f"{rb['test_ce']:.4f} | {rb['test_sur']:.4f} | {ra['test_sur']:.4f} | {ra.get('test_verdict')} |")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "run":
        run(sys.argv[2])
    elif len(sys.argv) == 4 and sys.argv[1] == "table":
        table(sys.argv[2], sys.argv[3])
    else:
        raise SystemExit(__doc__)
