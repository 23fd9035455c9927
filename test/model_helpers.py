"""Model helpers shared by the export and backend tests."""
from __future__ import annotations

import torch

from jointperception.config import ModelConfig
from jointperception.models import build_model
from jointperception.models.blocks import FlowPredictor


def lively_model(seed: int, cfg: ModelConfig | None = None) -> torch.nn.Module:
    """Untrained JointNet (default ``cfg``: ModelConfig()) whose flow heads predict pixels, not ~0,
    so parity checks are not trivial."""
    torch.manual_seed(seed)
    model = build_model(cfg or ModelConfig())
    for module in model.modules():
        if isinstance(module, FlowPredictor):
            torch.nn.init.normal_(module.conv.weight, std=0.05)
    return model.eval()
