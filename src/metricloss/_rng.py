"""Seeded random draws that never touch torch's global generator (a leaf: imports nothing of the package).

Building a network draws its initial weights, and ``nn.Linear``, ``nn.Embedding`` and friends draw them from torch's
*global* CPU generator. :func:`private_rng` routes every draw made in its block, by the calling thread only, to a
private :class:`torch.Generator` instead: the global generator is neither seeded, read nor restored, so a caller's
random stream is untouched even while its other threads draw from it, and two threads that seed alike build alike
without taking turns. A private generator seeded with ``s`` yields the same numbers as the global one after
``torch.manual_seed(s)``, so a network built under ``private_rng(s)`` is the one ``torch.manual_seed(s)`` would give.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch.overrides import TorchFunctionMode

__all__ = ["private_rng"]

#: torch functions and ``Tensor`` methods that draw at random and take a keyword-only ``generator=``.
_DRAWS = frozenset({
    "rand", "randn", "randint", "randperm", "rand_like", "randn_like", "randint_like", "multinomial", "bernoulli",
    "bernoulli_", "normal", "normal_", "uniform_", "random_", "exponential_", "geometric_", "cauchy_", "log_normal_",
    "poisson", "binomial", "_standard_gamma", "_sample_dirichlet",
})
#: Functions that draw from the global generator and cannot be given another: refused inside the block.
_GLOBAL_ONLY = frozenset({
    "dropout", "dropout_", "dropout1d", "dropout2d", "dropout3d", "alpha_dropout", "alpha_dropout_",
    "feature_alpha_dropout", "feature_alpha_dropout_", "feature_dropout", "native_dropout", "rrelu", "rrelu_",
})


class _PrivateDraws(TorchFunctionMode):
    """Gives every random draw of the thread that entered it ``generator``, unless the call names its own.

    Torch function modes are thread-local, so other threads' draws still go to the global generator. Functions that
    already route a ``generator=`` argument (``nn.init.*``) get it filled in when it is ``None``.
    """

    def __init__(self, generator: torch.Generator) -> None:
        super().__init__()
        self.generator = generator

    def __torch_function__(self, func: Callable[..., Any], types: Any, args: tuple[Any, ...] = (),
                           kwargs: dict[str, Any] | None = None) -> Any:
        kwargs = {} if kwargs is None else dict(kwargs)
        name = getattr(func, "__name__", "")
        if kwargs.get("generator", 0) is None or (name in _DRAWS and "generator" not in kwargs):
            kwargs["generator"] = self.generator
        elif name in _GLOBAL_ONLY:
            raise RuntimeError(f"{name} draws from torch's global generator, which metricloss leaves to the caller; "
                               "build the network without drawing through it (dropout is inactive until training)")
        return func(*args, **kwargs)


@contextmanager
def private_rng(seed: int | None = None) -> Iterator[torch.Generator]:
    """Run the block with every random draw of this thread taken from a private CPU generator seeded with ``seed``
    (``0`` when ``None``: for networks whose weights are loaded right after), and yield that generator.

    Torch's global generator is never used: its state after the block is what the caller's own draws left, also when
    other threads draw from it meanwhile, and concurrent blocks do not wait for each other. The numbers drawn are
    those the global generator gives after ``torch.manual_seed(seed)``.

    Example:
        >>> before = torch.get_rng_state()
        >>> with private_rng(0):
        ...     a = torch.nn.Linear(3, 2).weight
        >>> with private_rng(0) as gen:
        ...     b = torch.nn.Linear(3, 2).weight
        >>> torch.equal(a, b), torch.equal(before, torch.get_rng_state())
        (True, True)
    """
    generator = torch.Generator().manual_seed(0 if seed is None else int(seed))
    with _PrivateDraws(generator):
        yield generator
