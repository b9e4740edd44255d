"""Before/after check of the anchored losses (UniLoss, non-parametric) and of save/load, through the public API only.

Prints one line per quantity (losses of successive seeded calls, SHA-256 of their gradients, stacked losses, the
builders' reports, save/load round trips), so the output of two checkouts can be compared with ``diff``:

    cd /work/wt/base && PYTHONPATH=$PWD/src python /path/to/anchored_check.py > before.txt
    cd /work/wt/i12 && PYTHONPATH=$PWD/src python benchmarks/anchored_check.py > after.txt
    diff before.txt after.txt

``--write DIR`` also saves a UniLoss, a non-parametric loss and a small learned surrogate into DIR; ``--read DIR``
loads such files (e.g. written by the previous version) and prints their losses on fixed batches.
"""

from __future__ import annotations

import argparse
import hashlib
import warnings
from pathlib import Path

import torch

import metricloss as ml
from metricloss import uniloss
from metricloss.nonparametric import NonParametricLoss, fit_nonparametric

warnings.simplefilter("ignore", DeprecationWarning)
torch.set_num_threads(1)


def digest(t: torch.Tensor) -> str:
    return hashlib.sha256(t.detach().double().contiguous().numpy().tobytes()).hexdigest()[:16]


def batches() -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    hm = torch.randn(2, 3, 12, 12, generator=g)
    kp = torch.cat([torch.randint(0, 12, (2, 3, 2), generator=g).double(), torch.full((2, 3, 1), 2.0,
                                                                                     dtype=torch.float64)], -1)
    return {
        "accuracy": (torch.randn(32, 10, generator=g), torch.randint(0, 10, (32,), generator=g)),
        "average_precision": (torch.randn(48, generator=g), (torch.rand(48, generator=g) < 0.3).long()),
        "pck": (hm, kp.float()),
    }


def losses(label: str, loss_fn: torch.nn.Module, pred: torch.Tensor, target: torch.Tensor) -> None:
    for call in range(3):
        x = pred.clone().requires_grad_(True)
        value = loss_fn(x, target)
        value.backward()
        print(f"{label} call{call}: {value.item()!r} grad {digest(x.grad)}")


def modules() -> None:
    data = batches()
    for name, (pred, target) in data.items():
        for opts in ({}, {"fraction": 0.3, "temperature": 0.5, "power": 2.0}):
            losses(f"UniLoss {name} {opts}", uniloss.build(name, seed=7, **opts), pred, target)
        for opts in ({}, {"temperature": 0.3, "bandwidth": 0.05, "scale": 3.0, "fraction": 0.5}):
            losses(f"NonParametric {name} {opts}", NonParametricLoss(name, seed=7, **opts), pred, target)
        g = torch.Generator().manual_seed(5)
        print(f"uniloss() {name}: {uniloss.uniloss(pred, target, uniloss.REFACTORINGS[name](), generator=g).item()!r}")
    pred, target = data["accuracy"]
    stack_p, stack_t = pred.view(4, 8, 10), target.view(4, 8)
    for cls in (uniloss.UniLoss, NonParametricLoss):
        with torch.no_grad():
            print(f"{cls.__name__} batch_losses: {cls('accuracy', seed=1).batch_losses(stack_p, stack_t).tolist()!r}")


def report_line(label: str, loss_fn: torch.nn.Module) -> None:
    r = loss_fn.report
    print(f"{label}: spearman {r.spearman!r} kendall {r.kendall!r} base {r.baseline_spearman!r} "
          f"{r.baseline_kendall!r} grad {r.gradient_agreement!r} {r.baseline_gradient_agreement!r} "
          f"n {r.n_validation_batches} bs {r.batch_size} validation {r.validation!r} task {r.task} {r.task_config}")
    print(f"{label} config: {loss_fn.config()!r}")
    settings = {k: v for k, v in r.settings.items()}
    print(f"{label} settings: {settings!r}")


def builders() -> None:
    report_line("learn_uniloss accuracy", uniloss.learn_uniloss("accuracy", num_classes=10, validation_batches=48,
                                                                batch_size=64, seed=0))
    report_line("learn_uniloss ap", uniloss.learn_uniloss("average_precision", "set", validation_batches=32,
                                                          batch_size=32, seed=2, uniloss={"fraction": 0.5}))
    g = torch.Generator().manual_seed(3)
    outputs = [(torch.randn(64, 5, generator=g) * 2, torch.randint(0, 5, (64,), generator=g)) for _ in range(8)]
    report_line("learn_uniloss outputs", uniloss.learn_uniloss("accuracy", num_classes=5, outputs=outputs,
                                                               batch_size=32, validation_batches=10, seed=1))
    grid = {"temperature": [0.3, 3.0], "bandwidth": [0.03, 1.0]}
    np_loss = fit_nonparametric("accuracy", num_classes=6, grid=grid, seed=4, validation_batches=10, batch_size=24,
                                directions=6, sigma=0.3)
    report_line("fit_nonparametric", np_loss)
    report_line("fit_nonparametric outputs", fit_nonparametric(
        "accuracy", num_classes=5, outputs=outputs, batch_size=32, validation_batches=12, seed=0,
        grid={"temperature": [1.0], "bandwidth": [0.1, 0.3]}, directions=4))


def write(folder: Path) -> None:
    uni = uniloss.learn_uniloss("accuracy", num_classes=10, validation_batches=16, batch_size=32, seed=0)
    uni.save(folder / "uniloss.safetensors")
    uniloss.build("pck", alpha=0.1, seed=3, fraction=0.5).save(folder / "uniloss-noreport.safetensors")
    fit_nonparametric("accuracy", num_classes=10, grid={"temperature": [0.3], "bandwidth": [0.1]}, seed=0,
                      validation_batches=8, batch_size=32, directions=4).save(folder / "nonparametric.safetensors")
    sur = ml.learn("accuracy", num_classes=10, steps=3, batches_per_step=8, validation_batches=8, pool_size=16,
                   batch_size=16, net={"hidden": 8, "depth": 2}, eval_every=1, progress=False, gradient_probe=0)
    sur.save(folder / "surrogate.safetensors")


def read(folder: Path) -> None:
    data = batches()
    for path in sorted(folder.glob("*.safetensors")):
        loss_fn = ml.load(path)
        name = "pck" if "noreport" in path.name else "accuracy"
        pred, target = data[name]
        torch.manual_seed(0)
        config = loss_fn.net_config if isinstance(loss_fn, ml.Surrogate) else loss_fn.config()
        print(f"{path.name}: {type(loss_fn).__name__} {config!r}")
        print(f"{path.name} report: {None if loss_fn.report is None else loss_fn.report.spearman!r}")
        losses(path.name, loss_fn, pred, target)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", type=Path)
    parser.add_argument("--read", type=Path)
    args = parser.parse_args()
    if args.write:
        write(args.write)
        return
    if args.read:
        read(args.read)
        return
    modules()
    builders()


if __name__ == "__main__":
    main()
