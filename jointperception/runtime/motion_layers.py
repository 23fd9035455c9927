"""Post-processing of the motion-layer output and the rule that fuses it into the published mask.

The graph gives layer probabilities g (1, K, h, w) (softmax over K layers, EM motion
segmentation). Layers are the argmax of g, renumbered by decreasing area so 0 is the largest
layer, which is the background (the paper's rule); every other layer moves relative to it.

Published mask (``MASK_SOURCES``):
    segmentation  p = p_seg                         the segmentation branch alone
    motion        p = 1 - g_background              every non-background layer
    residual      p = r                             r = 1 where the flow moves unlike its robust dominant
                                                    affine motion (residual > Otsu, as the classical
                                                    reference: classical.motion_segmentation), in the one
                                                    connected region the two other cues support most
                                                    (largest sum of p_seg + 1 - g_background), else 0
    fused         p = (p_seg + 1 - g_background + r) / 3  the mean of the three (the default)
and mask = p > threshold. With threshold 0.5, ``fused`` keeps a pixel when two of the three cues
say it moves, or when one is certain and the other two are unsure. The residual cue keeps one
mover (the primary object); the motion layers keep every mover, so scenes with several movers
keep the others where the segmentation branch agrees with the layers.
"""
from __future__ import annotations

import numpy as np

from jointperception.classical.motion_segmentation import dominant_motion, select_component
from jointperception.models.motionnet import order_by_area

MASK_SOURCES = ("fused", "segmentation", "motion", "residual")
RESIDUAL_SOURCES = ("fused", "residual")  # the sources that need the residual cue (4 ms at 320x240)


def argmax_layers(probabilities: np.ndarray) -> np.ndarray:
    """(K, h, w) float, no NaN -> (h, w) intp index of the most probable layer (the first on ties),
    as np.argmax(axis=0) but by K - 1 elementwise passes (measured 0.5 vs 0.9 ms at 320x240, K 4)."""
    best = probabilities[0]
    labels = np.zeros(best.shape, dtype=np.intp)
    for k in range(1, probabilities.shape[0]):
        better = probabilities[k] > best
        labels[better] = k
        best = np.maximum(best, probabilities[k])
    return labels


def split_layers(layer_prob: np.ndarray, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """layer_prob (1, K, h_pad, w_pad) -> (ids (height, width) uint8, 0 = background, on the
    unpadded network grid; moving probability (1, 1, h_pad, w_pad) = 1 - g_background).
    NaN probabilities count as 0."""
    probabilities = layer_prob[0]  # (K, h_pad, w_pad)
    if np.isnan(probabilities).any():
        probabilities = np.nan_to_num(probabilities, nan=0.0)
    ids, order = order_by_area(argmax_layers(probabilities[:, :height, :width]), probabilities.shape[0])
    moving = 1.0 - probabilities[order[0]]
    return ids, moving[None, None].astype(np.float32, copy=False)


def residual_mask(flow: np.ndarray, height: int, width: int, support: np.ndarray) -> np.ndarray:
    """flow (1, 2, h_pad, w_pad) network pixels, support (1, 1, h_pad, w_pad) float (p_seg + 1 -
    g_background) -> (1, 1, h_pad, w_pad) float32 in {0, 1}: the dominant-motion residual rule on
    the unpadded flow at the network resolution (on the 2x pooled motion grid it lost 0.05 DAVIS J),
    keeping the moving region ``support`` backs most rather than the classical reference's largest
    one (README: motion layers from the refined flow). Non-finite flow is background (the rule
    ignores it)."""
    field = flow[0, :, :height, :width].transpose(1, 2, 0)
    out = np.zeros((1, 1) + flow.shape[2:], dtype=np.float32)
    out[0, 0, :height, :width] = select_component(dominant_motion(field)[0], support[0, 0, :height, :width])
    return out


def fuse_mask_probability(mask_prob: np.ndarray, moving_prob: np.ndarray, residual: np.ndarray | None,
                          source: str) -> np.ndarray:
    """Probability the published mask thresholds; inputs and output of one shape ((1, 1, h, w) or (H, W));
    ``residual`` may be None for a source outside RESIDUAL_SOURCES."""
    if source == "segmentation":
        return mask_prob
    if source == "motion":
        return moving_prob
    if source == "residual":
        return residual
    if source == "fused":
        return (mask_prob + moving_prob + residual) / 3.0
    raise ValueError(f"mask source must be one of {', '.join(MASK_SOURCES)}, got {source!r}")


def source_masks(outputs: object, threshold: float) -> dict[str, np.ndarray]:
    """Every mask source of one PairOutputs (runtime.pipeline) at ``threshold``: "fused",
    "segmentation", "motion", "residual" -> (H, W) bool; lets evaluations score all of them from
    one inference; needs a pipeline whose mask source computes the residual cue (RESIDUAL_SOURCES)."""
    if outputs.residual_probability is None:
        raise ValueError(f"scoring every mask source needs the residual cue: use a mask source in {RESIDUAL_SOURCES}")
    cues = (outputs.segmentation_probability, outputs.moving_probability, outputs.residual_probability)
    return {source: fuse_mask_probability(*cues, source) > threshold for source in MASK_SOURCES}
