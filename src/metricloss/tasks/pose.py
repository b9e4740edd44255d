r"""Keypoint localisation on heatmaps: ``pred`` heatmaps ``(B, K, H, W)``, ``target`` keypoints ``(B, K, 3)``.

``target[..., :2]`` holds ``x`` (column) and ``y`` (row) in heatmap pixel coordinates, ``target[..., 2]`` the
COCO visibility (0 = not labelled, 1 = labelled but hidden, 2 = visible); a keypoint counts when it is
labelled, :math:`v > 0`. On stacks the learner passes ``(N, B, K, H, W)`` and ``(N, B, K, 3)`` and every
network returns ``(N,)``. Built-in metrics: :mod:`metricloss.metrics.pose` (``"pck"``: PCK@0.05 of the
heatmap size, the default; ``"pckh"``: PCKh@0.5 with the reference length between keypoints ``reference``).

Both the baseline and the surrogates compare ``pred`` with the Gaussian target heatmaps

.. math:: g_{bk}(u, v) = \exp\!\Big(-\frac{(u - x_{bk})^2 + (v - y_{bk})^2}{2\sigma^2}\Big)

(pixel column :math:`u`, row :math:`v`; ``sigma`` = 2 px by default, as in common practice), over the
labelled keypoints :math:`\mathcal{V} = \{(b, k) : v_{bk} > 0\}` only.

**Baseline** (MSE, as in SimpleBaseline/HRNet with target weights):
:math:`\frac{1}{|\mathcal V|}\sum_{(b,k)\in\mathcal V} \frac{1}{HW}\lVert h_{bk} - g_{bk}\rVert_2^2`.

**Surrogates**, one switch ``kind`` of the net configuration:

- ``"features"`` (the default; ours): size-agnostic. For each keypoint, :func:`heatmap_features` reads seven
  resolution-independent features of its heatmap about the target (soft-argmax error and spread in units of
  :math:`\max(H, W)`, entropy gap, normalised value at the target, softmax mass within 0.05, 0.1 and 0.2 of
  :math:`\max(H, W)`; heatmaps above :data:`FEATURE_GRID` pixels a side are average-pooled first); an MLP
  (two hidden layers of ``hidden`` ELU units) and a sigmoid give :math:`\ell_{bk} \in (0, 1)`, a miss score, whose
  mean over the labelled keypoints mirrors PCK's mean of hits. It serves any K and any ``(H, W)``: the same
  configuration drawn at a larger size gives the same loss up to pixel discretisation.
- ``"embedding"`` (ReLoss appendix A.1: "embeds these two heatmaps into two hidden vectors, then computes
  the MSE loss between them"): an encoder :math:`E` shared by prediction and target,
  :math:`\ell_{bk} = \frac1D\lVert E(h_{bk}) - E(g_{bk})\rVert_2^2`. Our encoder: the flattened heatmap
  (after the spatial softmax when ``normalize="softmax"``), linear :math:`HW \to` ``hidden``, ELU, linear to
  ``embed_dim``; it is tied to ``heatmap_size``.
- ``"weighted"`` (the authors' released code, as described by the project; written by us): the flattened
  squared error :math:`e_{bk} = (h_{bk} - g_{bk})^2 \in \mathbb{R}^{HW}` goes through a tiny net
  :math:`HW \to 8 \to 1` with a sigmoid that weights that keypoint's MSE,
  :math:`\ell_{bk} = \sigma(\mathrm{MLP}(e_{bk}))\,\frac{1}{HW}\sum e_{bk}`; it is tied to ``heatmap_size``.

The batch loss is :math:`L = \log(1 + s\,\bar\ell)` with :math:`\bar\ell = \frac{1}{|\mathcal V|}
\sum_{\mathcal V}\ell_{bk}` and a learned scale :math:`s = e^{\theta}` (``squash=True``, default). The log is
monotone, so it changes no ranking; it keeps the gradient bounded, :math:`\lVert\nabla L\rVert \le` a constant,
however large the heatmaps, where the raw squared errors' gradients grow with their scale; the learned
scale lets the gradient penalty reach norm 1 (a raw MSE of heatmaps has gradients far below 1). A batch
without labelled keypoints has loss 0.

**G_R** renders heatmaps around the targets: per batch a hit rate :math:`q \sim U(0, 1)` puts each peak
within half a pixel of its keypoint with probability :math:`q` and otherwise displaces it by a random
amount (per-batch scale, log-uniform from about a pixel to half the heatmap), so PCK spreads over [0, 1]; peak
widths (0.5σ–2σ), amplitudes, background offsets, pixel noise and up to two extra peaks (sometimes higher
than the true one) vary per batch, and a random share (up to half) of the keypoints is unlabelled.
:meth:`PoseTask.relabel` does the same with real model heatmaps: targets re-made at the heatmaps' arg-max,
a random fraction of them displaced.

Example:
    >>> import torch
    >>> from metricloss.tasks.pose import PoseTask
    >>> task = PoseTask(num_keypoints=4, heatmap_size=(16, 16))
    >>> pred, target = task.random_batches(3, 8, torch.Generator().manual_seed(0))
    >>> pred.shape, target.shape
    (torch.Size([3, 8, 4, 16, 16]), torch.Size([3, 8, 4, 3]))
    >>> net = task.build_net(**task.default_net_config())
    >>> net(pred, target).shape
    torch.Size([3])
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from .._checks import check_choice, check_int, check_positive
from ..metrics.base import Metric
from ..metrics.pose import BUILTINS, _check_reference, check_pose, heatmap_argmax, pckh
from ._nets import mlp
from .base import Task, capped_steps, register_task

__all__ = ["FEATURE_RADII", "KINDS", "NUM_FEATURES", "PoseNet", "PoseTask", "gaussian_heatmaps", "heatmap_features",
           "heatmap_mse"]

KINDS = ("features", "embedding", "weighted")
NORMALIZE = ("none", "softmax")

#: Heatmap pixels in one learning step's default batches (sets :attr:`PoseTask.default_batches_per_step`).
STEP_ELEMENTS = 1 << 22
#: Heatmap pixels a run learns from in all by default (:attr:`PoseTask.default_steps`): 80 steps of COCO-size
#: batches (16 batches of 8 samples, 17 keypoints at 64×48): 32 s on 2 cores, held-out Spearman 0.854 against
#: MSE's 0.223 (``benchmarks/real_sizes.py``, docs/benchmarks.md).
LEARN_PIXELS = 80 * 16 * 8 * 17 * 64 * 48
# G_R renders at most this many heatmap pixels at once (memory stays around a few hundred MB).
_CHUNK_ELEMENTS = 1 << 22


def gaussian_heatmaps(keypoints: torch.Tensor, heatmap_size: Sequence[int], sigma: float = 2.0) -> torch.Tensor:
    r"""Gaussian target heatmaps :math:`\exp(-((u - x)^2 + (v - y)^2) / 2\sigma^2)`: ``(..., K, 3) -> (..., K, H, W)``.

    Pixel centres are at integer coordinates (column ``u``, row ``v``); visibility is ignored (callers mask it).

    Example:
        >>> g = gaussian_heatmaps(torch.tensor([[2.0, 1.0, 2.0]]), (3, 4), sigma=1.0)
        >>> g.shape, float(g[0, 1, 2])
        (torch.Size([1, 3, 4]), 1.0)
    """
    h, w = int(heatmap_size[0]), int(heatmap_size[1])
    dtype = keypoints.dtype if keypoints.is_floating_point() else torch.float32
    u = torch.arange(w, dtype=dtype, device=keypoints.device)
    v = torch.arange(h, dtype=dtype, device=keypoints.device)
    x = keypoints[..., 0, None].to(dtype)
    y = keypoints[..., 1, None].to(dtype)
    gx = torch.exp(-(u - x).square() / (2 * sigma**2))  # (..., K, W)
    gy = torch.exp(-(v - y).square() / (2 * sigma**2))  # (..., K, H)
    return gy.unsqueeze(-1) * gx.unsqueeze(-2)


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` ``(..., B, K)`` over the entries where ``mask`` holds, per batch; 0 where none does."""
    m = mask.to(values.dtype)
    return (values * m).flatten(-2).sum(-1) / m.flatten(-2).sum(-1).clamp_min(1.0)


