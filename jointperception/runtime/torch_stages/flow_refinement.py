"""Variational refinement of the network's flow on the device: a torch replacement for OpenCV's
``VariationalRefinement`` (``classical.flow_refinement``), minimising the same energy with the
same weights (alpha, delta, gamma, iteration counts from ``classical.flow_refinement``):

    E(f) = sum_p delta Psi(|I2(p + f) - I1(p)|^2 / n_I) + gamma Psi(|grad I2(p + f) - grad I1(p)|^2 / n_G)
                 + alpha Psi(|grad u|^2 + |grad v|^2),      Psi(s^2) = sqrt(s^2 + eps^2)

with the data terms normalised by the local gradient strength (n = |gradient|^2 + zeta^2), as
OpenCV does. Each fixed-point iteration warps the second frame and its gradients by the current
flow, linearises the data terms in the increment (du, dv), freezes the robust weights there
(lagged nonlinearity) and runs SOR_ITERATIONS red-black over-relaxation sweeps (both colours of the checkerboard in parallel:
GPU-friendly where OpenCV sweeps rows). Not bit-identical to OpenCV (derivative stencils and
sweep order differ): the tests hold it to moving the flow the way OpenCV does.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from jointperception.classical.flow_refinement import (
    BRIGHTNESS_WEIGHT,
    FIXED_POINT_ITERATIONS,
    GRADIENT_WEIGHT,
    SMOOTHNESS_WEIGHT,
    SOR_ITERATIONS,
)
from jointperception.runtime.torch_stages.frames import gray

OMEGA = 1.6  # over-relaxation factor (OpenCV's default)
ZETA = 0.1  # data-term normalisation floor (OpenCV's default)
EPSILON = 0.001  # Psi's smoothing (OpenCV's default)


def _gradients(image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(1, 1, h, w) -> central differences d/dx, d/dy, edges replicated."""
    padded = F.pad(image, (1, 1, 1, 1), mode="replicate")
    return ((padded[..., 1:-1, 2:] - padded[..., 1:-1, :-2]) * 0.5,
            (padded[..., 2:, 1:-1] - padded[..., :-2, 1:-1]) * 0.5)


