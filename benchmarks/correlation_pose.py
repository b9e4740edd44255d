"""Rank correlation with PCK / PCKh of the learned pose surrogates (both nets) and of MSE, on held-out batches.

For each built-in pose metric and each surrogate net (``"embedding"``: the paper's, heatmaps embedded by a
shared encoder and compared by MSE in the embedding; ``"weighted"``: the authors' code, a sigmoid-weighted
per-keypoint MSE), learns a surrogate with ``metricloss.learn`` (library defaults: 128 batches per step,
batches of 8, K = 8 keypoints on 16×16 heatmaps, σ = 2; at most ``STEPS`` steps) and measures Spearman and
Kendall between the negated loss and the metric on a *fresh* held-out set of 512 G_R batches drawn from an
unseen seed, beside the MSE baseline on the same batches. Reproduce with::

    .venv/bin/python benchmarks/correlation_pose.py            # about 10-15 minutes on 2 busy cores

Rows carry the keys ``task, metric, baseline, baseline_spearman, baseline_kendall, spearman, kendall,
learn_seconds, metric_share`` (``metric_share`` = the learner's time in the metric / its total time) and
``net``, the surrogate net.
"""

from __future__ import annotations

import sys

import torch

from heldout_correlation import HELDOUT, correlation_rows, markdown

TASK = {"num_keypoints": 8, "heatmap_size": (16, 16)}
STEPS = 300
NETS = ("embedding", "weighted")


def rows(seed: int = 0, nets: tuple[str, ...] = NETS, steps: int = STEPS) -> list[dict]:
    """One row per built-in metric and surrogate net, on ``HELDOUT`` fresh G_R batches."""
    out = []
    for kind in nets:
        out += correlation_rows("pose", TASK, {"steps": steps, "gradient_probe": 0}, seed=seed, heldout=HELDOUT,
                                net={"kind": kind})
    return out


if __name__ == "__main__":
    torch.set_num_threads(2)
    print(markdown(rows(int(sys.argv[1]) if len(sys.argv) > 1 else 0)))