def heatmap_mse(heatmaps: torch.Tensor, keypoints: torch.Tensor, sigma: float = 2.0) -> torch.Tensor:
    r"""The baseline: MSE to Gaussian target heatmaps over labelled keypoints, per batch.

    .. math:: \frac{1}{|\mathcal V|}\sum_{(b,k)\in\mathcal V}\frac{1}{HW}\lVert h_{bk} - g_{bk}\rVert_2^2,
              \qquad \mathcal V = \{(b, k) : v_{bk} > 0\}

    One batch (``(B, K, H, W)``, ``(B, K, 3)``) gives a scalar, a stack ``(N,)``; 0 for a batch without
    labelled keypoints. Differentiable in ``heatmaps``.

    Example:
        >>> kp = torch.tensor([[[3.0, 4.0, 2.0], [0.0, 0.0, 0.0]]])
        >>> h = gaussian_heatmaps(kp, (8, 8))
        >>> float(heatmap_mse(h, kp))  # the unlabelled keypoint's heatmap is ignored
        0.0
    """
    heatmaps, keypoints = check_pose(heatmaps, keypoints)
    sigma = check_positive(sigma, "sigma")
    g = gaussian_heatmaps(keypoints, heatmaps.shape[-2:], sigma).to(heatmaps.dtype)
    per_keypoint = (heatmaps - g).square().flatten(-2).mean(-1)
    return _masked_mean(per_keypoint, keypoints[..., 2] > 0)


