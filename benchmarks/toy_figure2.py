r"""The toy experiment of ReLoss Figure 2: a randomly weighted MLP as the metric, surrogates learned from a few
hundred of its observations, and inputs optimised with each surrogate and with the metric itself.

Run (the recorded run; about 30 s on one thread of a heavily shared 2-core machine)::

    .venv/bin/python benchmarks/toy_figure2.py
    .venv/bin/python benchmarks/toy_figure2.py --seeds 1 --opt-steps 50    # a smoke run

It prints a markdown table and writes ``docs/figures/toy_figure2.png`` (``--out`` to change).

**The metric.** A fixed MLP with random weights, :math:`M(x) = w_3^\top \tanh(W_2 \tanh(W_1 x + b_1) + b_2)`,
:math:`x \in \mathbb{R}^{D}` (D = 10, 32 hidden units, weights :math:`\mathcal N(0, g^2/\text{fan-in})` with gain
:math:`g = 1.5` so that it is clearly non-linear over the unit Gaussian), averaged over the batch; higher is better
(the paper plots the same thing with lower is better; only the sign differs). Each seed draws a different metric.

**The task** (``toy-random-mlp``, defined and registered here through :func:`metricloss.tasks.register_task`):

- ``pred`` is a batch of input vectors ``(B, D)``; ``target`` is a dummy float tensor ``(B,)`` of zeros. The
  toy metric has no label, but the :class:`~metricloss.tasks.Task` interface (and every surrogate net) is
  ``(pred, target)``; a dummy keeps the surrogate a function of ``pred`` alone. Passing ``pred`` itself as the
  target was the alternative; it would hand the surrogate a second, gradient-free copy of its input, so the loss
  seen by the optimiser and the loss that was learned would differ.
- G_R draws every coordinate from :math:`\mathcal N(0, 1)`. Batches hold one point (``batch_size=1``), as in the
  paper's toy: one observation is one value :math:`M(x)`. (With larger batches the batch means would cluster
  around the metric's average and there would be little to rank.)
- The baseline loss is the squared L2 norm :math:`\lVert x\rVert^2`. There is no loss that the surrogate
  replaces here; the baseline is only the reference that :func:`metricloss.learn` reports its agreement beside,
  and a norm says nothing about a random MLP (its Spearman is near 0 - a floor, not a competitor).
- The surrogate net: a per-point ELU MLP :math:`\mathbb R^D \to \mathbb R` (64 units, 2 hidden layers, no
  absolute value), averaged over the batch.

**Surrogates**, each learned by :func:`metricloss.learn` from the same limited observations: a fixed pool of
``--pool`` (256) random points plus ``--validation`` (64) held-out points used for model selection; every metric
evaluation made inside ``learn`` is counted (column "metric calls"):

- approximation: ``objective="l2"``, ``penalty=0`` (Grabocka et al. 2019: fit the metric's value);
- approximation + GP: ``objective="l2"`` with the gradient penalty (λ = 10), to separate the objective from the
  penalty;
- correlation (ReLoss): ``objective="spearman"``, λ = 10;
- correlation + gradient: the same with ``gradient_weight=1`` (our correlated-gradients term derived from Yoa et
  al.'s abstract). Note that this term *queries the metric at new points* (8 antithetic directions per point
  per step), so it sees far more than the 320 observations of the others: its "metric calls" say how many.

**Optimising inputs.** The same 64 starting points (drawn from G_R's distribution with the seed) are optimised
for ``--opt-steps`` (200) steps by normalised gradient descent, :math:`x_b \leftarrow x_b - \eta\, g_b / \lVert
g_b\rVert` with :math:`\eta` = ``--step`` (0.05) and :math:`g_b` the gradient of the loss for point b: for each
surrogate its loss, for the oracle :math:`-M`. Normalising makes the step length the same for every method, so
the comparison is about the *direction* each loss gives, not about the scale of its gradient (which differs by
orders of magnitude between a penalised surrogate, an unpenalised fit and the metric itself). After 200 steps a
point may be 10 units from where it started, i.e. well outside the region (radius ~ √D ≈ 3.2) the surrogates
were learned on - which is where approximation and correlation can differ.

At every step the true metric of the batch is recorded. The table gives the final metric (mean ± sample std over
the seeds; each seed is a different random metric, so the std mixes metrics and starting points); the share of the
oracle's gain, :math:`(M_\text{final} - M_\text{start}) / (M^\text{oracle}_\text{final} - M_\text{start})` per
seed, which takes the metric-to-metric spread out; the best metric reached at any step; the held-out Spearman and
gradient agreement (:func:`metricloss.evaluation.gradient_agreement`, 16 directions of relative length 0.3) of each
surrogate on 512 fresh points; the metric calls made while learning; and the learning time (wall clock of
``learn``, one torch thread, on a 2-core machine shared with other people's jobs: comparable between the rows, not
what a quiet machine does). One thread is the default because these tensors are tiny: on the loaded machine, two
threads made ``learn`` about 10x slower in wall time (measured: 17-56 s against 1.2-4 s per surrogate).

The figure mirrors the paper's three panels: (a) surrogate loss against metric on the fresh points (seed 0),
(b) held-out Spearman during learning, (c) the metric against optimisation step, mean ± std over seeds.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch
from torch import nn

import metricloss as ml
from metricloss._checks import check_float_tensor
from metricloss.evaluation import agreement, gradient_agreement
from metricloss.metrics.base import Metric
from metricloss.tasks.base import Task, register_task

ROOT = Path(__file__).resolve().parents[1]


class RandomMLP(nn.Module):
    """The metric: a fixed, randomly weighted tanh MLP, one value per point ``(..., D) -> (...)``."""

    def __init__(self, dim: int, hidden: int, seed: int, gain: float = 1.5) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.w1 = torch.randn(dim, hidden, generator=g) * gain / math.sqrt(dim)
        self.b1 = torch.randn(hidden, generator=g) * 0.5
        self.w2 = torch.randn(hidden, hidden, generator=g) * gain / math.sqrt(hidden)
        self.b2 = torch.randn(hidden, generator=g) * 0.5
        self.w3 = torch.randn(hidden, generator=g) / math.sqrt(hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(x @ self.w1 + self.b1)
        h = torch.tanh(h @ self.w2 + self.b2)
        return h @ self.w3


class PointNet(nn.Module):
    """The surrogate: a per-point ELU MLP, averaged over the batch; stacks ``(N, B, D) -> (N,)``."""

    def __init__(self, dim: int, hidden: int = 64, depth: int = 2) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = dim
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), nn.ELU()]
            width = hidden
        layers.append(nn.Linear(width, 1))
        self.mlp = nn.Sequential(*layers)

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.mlp(pred).squeeze(-1).mean(dim=-1)


@register_task
class ToyMLPTask(Task):
    """``task="toy-random-mlp"``: points ``(B, D)``, a dummy float target ``(B,)``; metric: a random MLP."""

    name = "toy-random-mlp"
    baseline_name = "squared L2 norm"
    default_metric = "random_mlp"
    default_batch_size = 1
    default_pool_size = 256

    def __init__(self, dim: int = 10, hidden: int = 32, metric_seed: int = 0) -> None:
        for value, arg in ((dim, "dim"), (hidden, "hidden")):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"`{arg}` must be an integer >= 1, got {value!r}")
        self.dim, self.hidden, self.metric_seed = dim, hidden, int(metric_seed)
        self.mlp = RandomMLP(dim, hidden, self.metric_seed)

    def config(self) -> dict[str, Any]:
        return {"dim": self.dim, "hidden": self.hidden, "metric_seed": self.metric_seed}

    def value(self, pred: torch.Tensor) -> torch.Tensor:
        """The metric, differentiable: the mean of M over the last batch dimension, ``(..., B, D) -> (...)``."""
        return self.mlp(pred).mean(dim=-1)

    @property
    def metrics(self) -> dict[str, Metric]:
        return {"random_mlp": Metric("random_mlp", lambda p, t: self.value(p), True,
                                     stacked=lambda p, t: self.value(p))}

    def check(self, pred: torch.Tensor, target: torch.Tensor, *, stacked: bool = False) -> None:
        lead = 1 if stacked else 0
        pred = check_float_tensor(pred, "pred")
        target = check_float_tensor(target, "target")
        if pred.dim() != 2 + lead or pred.shape[-1] != self.dim:
            want = "(N, B, D)" if stacked else "(B, D)"
            raise ValueError(f"`pred` must be points of shape {want} with D = dim = {self.dim}, "
                             f"got {tuple(pred.shape)}")
        if target.shape != pred.shape[:-1]:
            raise ValueError(f"`target` must be a dummy tensor of shape {tuple(pred.shape[:-1])}, "
                             f"got {tuple(target.shape)}")

    def random_batches(self, n: int, batch_size: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.randn(n, batch_size, self.dim, generator=generator), torch.zeros(n, batch_size)

    def baseline(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return pred.square().sum(dim=-1).mean(dim=-1)

    def default_net_config(self) -> dict[str, Any]:
        return {"hidden": 64, "depth": 2}

    def build_net(self, **net_config: Any) -> nn.Module:
        return PointNet(self.dim, **net_config)


def counting(metric: Metric) -> tuple[Metric, list[int]]:
    """The metric with a counter of the points it is evaluated on."""
    count = [0]

    def stacked(p: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        count[0] += p.shape[0] * p.shape[1]
        return metric.stacked(p, t)

    def fn(p: torch.Tensor, t: torch.Tensor) -> Any:
        count[0] += p.shape[0]
        return metric.fn(p, t)

    return Metric(metric.name, fn, metric.higher_is_better, stacked), count


METHODS: dict[str, dict[str, Any]] = {
    "approximation (L2)": {"objective": "l2", "penalty": 0.0},
    "approximation (L2) + GP": {"objective": "l2", "penalty": 10.0},
    "correlation (ReLoss, Spearman + GP)": {"objective": "spearman", "penalty": 10.0},
    "correlation + gradient": {"objective": "spearman", "penalty": 10.0, "gradient_weight": 1.0},
}
ORACLE = "metric itself (oracle)"


def optimise(loss_fn: Any, x0: torch.Tensor, task: ToyMLPTask, steps: int, step: float) -> list[float]:
    """Normalised gradient descent on ``loss_fn(x)``; the true metric of the batch at every step (steps + 1)."""
    x = x0.clone()
    curve = [float(task.value(x))]
    for _ in range(steps):
        x.requires_grad_(True)
        (g,) = torch.autograd.grad(loss_fn(x), x)
        x = (x - step * g / g.norm(dim=-1, keepdim=True).clamp_min(1e-12)).detach()
        curve.append(float(task.value(x)))
    return curve


def run_seed(seed: int, args: argparse.Namespace) -> dict[str, Any]:
    task = ToyMLPTask(dim=args.dim, metric_seed=1000 + seed)
    base_metric = task.metrics["random_mlp"]
    gen = torch.Generator().manual_seed(seed)
    x0 = torch.randn(args.points, args.dim, generator=gen)
    dummy = torch.zeros(args.points)
    x_eval = torch.randn(512, 1, args.dim, generator=gen)
    m_eval = task.value(x_eval)
    out: dict[str, Any] = {"curves": {}, "rows": {}, "scatter": {}, "history": {}}
    for name, kw in METHODS.items():
        met, count = counting(base_metric)
        t0 = time.perf_counter()
        sur = ml.learn(met, task, batch_size=1, pool_size=args.pool, validation_batches=args.validation,
                       batches_per_step=64, steps=args.learn_steps, eval_every=25, patience=6, lr=3e-3,
                       gradient_probe=0, seed=seed, progress=False, **kw)
        seconds = time.perf_counter() - t0
        with torch.no_grad():
            losses = sur.batch_losses(x_eval, torch.zeros(512, 1))
        held = agreement(losses, m_eval, True)["spearman"]
        grad = gradient_agreement(sur.net, base_metric, x_eval[:256], torch.zeros(256, 1), directions=16, sigma=0.3,
                                  seed=seed)
        out["rows"][name] = {"seconds": seconds, "calls": count[0], "spearman": held, "grad": grad}
        out["scatter"][name] = (losses.numpy(), m_eval.numpy())
        out["history"][name] = [(h["step"], h["score"]) for h in sur.report.history]
        out["curves"][name] = optimise(lambda x, s=sur: s(x, dummy), x0, task, args.opt_steps, args.step)
    out["curves"][ORACLE] = optimise(lambda x: -task.value(x), x0, task, args.opt_steps, args.step)
    out["rows"][ORACLE] = {"seconds": 0.0, "calls": None, "spearman": 1.0,
                           "grad": gradient_agreement(lambda p, t: -task.value(p), base_metric, x_eval[:256],
                                                      torch.zeros(256, 1), directions=16, sigma=0.3, seed=seed)}
    out["start"] = out["curves"][ORACLE][0]
    return out


def mean_std(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.3f} ± {sd:.3f}"


def plot(results: list[dict[str, Any]], path: Path) -> None:
    names = [*METHODS, ORACLE]
    colors = dict(zip(names, ["tab:orange", "tab:brown", "tab:blue", "tab:green", "black"], strict=True))
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.6))
    ax = axes[0]
    for name in ("approximation (L2)", "correlation (ReLoss, Spearman + GP)"):
        losses, metric = results[0]["scatter"][name]
        ax.scatter(metric, losses, s=6, alpha=0.6, color=colors[name], label=name)
    ax.set(xlabel="metric M(x) (higher is better)", ylabel="surrogate loss",
           title="(a) loss vs metric, fresh points (seed 0)")
    ax.legend(fontsize=8)
    ax = axes[1]
    for name in METHODS:
        for i, res in enumerate(results):
            steps, scores = zip(*[(s, v) for s, v in res["history"][name] if v is not None], strict=True)
            ax.plot(steps, scores, color=colors[name], alpha=0.8, label=name if i == 0 else None)
    ax.set(xlabel="learning step", ylabel="held-out Spearman", title="(b) rank correlation while learning")
    ax.legend(fontsize=8)
    ax = axes[2]
    for name in names:
        curves = torch.tensor([res["curves"][name] for res in results])
        mean, sd = curves.mean(0), curves.std(0) if len(results) > 1 else torch.zeros(curves.shape[1])
        steps = torch.arange(curves.shape[1])
        ax.plot(steps, mean, color=colors[name], label=name)
        ax.fill_between(steps, mean - sd, mean + sd, color=colors[name], alpha=0.15)
    ax.set(xlabel="optimisation step", ylabel="metric M(x), batch mean (higher is better)",
           title=f"(c) optimising inputs ({len(results)} seeds, mean ± std)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--dim", type=int, default=10)
    parser.add_argument("--pool", type=int, default=256, help="random points the surrogates learn from")
    parser.add_argument("--validation", type=int, default=64, help="held-out points for model selection")
    parser.add_argument("--learn-steps", type=int, default=600)
    parser.add_argument("--points", type=int, default=64, help="points optimised")
    parser.add_argument("--opt-steps", type=int, default=200)
    parser.add_argument("--step", type=float, default=0.05, help="step length of normalised gradient descent")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1: the tensors are tiny; 2 threads were ~10x slower on a loaded machine)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "figures" / "toy_figure2.png")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    # Warm-up: the first learn() call pays one-off lazy imports; keep them out of the timed rows.
    ml.learn(ToyMLPTask(dim=args.dim).metrics["random_mlp"], ToyMLPTask(dim=args.dim), batch_size=1, pool_size=16,
             validation_batches=8, batches_per_step=8, steps=2, gradient_weight=1.0, progress=False)
    results = [run_seed(seed, args) for seed in range(args.seeds)]
    plot(results, args.out)

    print(f"\nToy experiment (ReLoss Fig. 2): D = {args.dim}, {args.pool} + {args.validation} observations, "
          f"{args.points} points x {args.opt_steps} steps of length {args.step}, {args.seeds} seeds\n")
    print(f"Start metric: {mean_std([r['start'] for r in results])}\n")
    print("| method | final metric (↑) | share of the oracle's gain | best-step metric (↑) | held-out Spearman "
          "| gradient agreement | metric calls (learning) | learning time (s) |")
    print("|---|---|---|---|---|---|---|---|")
    for name in [*METHODS, ORACLE]:
        final = [r["curves"][name][-1] for r in results]
        best = [max(r["curves"][name]) for r in results]
        share = [(r["curves"][name][-1] - r["start"]) / (r["curves"][ORACLE][-1] - r["start"]) for r in results]
        rows = [r["rows"][name] for r in results]
        calls = "—" if rows[0]["calls"] is None else f"{statistics.mean(x['calls'] for x in rows):.0f}"
        secs = "—" if name == ORACLE else mean_std([x["seconds"] for x in rows])
        spear = "1 (by definition)" if name == ORACLE else mean_std([x["spearman"] for x in rows])
        grad = mean_std([x["grad"] for x in rows])
        print(f"| {name} | {mean_std(final)} | {mean_std(share)} | {mean_std(best)} | {spear} | {grad} "
              f"| {calls} | {secs} |")
    approx = [r["curves"]["approximation (L2)"][-1] for r in results]
    print("\nPaired, per seed (same metric, same starting points), final metric minus approximation (L2)'s:\n")
    for name in [*list(METHODS)[1:], ORACLE]:
        diff = [r["curves"][name][-1] - a for r, a in zip(results, approx, strict=True)]
        print(f"- {name}: {mean_std(diff)}, higher on {sum(d > 0 for d in diff)}/{len(diff)} seeds")
    print(f"\nfigure: {args.out}\ntotal wall time: {time.perf_counter() - t0:.0f} s "
          f"({args.threads} torch thread(s), shared machine)")


if __name__ == "__main__":
    main()
