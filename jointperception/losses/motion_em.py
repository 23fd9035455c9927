"""Parametric motion fit and the EM motion-segmentation loss (docs/design.md, equations: EM).

Site i at normalised coordinates (x, y) in [-1, 1]; design vector P(i) = [1, x, y] (affine) or
[1, x, y, x², xy, y²] (quadratic), one per flow component: f_θk(i) = (P(i)·θ_k^u, P(i)·θ_k^v).
M-step (no gradient): θ_k = argmin_θ Σ_i g_ik ρ(f(i) − f_θ(i)) + ridge, weighted least squares in
closed form (torch.linalg.solve), ρ = L1 through IRLS started from the L2 solution.
Loss: L = (Σ_i Σ_k g_ik ρ(f(i) − f_θk(i)) − β Σ_i H(g_i)) / (H·W) + γ H(ḡ), H(g_i) = −Σ_k g_ik log g_ik,
ḡ_k = mean_i g_ik. The γ term (ours, γ = 0 is the paper's loss) prefers few layers: with K above the
number of motions, two layers with one motion cost nothing in the data term, and −β H(g_i) even
rewards splitting a motion between them; γ H(ḡ) makes merging them strictly better.
"""
from __future__ import annotations

import functools

import numpy as np
import torch

from jointperception.classical.motion_model import motion_design

MAX_FLOW = 1e4  # px: flow is clamped here; non-finite vectors become 0 with zero fit weight
RIDGE = 1e-6  # Tikhonov weight relative to the layer's total weight: keeps tiny layers solvable, small
#                enough that the loss stays invariant to an added global quadratic flow
RIDGE_FLOOR = 1e-6  # absolute ridge: an empty layer gets θ = 0
IRLS_EPS = 1e-2  # px: |r| floor of the L1 reweighting w = g / max(|r|, eps)
FIT_STRIDE = 2  # the M-step fits θ on every 2nd row and column (the residual uses every site)