#: Radii of the windows of :func:`heatmap_features`, as fractions of ``max(H, W)`` (PCK@0.05's threshold and twice,
#: four times it).
FEATURE_RADII = (0.05, 0.1, 0.2)
#: The radius of the window in which :func:`heatmap_features` reads the heatmap's value at the target.
VALUE_RADIUS = 0.025
#: Heatmaps larger than this many pixels a side are average-pooled to about this size before the features are read.
FEATURE_GRID = 32
#: Number of features per keypoint of :func:`heatmap_features`.
NUM_FEATURES = 4 + len(FEATURE_RADII)


def _window(offsets: torch.Tensor, radii: torch.Tensor) -> torch.Tensor:
    """Gaussian windows ``exp(-d^2 / 2r^2)`` of normalised offsets ``(..., L)``, one per radius: ``(..., L, J)``."""
    return torch.exp(-offsets.unsqueeze(-1).square() / (2 * radii.square()))


def heatmap_features(heatmaps: torch.Tensor, keypoints: torch.Tensor, temperature: torch.Tensor | float = 10.0,
                     grid: int | None = None, eps: float = 1e-6, spread_floor: float = 0.0) -> torch.Tensor:
    r"""Resolution-independent features of each heatmap about its target keypoint: ``(..., K, H, W)``,
    ``(..., K, 3) -> (..., K, F)`` with ``F =`` :data:`NUM_FEATURES`.

    Lengths are measured in units of :math:`S = \max(H, W)` (PCK's normaliser) and the heatmap's values relative to
    its mean :math:`\mu` and maximum :math:`a`, so the same picture drawn at another resolution gives the same features
    (up to pixel discretisation). Heatmaps larger than ``grid`` pixels a side are first average-pooled by
    :math:`f = \lfloor S / \text{grid} \rfloor` (pixel centres kept in the input's coordinates), so every size from
    ``grid`` up is read at about ``grid`` pixels a side (PCK@0.05's threshold stays above 1.6 pooled pixels) and
    the cost beyond the pooling does not grow with the resolution. With the spatial softmax
    :math:`P = \mathrm{softmax}(\beta\,h / (a - \mu))` over the pixels (``temperature`` :math:`\beta`), pixel
    centres :math:`(u, v)` and target :math:`(x, y)`:

    1. soft-argmax error :math:`\lVert \mathbb E_P[(u, v)] - (x, y)\rVert / S`;
    2. RMS distance of :math:`P` from the target, :math:`\sqrt{\mathbb E_P\lVert (u, v) - (x, y)\rVert^2} / S`;
    3. entropy gap :math:`(H(P) - \log n) / 4` over the :math:`n` pixels (0 for a flat heatmap; the log of the share
       of the image a peak covers);
    4. value at the target: the mean of :math:`(h - \mu)/(a - \mu)` in a Gaussian window of radius
       :data:`VALUE_RADIUS` S (1 when the target sits on the maximum);
    5. the mass of :math:`P` in Gaussian windows :math:`e^{-d^2/2r^2}` around the target, :math:`r/S` in
       :data:`FEATURE_RADII` (PCK@0.05's threshold, twice, four times it).

    All are differentiable in ``heatmaps``; the windows are separable, so each costs a matrix product. Visibility
    is ignored here (callers mask it). The features do not change when the heatmaps are scaled, so their gradient
    grows as the heatmaps flatten; ``spread_floor`` bounds it: :math:`a - \mu` is read as at least that much.

    Example:
        >>> kp = torch.tensor([[[10.0, 6.0, 2.0]]])  # on a 32x24 heatmap; the same scene at 3x: 96x72
        >>> small = heatmap_features(gaussian_heatmaps(kp, (24, 32), sigma=1.0), kp)
        >>> big = torch.tensor([[[31.0, 19.0, 2.0]]])  # pixel centres: 3 * (10 + 0.5) - 0.5, 3 * (6 + 0.5) - 0.5
        >>> large = heatmap_features(gaussian_heatmaps(big, (72, 96), sigma=3.0), big)
        >>> small.shape, bool((small - large).abs().max() < 0.03)  # up to pixel discretisation
        (torch.Size([1, 1, 7]), True)
    """
    h, w = heatmaps.shape[-2:]
    s = float(max(h, w))
    f = max(1, int(s) // (grid or FEATURE_GRID))
    if f > 1:
        lead = heatmaps.shape[:-2]
        heatmaps = F.avg_pool2d(heatmaps.reshape(-1, h, w), f, ceil_mode=True).reshape(*lead, -(-h // f), -(-w // f))
    ph, pw = heatmaps.shape[-2:]
    flat = heatmaps.flatten(-2)
    top, mean = flat.amax(-1, keepdim=True), flat.mean(-1, keepdim=True)
    spread = (top - mean).clamp_min(spread_floor) + eps
    logits = flat * (temperature / spread)
    log_z = torch.logsumexp(logits, -1, keepdim=True)
    prob = torch.exp(logits - log_z)
    entropy_gap = (log_z - (prob * logits).sum(-1, keepdim=True)).squeeze(-1) - math.log(ph * pw)
    prob = prob.unflatten(-1, (ph, pw))
    du = _centres(pw, f, heatmaps) / s - keypoints[..., 0, None].to(heatmaps.dtype) / s
    dv = _centres(ph, f, heatmaps) / s - keypoints[..., 1, None].to(heatmaps.dtype) / s
    pu, pv = prob.sum(-2), prob.sum(-1)  # marginals (..., K, W), (..., K, H)
    ex, ey = (pu * du).sum(-1), (pv * dv).sum(-1)
    soft_error = (ex.square() + ey.square() + eps**2).sqrt()
    rms = ((pu * du.square()).sum(-1) + (pv * dv.square()).sum(-1) + eps**2).sqrt()
    radii = torch.tensor((VALUE_RADIUS, *FEATURE_RADII), dtype=heatmaps.dtype, device=heatmaps.device)
    gu, gv = _window(du, radii), _window(dv, radii)  # (..., K, W, J), (..., K, H, J)
    mass = ((prob @ gu[..., 1:]) * gv[..., 1:]).sum(-2)  # (..., K, J - 1)
    local = ((heatmaps @ gu[..., :1]) * gv[..., :1]).sum(-2).squeeze(-1)
    local = local / (gu[..., 0].sum(-1) * gv[..., 0].sum(-1))
    value = (local - mean.squeeze(-1)) / spread.squeeze(-1)
    return torch.cat([torch.stack([soft_error, rms, entropy_gap / 4, value], dim=-1), mass], dim=-1)


def _centres(n: int, f: int, like: torch.Tensor) -> torch.Tensor:
    """Centres, in input pixels, of ``n`` pooled pixels of ``f`` input pixels each (the last may be partial)."""
    return torch.arange(n, dtype=like.dtype, device=like.device) * f + (f - 1) / 2


class PoseNet(nn.Module):
    r"""Surrogate network of ``task="pose"``: ``net(heatmaps (N, B, K, H, W), keypoints (N, B, K, 3)) -> (N,)``.

    See the module docstring for the three ``kind``\ s and the formula. ``"features"`` (the default) serves any
    number of keypoints and any heatmap size; ``"embedding"`` and ``"weighted"`` are built for one ``heatmap_size``.

    Args:
        heatmap_size: ``(H, W)`` (for ``"embedding"`` and ``"weighted"``; ``"features"`` reads it from the input).
        sigma: width of the Gaussian target heatmaps, in pixels (``"embedding"``, ``"weighted"``).
        kind: ``"features"`` (resolution-independent, ours), ``"embedding"`` (paper) or ``"weighted"``
            (authors' code).
        hidden: hidden width of the per-keypoint MLP (``"features"``, two hidden layers), of the encoder
            (``"embedding"``) or of the weighting net (``"weighted"``; 8 in the authors' code).
        embed_dim: size of the embedding (``"embedding"``).
        normalize: input normalisation of the encoder (``"embedding"``): ``"none"``, or ``"softmax"``, the
            spatial softmax :math:`HW\,\mathrm{softmax}(\tau h)` with a learned temperature :math:`\tau`.
        squash: return :math:`\log(1 + s\bar\ell)` rather than :math:`s\bar\ell`.
        init_scale: initial :math:`s`.
        init_temperature: initial :math:`\tau` (``"embedding"``) or :math:`\beta` (``"features"``), learned.
        spread_floor: ``"features"``: the least heatmap range :math:`a - \mu` the features divide by (see
            :func:`heatmap_features`), which bounds the gradient on nearly flat heatmaps.
    """

    def __init__(
        self,
        heatmap_size: Sequence[int],
        sigma: float = 2.0,
        kind: str = "features",
        hidden: int = 64,
        embed_dim: int = 32,
        normalize: str = "softmax",
        squash: bool = True,
        init_scale: float = 100.0,
        init_temperature: float = 10.0,
        spread_floor: float = 0.05,
    ) -> None:
        super().__init__()
        self.kind = check_choice(kind, "kind", KINDS)
        self.spread_floor = float(spread_floor)
        self.heatmap_size = _check_size(heatmap_size)
        self.sigma = check_positive(sigma, "sigma")
        for name, value in (("embed_dim", embed_dim), ("hidden", hidden)):
            check_int(value, name, 1)
        self.normalize = check_choice(normalize, "normalize", NORMALIZE)
        self.squash = bool(squash)
        self.log_scale = nn.Parameter(torch.tensor(math.log(check_positive(init_scale, "init_scale"))))
        h, w = self.heatmap_size
        if self.kind == "features" or (self.kind == "embedding" and self.normalize == "softmax"):
            t0 = check_positive(init_temperature, "init_temperature")
            self.log_temperature = nn.Parameter(torch.tensor(math.log(t0)))
        if self.kind == "features":
            self.head = mlp(NUM_FEATURES, hidden, 2, 1)
        elif self.kind == "embedding":
            self.encoder = nn.Sequential(nn.Linear(h * w, hidden), nn.ELU(), nn.Linear(hidden, embed_dim))
        else:
            self.weight_net = nn.Sequential(nn.Linear(h * w, hidden), nn.ELU(), nn.Linear(hidden, 1), nn.Sigmoid())

    @property
    def any_size(self) -> bool:
        """Whether this net serves any number of keypoints and any heatmap size (``kind="features"``)."""
        return self.kind == "features"

    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        if self.normalize == "softmax":
            x = (x * self.log_temperature.exp()).softmax(dim=-1) * x.shape[-1]
        return self.encoder(x)

    def keypoint_losses(self, heatmaps: torch.Tensor, keypoints: torch.Tensor) -> torch.Tensor:
        r"""Per-keypoint losses :math:`\ell_{bk}`, ``(..., B, K)`` (before masking and scaling)."""
        if self.kind == "features":
            features = heatmap_features(heatmaps, keypoints, self.log_temperature.exp(),
                                        spread_floor=self.spread_floor)
            return torch.sigmoid(self.head(features)).squeeze(-1)
        h, w = heatmaps.shape[-2:]
        if (h, w) != self.heatmap_size:
            raise ValueError(
                f"`pred`: this surrogate (kind {self.kind!r}) was built for heatmaps of size {self.heatmap_size}, got "
                f"{(h, w)}; learn one with heatmap_size={(h, w)}, or use a surrogate of kind 'features' (the default "
                "of learn(task='pose'), and ml.pretrained('pose-pck')), which serves any heatmap size")
        g = gaussian_heatmaps(keypoints, (h, w), self.sigma).to(heatmaps.dtype).flatten(-2)
        x = heatmaps.flatten(-2)
        if self.kind == "embedding":
            return (self._embed(x) - self._embed(g)).square().mean(-1)
        err = (x - g).square()  # (..., K, HW)
        return self.weight_net(err).squeeze(-1) * err.mean(-1)

    def _losses(self, heatmaps: torch.Tensor, keypoints: torch.Tensor) -> torch.Tensor:
        loss = _masked_mean(self.keypoint_losses(heatmaps, keypoints), keypoints[..., 2] > 0)
        loss = loss * self.log_scale.exp()
        return torch.log1p(loss) if self.squash else loss

    def forward(self, heatmaps: torch.Tensor, keypoints: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled() or heatmaps.dim() < 5:
            return self._losses(heatmaps, keypoints)
        # Without autograd (validation, reports) a long stack goes through in chunks: memory stays bounded.
        chunk = max(1, _CHUNK_ELEMENTS // max(heatmaps[0].numel(), 1))
        return torch.cat([self._losses(p, t) for p, t in zip(heatmaps.split(chunk), keypoints.split(chunk),
                                                              strict=True)])


def _check_size(heatmap_size: object) -> tuple[int, int]:
    if isinstance(heatmap_size, int) and not isinstance(heatmap_size, bool):
        heatmap_size = (heatmap_size, heatmap_size)
    ok = isinstance(heatmap_size, Sequence) and not isinstance(heatmap_size, str) and len(heatmap_size) == 2
    ok = ok and all(isinstance(s, int) and not isinstance(s, bool) and s >= 2 for s in heatmap_size)  # type: ignore
    if not ok:
        raise ValueError(
            f"`heatmap_size` must be (H, W), two integers >= 2 (or one for a square), got {heatmap_size!r}"
        )
    return int(heatmap_size[0]), int(heatmap_size[1])  # type: ignore[index]


@register_task
class PoseTask(Task):
    """``task="pose"``: heatmaps ``(B, K, H, W)`` and keypoints ``(B, K, 3)`` (x, y, COCO visibility).

    Args:
        num_keypoints: K, heatmaps per sample.
        heatmap_size: ``(H, W)`` of the heatmaps (an int for a square).
        sigma: width in pixels of the Gaussian target heatmaps of the baseline and the surrogates (default 2).
        reference: the two keypoints whose distance is PCKh's reference length (default the first two).
    """

    name = "pose"
    baseline_name = "MSE"
    default_metric = "pck"
    default_batch_size = 8
    #: Surrogates saved before ``kind="features"`` existed were built with the then default ``kind="embedding"``.
    stored_net_defaults: ClassVar[dict[str, Any]] = {"kind": "embedding"}

    def __init__(
        self,
        num_keypoints: int,
        heatmap_size: Sequence[int] | int,
        sigma: float = 2.0,
        reference: Sequence[int] = (0, 1),
    ) -> None:
        self.num_keypoints = check_int(num_keypoints, "num_keypoints", 1)
        self.heatmap_size = _check_size(heatmap_size)
        self.sigma = check_positive(sigma, "sigma")
        if num_keypoints >= 2:
            self.reference: tuple[int, int] | None = _check_reference(reference, num_keypoints)
        elif tuple(reference) == (0, 1):
            self.reference = None  # one keypoint: no reference length, no PCKh
        else:
            raise ValueError(f"`reference` needs num_keypoints >= 2; got num_keypoints = {num_keypoints}")

    @property
    def default_batches_per_step(self) -> int:  # type: ignore[override]
        """N: the paper's 128 batches per step for small heatmaps; fewer (at least 16) when a step's default batches
        would hold more than :data:`STEP_ELEMENTS` heatmap pixels (COCO's 17 keypoints at 64×48: 16)."""
        return max(16, min(128, STEP_ELEMENTS // self._batch_pixels(self.default_batch_size)))

    @property
    def default_steps(self) -> int:  # type: ignore[override]
        """The default step bound: all steps' default batches together hold at most :data:`LEARN_PIXELS` pixels
        (510 steps at 4 keypoints on 16×16, 80 at COCO's 17 keypoints at 64×48, the floor of 50 at 96×72; 2000 at
        most; :func:`~metricloss.tasks.base.capped_steps`)."""
        return capped_steps(self.default_batches_per_step * self._batch_pixels(self.default_batch_size), LEARN_PIXELS)

    def _batch_pixels(self, batch_size: int) -> int:
        """Heatmap pixels in one batch of ``batch_size`` samples: ``B * K * H * W``."""
        return batch_size * self.num_keypoints * self.heatmap_size[0] * self.heatmap_size[1]

    def config(self) -> dict[str, Any]:
        return {"num_keypoints": self.num_keypoints, "heatmap_size": list(self.heatmap_size), "sigma": self.sigma,
                "reference": list(self.reference) if self.reference is not None else [0, 1]}

    @property
    def metrics(self) -> dict[str, Metric]:
        # Built on demand, not stored: the metrics hold local functions, and a task held by a surrogate must pickle
        # (``torch.save(model)``).
        metrics = {"pck": BUILTINS["pck"]}
        if self.reference is not None:
            metrics["pckh"] = BUILTINS["pckh"] if self.reference == (0, 1) else pckh(0.5, self.reference)
        return metrics

    def check(self, pred: torch.Tensor, target: torch.Tensor, *, stacked: bool = False) -> None:
        # Any K and any (H, W): the default surrogate serves them all; a net built for one heatmap size (kinds
        # "embedding", "weighted") names the fix itself. ``num_keypoints`` / ``heatmap_size`` are what G_R draws.
        check_pose(pred, target, stacked=stacked)

    # -- G_R ---------------------------------------------------------------------------------------------

    def random_batches(
        self, n: int, batch_size: int, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        h, w = self.heatmap_size
        chunk = max(1, _CHUNK_ELEMENTS // self._batch_pixels(batch_size))
        parts = [self._random_chunk(min(chunk, n - i), batch_size, generator) for i in range(0, n, chunk)]
        if not parts:
            k = self.num_keypoints
            return torch.zeros(0, batch_size, k, h, w), torch.zeros(0, batch_size, k, 3)
        return torch.cat([p for p, _ in parts]), torch.cat([t for _, t in parts])

    def _random_chunk(self, n: int, b: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        k, (h, w) = self.num_keypoints, self.heatmap_size
        size = max(h, w)

        def per_batch(lo: float, hi: float, log: bool = False) -> torch.Tensor:
            u = torch.rand(n, 1, 1, generator=g)
            if log:
                return torch.exp(math.log(lo) + u * (math.log(hi) - math.log(lo)))
            return lo + u * (hi - lo)

        xy = torch.rand(n, b, k, 2, generator=g) * torch.tensor([w - 1.0, h - 1.0])
        # Visibility: a per-batch share (up to half) unlabelled, the rest hidden or visible; >= 1 labelled.
        unlabelled = torch.rand(n, b, k, generator=g) < per_batch(0.0, 0.5)
        vis = torch.where(unlabelled, 0.0, torch.where(torch.rand(n, b, k, generator=g) < 0.5, 1.0, 2.0))
        flat = vis.view(n, -1)
        flat[(flat == 0).all(dim=1), 0] = 2.0
        # Peak displacement: within half a pixel with probability q, else a per-batch scale (log-uniform).
        hit = torch.rand(n, b, k, generator=g) < per_batch(0.0, 1.0)
        far = per_batch(0.8, size, log=True) * torch.exp(0.5 * torch.randn(n, b, k, generator=g))
        radius = torch.where(hit, 0.3 * torch.rand(n, b, k, generator=g), far.clamp_min(0.5))
        angle = 2 * math.pi * torch.rand(n, b, k, generator=g)
        # A hit is centred near the target's nearest pixel, so its arg-max is that pixel (<= 0.71 px away).
        origin = torch.where(hit.unsqueeze(-1), xy.round(), xy)
        centre = origin + radius.unsqueeze(-1) * torch.stack([angle.cos(), angle.sin()], dim=-1)
        centre = torch.maximum(torch.minimum(centre, torch.tensor([w - 0.5, h - 0.5])), torch.tensor(-0.5))
        # Shape: width, amplitude, extra peaks, background, noise.
        # Above 32 px a side the widest peaks grow with the size: batches that look like smaller heatmaps upsampled,
        # so one surrogate meets every resolution's peak widths (in units of the heatmap size) while learning.
        widest = 2.0 * self.sigma * max(1.0, size / 32)
        width = per_batch(0.5 * self.sigma, widest, log=True) * torch.exp(
            0.15 * torch.randn(n, b, k, generator=g))
        amp = per_batch(0.2, 1.2) * (0.8 + 0.4 * torch.rand(n, b, k, generator=g))
        u = torch.arange(w, dtype=torch.float32)
        v = torch.arange(h, dtype=torch.float32)

        # Up to three peaks per heatmap (the displaced one and two optional extra ones, sometimes higher),
        # summed as one batched product of separable Gaussians: (.., H, 3) @ (.., 3, W).
        p_extra = 0.6 * per_batch(0.0, 1.0).square()
        where = torch.rand(n, b, k, 2, 2, generator=g) * torch.tensor([w - 1.0, h - 1.0])
        present = torch.rand(n, b, k, 2, generator=g) < p_extra[..., None]
        rel = (0.2 + 0.9 * torch.rand(n, b, k, 2, generator=g)) * present
        centres = torch.cat([centre.unsqueeze(-2), where], dim=-2)  # (n, b, k, 3, 2)
        heights = amp.unsqueeze(-1) * torch.cat([torch.ones(n, b, k, 1), rel], dim=-1)  # (n, b, k, 3)
        two_s2 = 2 * width.square()[..., None, None]
        gx = torch.exp(-(u - centres[..., 0, None]).square() / two_s2)  # (n, b, k, 3, W)
        gy = torch.exp(-(v - centres[..., 1, None]).square() / two_s2) * heights[..., None]  # (n, b, k, 3, H)
        pred = gy.transpose(-1, -2) @ gx
        noise = per_batch(0.002, 0.15, log=True)[..., None, None] * amp[..., None, None]
        pred = torch.addcmul(pred + per_batch(-0.02, 0.05)[..., None, None], noise,
                             torch.randn(n, b, k, h, w, generator=g))
        target = torch.cat([xy * (vis > 0).unsqueeze(-1), vis.unsqueeze(-1)], dim=-1)
        return pred, target

    def relabel(
        self, pred: torch.Tensor, target: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        # Targets re-made at the heatmaps' arg-max (jittered within half a pixel); a per-batch random fraction
        # displaced by a log-uniform distance. Visibility is kept.
        g = generator
        n, b, k = target.shape[:3]
        h, w = pred.shape[-2:]
        xy = heatmap_argmax(pred).to(target.dtype)
        moved = torch.rand(n, b, k, generator=g) < torch.rand(n, 1, 1, generator=g)
        lo, hi = math.log(0.8), math.log(max(h, w) / 2)
        radius = torch.where(moved, torch.exp(lo + (hi - lo) * torch.rand(n, b, k, generator=g)),
                             0.5 * torch.rand(n, b, k, generator=g)).to(target.dtype)
        angle = 2 * math.pi * torch.rand(n, b, k, generator=g).to(target.dtype)
        xy = xy + radius.unsqueeze(-1) * torch.stack([angle.cos(), angle.sin()], dim=-1)
        xy = torch.maximum(torch.minimum(xy, xy.new_tensor([w - 1.0, h - 1.0])), xy.new_tensor(0.0))
        vis = target[..., 2:]
        return pred, torch.cat([xy * (vis > 0), vis], dim=-1)

    def baseline(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return heatmap_mse(pred, target, self.sigma)

    def default_net_config(self) -> dict[str, Any]:
        # No log1p squash: the features are invariant to the heatmaps' scale, so the gradient stays bounded without
        # it, and with it the penalty drove the sigmoid scores to saturate (held-out Spearman fell from 0.85 to 0.27
        # within 80 steps at K = 17, 64x48; 0.95 and rising after 120 steps without).
        return {"kind": "features", "hidden": 32, "squash": False}

    def build_net(self, **net_config: Any) -> nn.Module:
        return PoseNet(self.heatmap_size, self.sigma, **net_config)

