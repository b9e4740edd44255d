r"""Reference losses for pose heatmaps (PCK, PCKh): the family's baseline is the heatmap MSE
(:func:`metricloss.tasks.pose.heatmap_mse`); its common alternative is the L1 distance to the same Gaussian target
heatmaps (:func:`heatmap_l1`)."""

from __future__ import annotations

import torch

from ..metrics.pose import check_pose
from ..tasks.pose import _masked_mean, gaussian_heatmaps
from .base import Reference, register_references

__all__ = ["heatmap_l1"]


def heatmap_l1(heatmaps: torch.Tensor, keypoints: torch.Tensor, sigma: float = 2.0) -> torch.Tensor:
    r"""Mean absolute difference to Gaussian target heatmaps over labelled keypoints, per batch (the L1 twin of
    :func:`~metricloss.tasks.pose.heatmap_mse`): ``(B, K, H, W)`` -> scalar, a stack ``(N,)``."""
    heatmaps, keypoints = check_pose(heatmaps, keypoints)
    g = gaussian_heatmaps(keypoints, heatmaps.shape[-2:], sigma).to(heatmaps.dtype)
    return _masked_mean((heatmaps - g).abs().flatten(-2).mean(-1), keypoints[..., 2] > 0)


@register_references("pose")
def pose_references(task: object, targets: torch.Tensor | None) -> list[Reference]:
    sigma = float(task.sigma)  # type: ignore[attr-defined]
    return [Reference("heatmap L1", "pose", "written (L1 to the baseline's Gaussian targets)",
                      lambda h, k: heatmap_l1(h, k, sigma))]
