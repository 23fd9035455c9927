"""The mask memory on the device: ``runtime.mask_memory.MaskMemory`` with the state kept as a
tensor and the bilinear carry done by ``grid_sample`` (pixel centres as cv2.remap INTER_LINEAR,
border replicated, sampling only where it carries: inside the frame, finite, not occluded)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from jointperception.runtime.mask_memory import DEFAULT_MEMORY_WEIGHT, check_memory_weight


class TorchMaskMemory:
    """The filter's state for one stream: the last filtered probability (h, w) tensor and its source."""

    def __init__(self, weight: float = DEFAULT_MEMORY_WEIGHT) -> None:
        self.weight = check_memory_weight(weight)
        self._last: torch.Tensor | None = None
        self._source: str | None = None

    def reset(self) -> None:
        self._last = None
        self._source = None

    def update(self, probability: torch.Tensor, flow_to_previous: torch.Tensor, occluded: torch.Tensor,
               source: str) -> torch.Tensor:
        """probability (h, w), flow_to_previous (2, h, w) network pixels, occluded (h, w) bool
        -> the filtered probability (h, w) float32, kept as the memory (see ``MaskMemory.update``)."""
        current = torch.nan_to_num(probability.float(), nan=0.0, posinf=1.0, neginf=0.0)
        last = self._last
        if self.weight > 0.0 and last is not None and self._source == source and last.shape == current.shape:
            filtered = self._blend(current, last, flow_to_previous.float(), occluded)
        else:
            filtered = current.clone()
        self._last, self._source = filtered, source
        return filtered

    def _blend(self, current: torch.Tensor, last: torch.Tensor, flow: torch.Tensor, occluded: torch.Tensor) -> torch.Tensor:
        height, width = current.shape
        ys, xs = torch.meshgrid(torch.arange(height, device=current.device, dtype=torch.float32),
                                torch.arange(width, device=current.device, dtype=torch.float32), indexing="ij")
        map_x, map_y = xs + flow[0], ys + flow[1]
        carries = ~occluded & (map_x >= 0) & (map_x <= width - 1) & (map_y >= 0) & (map_y <= height - 1)
        grid = torch.stack([torch.where(carries, map_x, 0.0) * (2.0 / max(width - 1, 1)) - 1.0,
                            torch.where(carries, map_y, 0.0) * (2.0 / max(height - 1, 1)) - 1.0], dim=-1)
        carried = F.grid_sample(last[None, None], grid[None], mode="bilinear", padding_mode="border",
                                align_corners=True)[0, 0]
        return torch.where(carries, (1.0 - self.weight) * current + self.weight * carried, current)