def _warp(image: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """(1, C, h, w) sampled bilinearly at p + flow(p), borders replicated."""
    _, _, height, width = image.shape
    ys, xs = torch.meshgrid(torch.arange(height, device=image.device, dtype=image.dtype),
                            torch.arange(width, device=image.device, dtype=image.dtype), indexing="ij")
    grid = torch.stack([(xs + flow[0, 0]) * (2.0 / max(width - 1, 1)) - 1.0,
                        (ys + flow[0, 1]) * (2.0 / max(height - 1, 1)) - 1.0], dim=-1)
    return F.grid_sample(image, grid[None], mode="bilinear", padding_mode="border", align_corners=True)


def _psi_prime(squared: torch.Tensor) -> torch.Tensor:
    return 0.5 / torch.sqrt(squared + EPSILON * EPSILON)


def _neighbours(field: torch.Tensor) -> list[torch.Tensor]:
    """(1, C, h, w) -> its right, left, down, up neighbours, edges replicated."""
    padded = F.pad(field, (1, 1, 1, 1), mode="replicate")
    return [padded[..., 1:-1, 2:], padded[..., 1:-1, :-2], padded[..., 2:, 1:-1], padded[..., :-2, 1:-1]]


def _edge_weights(smooth: torch.Tensor) -> list[torch.Tensor]:
    """Per-pixel smoothness weights (1, 1, h, w) -> the weight of each of the 4 edges (the mean of
    its two ends), 0 across the frame border (no neighbour there)."""
    _, _, height, width = smooth.shape
    weights = [0.5 * (smooth + other) for other in _neighbours(smooth)]
    cols = torch.arange(width, device=smooth.device)
    rows = torch.arange(height, device=smooth.device)[:, None]
    borders = [cols < width - 1, cols > 0, rows < height - 1, rows > 0]
    return [weight * inside for weight, inside in zip(weights, borders)]


def refine_flow(first: torch.Tensor, second: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """first, second (1, 3, h, w) RGB 0..255; flow (1, 2, h, w) pixels first -> second
    -> (1, 2, h, w) float32 refined flow (a new tensor). A non-finite flow comes back unchanged."""
    flow = flow.float().clone()
    if not bool(torch.isfinite(flow).all()):
        return flow
    image1, image2 = gray(first)[None, None], gray(second)[None, None]
    grad1_x, grad1_y = _gradients(image1)
    grad2 = torch.cat([image2, *_gradients(image2)], dim=1)  # I2, I2x, I2y
    checker = ((torch.arange(flow.shape[2], device=flow.device)[:, None]
                + torch.arange(flow.shape[3], device=flow.device)[None, :]) % 2 == 0)
    for _ in range(FIXED_POINT_ITERATIONS):
        warped = _warp(grad2, flow)
        i_x, i_y = 0.5 * (warped[:, 1:2] + grad1_x), 0.5 * (warped[:, 2:3] + grad1_y)
        i_z = warped[:, 0:1] - image1
        i_xx, i_xy = _gradients(warped[:, 1:2])
        _, i_yy = _gradients(warped[:, 2:3])
        i_xz, i_yz = warped[:, 1:2] - grad1_x, warped[:, 2:3] - grad1_y
        norm_i = 1.0 / (i_x ** 2 + i_y ** 2 + ZETA ** 2)
        norm_x = 1.0 / (i_xx ** 2 + i_xy ** 2 + ZETA ** 2)
        norm_y = 1.0 / (i_xy ** 2 + i_yy ** 2 + ZETA ** 2)
        # robust weights lagged at the start of the fixed-point iteration (increment 0), as Brox et al.
        weight_i = BRIGHTNESS_WEIGHT * norm_i * _psi_prime(norm_i * i_z ** 2)
        weight_g = GRADIENT_WEIGHT * _psi_prime(norm_x * i_xz ** 2 + norm_y * i_yz ** 2)
        grad_u, grad_v = _gradients(flow[:, 0:1]), _gradients(flow[:, 1:2])
        edges = _edge_weights(SMOOTHNESS_WEIGHT * _psi_prime(sum(g ** 2 for g in (*grad_u, *grad_v))))
        edge_sum = sum(edges)
        a11 = weight_i * i_x ** 2 + weight_g * (norm_x * i_xx ** 2 + norm_y * i_xy ** 2)
        a12 = weight_i * i_x * i_y + weight_g * (norm_x * i_xx * i_xy + norm_y * i_xy * i_yy)
        a22 = weight_i * i_y ** 2 + weight_g * (norm_x * i_xy ** 2 + norm_y * i_yy ** 2)
        b1 = weight_i * i_x * i_z + weight_g * (norm_x * i_xx * i_xz + norm_y * i_xy * i_yz)
        b2 = weight_i * i_y * i_z + weight_g * (norm_x * i_xy * i_xz + norm_y * i_yy * i_yz)
        increment = torch.zeros_like(flow)
        for _ in range(SOR_ITERATIONS):
            for colour in (checker, ~checker):
                total = flow + increment
                pull = sum(w * (n - total) for w, n in zip(edges, _neighbours(total)))  # (1, 2, h, w)
                du, dv = increment[:, 0:1], increment[:, 1:2]
                new_du = (pull[:, 0:1] + edge_sum * du - a12 * dv - b1) / (a11 + edge_sum)
                new_du = (1.0 - OMEGA) * du + OMEGA * new_du
                new_dv = (pull[:, 1:2] + edge_sum * dv - a12 * new_du - b2) / (a22 + edge_sum)
                new_dv = (1.0 - OMEGA) * dv + OMEGA * new_dv
                increment = torch.where(colour, torch.cat([new_du, new_dv], dim=1), increment)
        flow = flow + increment
    return flow
