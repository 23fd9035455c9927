"""Pre-alignment on the device: ``classical.prealign.dominant_translation`` in torch, without a
host sync (the shift stays a tensor, so the stage can live inside a CUDA graph).

Phase correlation as OpenCV computes it: Hann-windowed grey frames, cross-power spectrum
F1 conj(F2) / |F1 conj(F2)|, inverse FFT, shifted to the centre, the peak refined by the
weighted centroid of its 5x5 neighbourhood, t = centre - centroid, rounded to whole pixels; then
the same majority check (median grey difference on the interior, from a 256-bin histogram).
OpenCV zero-pads to its optimal DFT size; torch transforms the frame as it is, so for sides that
are not 5-smooth the peak can differ (network sizes are multiples of 16 or 32: 5-smooth).
"""
from __future__ import annotations

from functools import lru_cache

import torch

from jointperception.runtime.torch_stages.frames import gray

CENTROID_RADIUS = 2  # 5x5 neighbourhood, as cv::phaseCorrelate
SPECTRUM_EPS = 1.1920929e-07  # FLT_EPSILON, keeps |F1 conj(F2)| away from 0


@lru_cache(maxsize=8)
def _hann(height: int, width: int, device: torch.device) -> torch.Tensor:
    """(height, width) float32 Hann window as cv2.createHanningWindow: 0.5 (1 - cos(2 pi i / (n - 1)))."""
    def side(n: int) -> torch.Tensor:
        i = torch.arange(n, dtype=torch.float64)
        return 0.5 * (1.0 - torch.cos(2.0 * torch.pi * i / max(n - 1, 1)))
    return (side(height)[:, None] * side(width)[None, :]).float().to(device)


def _median_of_levels(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Median of the whole grey levels ``values`` (0..255) where ``mask``; 0-d float tensor."""
    counts = torch.bincount(values[...].long().flatten(), weights=mask.flatten().float(), minlength=256)
    cumulative = counts.cumsum(0)
    count = cumulative[-1]
    ranks = torch.stack([torch.div(count - 1, 2, rounding_mode="floor") + 1, torch.div(count, 2, rounding_mode="floor") + 1])
    low, high = torch.searchsorted(cumulative, ranks)
    return (low + high).float() / 2.0


def phase_correlation(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """(h, w) float grey frames -> (2,) float64 (dx, dy), cv2.phaseCorrelate's sub-pixel shift."""
    height, width = first.shape
    window = _hann(height, width, first.device)
    spectrum = torch.fft.rfft2(first.double() * window) * torch.fft.rfft2(second.double() * window).conj()
    spectrum = spectrum / (spectrum.abs() + SPECTRUM_EPS)
    surface = torch.fft.fftshift(torch.fft.irfft2(spectrum, s=(height, width)))
    peak = torch.argmax(surface)
    peak_y, peak_x = peak // width, peak % width
    offsets = torch.arange(-CENTROID_RADIUS, CENTROID_RADIUS + 1, device=first.device)
    rows, cols = peak_y + offsets, peak_x + offsets
    inside = ((rows >= 0) & (rows < height))[:, None] & ((cols >= 0) & (cols < width))[None, :]
    patch = surface[rows.clamp(0, height - 1)[:, None], cols.clamp(0, width - 1)[None, :]] * inside
    total = patch.sum()
    centroid_x = (patch * cols[None, :].double()).sum() / total
    centroid_y = (patch * rows[:, None].double()).sum() / total
    return torch.stack([width // 2 - centroid_x, height // 2 - centroid_y])


def dominant_translation(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """first, second (1, 3, h, w) RGB 0..255 -> (2,) int64 (dx, dy) with second(x + dx, y + dy) ~
    first(x, y) for most pixels, else (0, 0); ``classical.prealign.dominant_translation`` on the device."""
    height, width = first.shape[-2:]
    zero = torch.zeros(2, dtype=torch.int64, device=first.device)
    if height < 2 or width < 2:
        return zero
    gray_first, gray_second = gray(first), gray(second)
    subpixel = phase_correlation(gray_first, gray_second)
    finite = torch.isfinite(subpixel).all()
    shift = torch.where(finite, torch.round(torch.nan_to_num(subpixel)), 0.0).long()
    margin = shift.abs().max() + 1
    rows = torch.arange(height, device=first.device)[:, None]
    cols = torch.arange(width, device=first.device)[None, :]
    interior = (rows >= margin) & (rows < height - margin) & (cols >= margin) & (cols < width - margin)
    moved = gray_second[(rows + shift[1]).clamp(0, height - 1), (cols + shift[0]).clamp(0, width - 1)]
    before = _median_of_levels((gray_first - gray_second).abs(), interior)
    after = _median_of_levels((gray_first - moved).abs(), interior)
    keep = finite & (shift != 0).any() & (2 * margin < min(height, width)) & (after < before)
    return torch.where(keep, shift, zero)