def sanitize_flow(flow: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """flow (B, 2, H, W) -> (finite flow clamped to ±MAX_FLOW, valid (B, 1, H, W) float in {0, 1}).

    A site is valid when both components are finite; invalid sites get flow 0.
    """
    valid = torch.isfinite(flow).all(dim=1, keepdim=True)
    clean = torch.where(valid, flow.clamp(-MAX_FLOW, MAX_FLOW), torch.zeros_like(flow))
    return clean, valid.to(flow.dtype)


@functools.lru_cache(maxsize=16)
def _design_cached(height: int, width: int, model: str, device: str, dtype: torch.dtype) -> torch.Tensor:
    rows, cols = np.mgrid[:height, :width]
    design = motion_design(cols.ravel(), rows.ravel(), height, width, model)  # raster order
    return torch.from_numpy(design).to(device=device, dtype=dtype)


def design_matrix(height: int, width: int, model: str = "quadratic", device: torch.device | str = "cpu",
                  dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """P: (H·W, D) rows P(i) in raster order, D = 3 (affine) or 6 (quadratic). Buffered per size;
    the returned tensor is shared, never write into it."""
    return _design_cached(int(height), int(width), model, str(torch.device(device)), dtype)


def weighted_fit(design: torch.Tensor, flow: torch.Tensor, weights: torch.Tensor, ridge: float = RIDGE) -> torch.Tensor:
    """Weighted ridge least squares per layer and component (closed form, no gradient).

    design: (N, D); flow: (B, 2, N); weights: (B, K, N) or (B, K, 2, N) (one per component), >= 0.
    θ_kc = (Pᵀ W_kc P + λ_kc I)⁻¹ Pᵀ W_kc f_c, λ_kc = ridge Σ_i w_ikc + RIDGE_FLOOR.
    Returns θ: (B, K, 2, D). Accumulated and solved in float64 (torch.linalg.solve; SPD by the ridge).
    """
    with torch.no_grad():
        p = design.double()
        num_sites, dim = p.shape
        w = weights.double()
        if w.dim() == 3:
            w = w.unsqueeze(2).expand(-1, -1, 2, -1)
        outer = (p.unsqueeze(2) * p.unsqueeze(1)).reshape(num_sites, dim * dim)  # P(i) P(i)ᵀ, flattened
        normal = (w @ outer).reshape(*w.shape[:3], dim, dim)  # Pᵀ W P: (B, K, 2, D, D)
        rhs = (w * flow.double().unsqueeze(1)) @ p  # Pᵀ W f: (B, K, 2, D)
        damping = ridge * w.sum(dim=-1) + RIDGE_FLOOR  # (B, K, 2)
        eye = torch.eye(dim, dtype=torch.float64, device=p.device)
        theta = torch.linalg.solve(normal + damping[..., None, None] * eye, rhs.unsqueeze(-1)).squeeze(-1)
    return theta.to(flow.dtype)


def subsample_sites(values: torch.Tensor, height: int, width: int, stride: int) -> torch.Tensor:
    """Every ``stride``-th row and column of raster-ordered sites: (..., H·W) -> (..., h·w)."""
    if stride == 1:
        return values
    grid = values.reshape(*values.shape[:-1], height, width)[..., ::stride, ::stride]
    return grid.reshape(*values.shape[:-1], -1)


def parametric_flow(design: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """f_θk(i) = (P(i)·θ_k^u, P(i)·θ_k^v): design (N, D), theta (B, K, 2, D) -> (B, K, 2, N)."""
    return torch.einsum("nd,bkcd->bkcn", design, theta)


def fit_layers_l1(design: torch.Tensor, flow: torch.Tensor, weights: torch.Tensor, iterations: int = 3,
                  ridge: float = RIDGE) -> torch.Tensor:
    """θ_k = argmin Σ_i g_ik |f(i) − f_θ(i)|_1 by IRLS from the L2 fit.

    flow: (B, 2, N); weights g: (B, K, N) -> θ (B, K, 2, D). Each IRLS step refits with
    w_ikc = g_ik / max(|r_ikc|, IRLS_EPS), r = f − f_θ (per component, ρ is separable).
    """
    with torch.no_grad():
        theta = weighted_fit(design, flow, weights, ridge)
        for _ in range(iterations):
            residual = (flow.unsqueeze(1) - parametric_flow(design, theta)).abs()  # (B, K, 2, N)
            theta = weighted_fit(design, flow, weights.unsqueeze(2) / residual.clamp_min(IRLS_EPS), ridge)
    return theta


def em_loss(logits: torch.Tensor, flow: torch.Tensor, model: str = "quadratic", entropy_weight: float = 0.01,
            irls_iterations: int = 3, mass_weight: float = 0.0) -> tuple[torch.Tensor, dict[str, float]]:
    """EM loss of layer logits on a flow field.

    logits: (B, K, H, W) network output; flow: (B, 2, H, W) pixels (sanitised here; invalid sites
    carry no loss). θ_k is fitted to the detached g = softmax(logits) (M-step), then
    L = mean_b [(Σ_i v_i Σ_k g_ik |f(i) − f_θk(i)|_1 − β Σ_i v_i H(g_i)) / (H·W) + γ H(ḡ_b)],
    ḡ_bk = Σ_i v_i g_ik / Σ_i v_i (γ = ``mass_weight``).
    Returns (loss, {"loss", "residual", "entropy", "layer_entropy"}) with residual in px per site.
    """
    batch, _, height, width = logits.shape
    flow, valid = sanitize_flow(flow.to(logits.dtype))
    design = design_matrix(height, width, model, logits.device, logits.dtype)
    log_g = torch.log_softmax(logits, dim=1).flatten(2)  # (B, K, N)
    g = log_g.exp()
    f = flow.flatten(2)  # (B, 2, N)
    v = valid.flatten(2)  # (B, 1, N)
    # M-step on every FIT_STRIDE-th row and column: θ has 12 unknowns, a quarter of the sites suffice
    fit_sites = functools.partial(subsample_sites, height=height, width=width, stride=FIT_STRIDE)
    theta = fit_layers_l1(fit_sites(design.T).T, fit_sites(f), fit_sites(g.detach() * v), irls_iterations)
    residual = (f.unsqueeze(1) - parametric_flow(design, theta)).abs().sum(dim=2)  # ρ = |du| + |dv|: (B, K, N)
    data_term = (g * residual * v).sum(dim=(1, 2))
    entropy = -(g * log_g).sum(dim=1, keepdim=True)  # H(g_i): (B, 1, N)
    entropy_term = (entropy * v).sum(dim=(1, 2))
    sites = float(height * width)
    mass = (g * v).sum(dim=2) / v.sum(dim=2).clamp_min(1.0)  # ḡ_bk: (B, K)
    layer_entropy = -(mass * mass.clamp_min(1e-12).log()).sum(dim=1)  # H(ḡ_b): (B,)
    loss = ((data_term - entropy_weight * entropy_term) / sites + mass_weight * layer_entropy).mean()
    metrics = {
        "loss": float(loss.detach()),
        "residual": float(data_term.detach().mean() / sites),
        "entropy": float(entropy_term.detach().mean() / sites),
        "layer_entropy": float(layer_entropy.detach().mean()),
    }
    return loss, metrics


def random_quadratic_flow(batch: int, height: int, width: int, generator: torch.Generator, scale: float = 4.0,
                          dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """A random global quadratic flow (B, 2, H, W), pixels: θ ~ U(−1, 1) · scale · (1, ½, ½, ¼, ¼, ¼).

    Adding it to a training flow leaves the EM loss unchanged in law (every layer's model absorbs
    it); the network learns to be invariant to it (docs/design.md, equations: EM).
    """
    design = design_matrix(height, width, "quadratic", "cpu", dtype)
    decay = torch.tensor([1.0, 0.5, 0.5, 0.25, 0.25, 0.25], dtype=dtype)
    theta = (torch.rand(batch, 1, 2, 6, generator=generator, dtype=dtype) * 2.0 - 1.0) * scale * decay
    return parametric_flow(design, theta)[:, 0].reshape(batch, 2, height, width)
