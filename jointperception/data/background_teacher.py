"""Dominant-motion background for a teacher's flow (selfsup.teacher_background: affine).

Where a teacher flow moves like its own robust dominant affine motion (the residual below the
classical rule's threshold: eval.classical_segmentation.dominant_motion), the target becomes that
affine motion; where it moves unlike it (movers), or where the teacher is not valid, the target is
kept. The runtime's residual cue calls a pixel moving when the published flow departs from its
dominant affine motion, so this target teaches the network background flow that the cue reads as
background, instead of every ripple of a textured surface.
"""
from __future__ import annotations

import numpy as np
import torch

from jointperception.eval.classical_segmentation import dominant_motion


def affine_background(flow: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """flow: (N, 2, h, w) float px, finite; valid: (N, 1, h, w) in {0, 1} -> flow (N, 2, h, w)
    float32 with each item's valid non-moving pixels replaced by the item's dominant affine motion.
    Items with too few valid pixels for a fit are kept as they are."""
    if flow.ndim != 4 or flow.shape[1] != 2 or valid.shape != (flow.shape[0], 1, *flow.shape[2:]):
        raise ValueError(f"affine_background: flow {tuple(flow.shape)} / valid {tuple(valid.shape)} are not "
                         "(N, 2, h, w) / (N, 1, h, w)")
    fields = flow.detach().cpu().float().numpy().transpose(0, 2, 3, 1)  # (N, h, w, 2)
    usable = valid.detach().cpu().numpy()[:, 0] > 0.5
    out = fields.copy()
    for item, (field, keep) in enumerate(zip(fields, usable, strict=True)):
        # non-valid pixels become NaN so the fit ignores them and they are never replaced
        moving, affine = dominant_motion(np.where(keep[..., None], field, np.nan))
        if affine is None:
            continue
        background = keep & ~moving
        out[item, background, 0] = affine[0][background]
        out[item, background, 1] = affine[1][background]
    return torch.from_numpy(np.ascontiguousarray(out.transpose(0, 3, 1, 2))).to(flow.device)
