"""The classification surrogate's net at C = 1000: what a narrower or shallower per-sample MLP saves in a
forward+backward, and what it costs in held-out ranking (issue 13's 3x target).

    PYTHONPATH=$PWD/src .venv/bin/python benchmarks/classification_net_cost.py --seeds 0 1 --compile

For each MLP shape (``hidden x depth``; the shipped default is 128 x 3; ``--lr`` sets learn's learning rate):

- **ranking**: ``ml.learn("accuracy", num_classes=1000, net=..., seed=s)`` with every other setting at its default,
  each in a child process with two threads (``real_sizes_classification.learn_run``): the report's held-out Spearman
  on G_R batches, beside cross-entropy's on the same batches;
- **cost**: forward+backward of a surrogate with that net on logits ``(256, 1000)`` (the batch
  ``benchmarks/real_sizes.py`` times), against the baseline ``real_sizes.py`` compares with (cross-entropy through
  ``task.baseline``), two threads, wall clock, the calls interleaved round by round (``interleaved_ms``): the
  median over rounds of each median, and the ratio of the fastest calls. The cost does not depend on the weights, so
  the nets are freshly initialised, in this process.

``--compile`` adds the shipped surrogate under ``torch.compile`` (compile time printed; needs a C++ compiler). For
scale, the table ends with the forward+backward of a ResNet-50's classifier layer alone (``Linear(2048, 1000)`` on
``(256, 2048)`` features, its weight gradient included, as in training), the layer whose logits these losses read.
"""

from __future__ import annotations

import argparse
import time

import torch

import metricloss as ml
from common import machine_line  # benchmarks/common.py: a script's folder is on sys.path when it runs
from real_sizes_classification import backward_call, interleaved_ms, learn_run

__all__ = ["cost_rows", "ranking_rows"]

NETS = ((128, 3), (128, 2), (128, 1), (64, 3), (64, 2), (32, 2))
C, B = 1000, 256


def _config(hidden: int, depth: int) -> dict:
    """The classification task's default net (accuracy's) with another MLP shape."""
    return ml.tasks.get_task("classification", num_classes=C).default_net_config() | {"hidden": hidden, "depth": depth}


def ranking_rows(nets: tuple[tuple[int, int], ...], seeds: tuple[int, ...],
                 lr: float = 0.01) -> dict[tuple[int, int], list[dict]]:
    """Per net, one :func:`learn_run` result per seed (held-out Spearman, baseline Spearman, seconds), learned with
    Adam's ``lr`` (``learn``'s default: 0.01)."""
    return {net: [learn_run("accuracy", C, seed=s, net=_config(*net), lr=lr) for s in seeds] for net in nets}


def cost_rows(nets: tuple[tuple[int, int], ...], compile_shipped: bool, rounds: int = 7,
              repeats: int = 30) -> dict[str, float]:
    """Milliseconds (median of medians, and ``"<name> min"``: fastest call) of forward+backward on ``(B, C)`` for
    the baseline (``"ce"``), each net (``"128x3"`` ...), with ``compile_shipped`` the shipped surrogate under
    ``torch.compile`` (``"compiled"``), and ``"head"``: ``Linear(2048, C)`` then the baseline, for scale."""
    task = ml.tasks.get_task("classification", num_classes=C)
    gen = torch.Generator().manual_seed(1)
    pred, target = task.random_batches(1, B, gen)
    logits, target = pred[0].clone().requires_grad_(True), target[0]

    def baseline(p: torch.Tensor, t: torch.Tensor) -> torch.Tensor:  # one batch through the task's baseline
        return task.baseline(p.unsqueeze(0), t.unsqueeze(0)).squeeze(0)

    fns = {"ce": backward_call(baseline, logits, target)}
    for hidden, depth in nets:
        torch.manual_seed(0)
        config = _config(hidden, depth)
        fns[f"{hidden}x{depth}"] = backward_call(ml.Surrogate(task, task.build_net(**config), config), logits, target)
    if compile_shipped:
        compiled = torch.compile(ml.pretrained("classification-accuracy"))
        t0 = time.perf_counter()
        backward_call(compiled, logits, target)()
        print(f"torch.compile of the shipped surrogate: first call {time.perf_counter() - t0:.1f} s")
        fns["compiled"] = backward_call(compiled, logits, target)
    head, features = torch.nn.Linear(2048, C), torch.randn(B, 2048, generator=gen).requires_grad_(True)

    def head_step() -> None:  # as a training step runs it: gradients set to None, then forward+backward
        head.zero_grad(set_to_none=True)
        backward_call(lambda x, t: baseline(head(x), t), features, target)()

    fns["head"] = head_step
    return interleaved_ms(fns, rounds, repeats, time.perf_counter)


def _joined(runs: list[dict], key: str, spec: str) -> str:
    return " / ".join(format(r[key], spec) for r in runs)


def _net(text: str) -> tuple[int, int]:
    hidden, depth = text.split("x")
    return int(hidden), int(depth)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nets", nargs="+", type=_net, default=list(NETS), help="MLP shapes, e.g. 128x3 64x2")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--compile", action="store_true", help="add the shipped surrogate under torch.compile")
    parser.add_argument("--cost-only", action="store_true", help="time the nets; learn nothing")
    parser.add_argument("--lr", type=float, default=0.01, help="learn's Adam learning rate (its default: 0.01)")
    args = parser.parse_args()
    nets = tuple(args.nets)
    torch.set_num_threads(2)
    print(machine_line())
    ranking = {} if args.cost_only else ranking_rows(nets, tuple(args.seeds), args.lr)
    print(machine_line())
    ms = cost_rows(nets, args.compile)
    print(machine_line())
    seeds = "/".join(str(s) for s in args.seeds)
    print(f"\nC = {C}; cost on logits ({B}, {C}), 2 threads, wall; ranking: held-out Spearman, seeds {seeds}, "
          f"lr {args.lr:g}\n")
    print("| net (hidden x depth) | held-out Spearman | CE Spearman | learn s | fwd+bwd ms | ratio to CE "
          "(fastest calls) |")
    print("| --- | --- | --- | --- | --- | --- |")
    ce, ce_min = ms["ce"], ms["ce min"]
    for net in nets:
        key, runs = f"{net[0]}x{net[1]}", ranking.get(net)
        shipped = " (shipped)" if net == (128, 3) else ""
        learned = (f"{_joined(runs, 'spearman', '.3f')} | {_joined(runs, 'baseline_spearman', '.3f')} | "
                   f"{_joined(runs, 'seconds', '.0f')}") if runs else "- | - | -"
        print(f"| {key}{shipped} | {learned} | {ms[key]:.2f} | {ms[key] / ce:.2f}x "
              f"({ms[key + ' min'] / ce_min:.2f}x) |")
    if "compiled" in ms:
        print(f"| 128x3, torch.compile | (same function) | | | {ms['compiled']:.2f} | "
              f"{ms['compiled'] / ce:.2f}x ({ms['compiled min'] / ce_min:.2f}x) |")
    print(f"| cross-entropy (`task.baseline`) | | | | {ce:.2f} | 1x |")
    print(f"| for scale: `Linear(2048, {C})` + cross-entropy | | | | {ms['head']:.2f} | {ms['head'] / ce:.2f}x "
          f"({ms['head min'] / ce_min:.2f}x) |")


if __name__ == "__main__":
    main()
