"""Networks. ``build_model(cfg)`` is the only factory and the only reader of ModelConfig."""
from __future__ import annotations

from jointperception.config import ModelConfig, MotionConfig
from jointperception.models.jointnet import WIDTHS, JointNet
from jointperception.models.motionnet import MotionLayerNet


def build_model(cfg: ModelConfig) -> JointNet:
    """JointNet of the configured width; ``fusion="none"`` is the no-feature-exchange ablation;
    ``cost_volumes`` adds the decoder's warped cost volumes (large displacements)."""
    cfg.validate()
    return JointNet(WIDTHS[cfg.width], fusion=cfg.fusion == "bidirectional", cost_volumes=cfg.cost_volumes)


def build_motion_model(cfg: MotionConfig) -> MotionLayerNet:
    """MotionLayerNet with K = cfg.num_layers, cfg.levels U-Net levels and cfg.base_width channels."""
    cfg.validate()
    return MotionLayerNet(cfg.num_layers, levels=cfg.levels, base_width=cfg.base_width)


__all__ = ["build_model", "build_motion_model", "JointNet", "MotionLayerNet"]
