"""Networks. ``build_model(cfg)`` is the only factory and the only reader of ModelConfig."""
from __future__ import annotations

from jointperception.config import ModelConfig
from jointperception.models.jointnet import WIDTHS, JointNet


def build_model(cfg: ModelConfig) -> JointNet:
    """JointNet of the configured width; ``fusion="none"`` is the no-feature-exchange ablation."""
    cfg.validate()
    return JointNet(WIDTHS[cfg.width], fusion=cfg.fusion == "bidirectional")


__all__ = ["build_model", "JointNet"]
