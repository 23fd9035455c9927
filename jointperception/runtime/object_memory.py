"""Follow one given object through a stream (first-mask mode): the given mask carried frame to frame
along the flow, checked by the appearance and motion cues near it, re-identified when it collapses.

For frames paired (newest, previous) as the node and ``replay`` pair them, on the network grid:

    c    the object probability of the previous frame carried along the flow newest -> previous
         (``mask_memory.carry_along_flow``); defined where the pixel was visible in the previous
         frame (occlusion-gated), unknown elsewhere
    R    the carried object's reach: (c > 0.5) dilated by a disc of ``reach_px`` pixels
    e    the evidence near the object: motion_weight * motion + (1 - motion_weight) * appearance
         inside R, 0 outside; appearance = the segmentation branch (fine-tuned on the given mask
         where it was), motion = the mean of the motion-layer and residual cues (``runtime.motion_layers``)
    p    = max(carry_weight * c + (1 - carry_weight) * e, growth_weight * e) where c is defined, = e where not
    join with ``join_fraction`` > 0: every connected region where appearance and motion agree (both
         > 0.5) and at least ``join_fraction`` of which lies inside R joins whole: p = max(p, min(
         appearance, motion)) there (an object that grows or turns brings its new pixels as one region)

The published mask is p > threshold; p becomes the carried object of the next pair. With the default
carry weight 0.5 a pixel the carried object covers needs some evidence, one it leaves uncovered
(c = 0) needs growth_weight * e above the threshold (without growth it never joins, and the object
grows only by the carry's sub-pixel rim), an unknown one needs e above it; nothing outside the reach
is kept: the motion and appearance of other objects do not leak in. The object has collapsed when
the area of p > 0.5 falls below ``collapse_fraction`` of the reference area (the given mask's area,
then a running mean of the areas of frames that did not collapse), or when the mean appearance over
it falls below ``min_appearance``; it is then re-identified: p = appearance inside the connected
region of appearance > 0.5 that the appearance and motion support most, 0 elsewhere. Each frame's
``source`` says which rule produced its mask (``SOURCES``). docs/first_mask.md gives the rule and how
its parameters were chosen.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from jointperception.errors import InputError
from jointperception.runtime.mask_memory import carry_along_flow
from jointperception.classical.motion_segmentation import select_component

SOURCES = ("given", "carried", "reidentified")  # the mask is the given one / the carried rule / re-identified


@dataclass(frozen=True)
class ObjectRule:
    """The parameters of the rule above (chosen on synthetic scenes and 7 DAVIS sequences)."""

    carry_weight: float = 0.5  # weight of the carried object against the evidence near it
    reach_px: int = 4  # radius (network pixels) around the carried object where evidence counts
    motion_weight: float = 0.5  # evidence = motion_weight * motion + (1 - motion_weight) * appearance
    collapse_fraction: float = 0.4  # collapsed below this fraction of the reference area
    min_appearance: float = 0.0  # collapsed when the mean appearance over the object falls below this (0: never)
    area_rate: float = 0.1  # running-mean rate of the reference area
    growth_weight: float = 0.0  # a pixel the carried object does not cover joins when growth_weight * evidence passes
    join_fraction: float = 0.6  # an agreeing region joins whole when this fraction of it is in reach (0: never)

    def __post_init__(self) -> None:
        if not 0.0 <= self.motion_weight <= 1.0:
            raise InputError(f"motion_weight must be in [0, 1], got {self.motion_weight}")
        if not 0.0 <= self.carry_weight < 1.0:
            raise InputError(f"carry_weight must be in [0, 1), got {self.carry_weight}")
        if self.reach_px < 0:
            raise InputError(f"reach_px must be >= 0, got {self.reach_px}")
        if not 0.0 <= self.collapse_fraction < 1.0 or not 0.0 <= self.min_appearance < 1.0:
            raise InputError("collapse_fraction and min_appearance must be in [0, 1)")
        if not 0.0 <= self.growth_weight <= 1.0:
            raise InputError(f"growth_weight must be in [0, 1], got {self.growth_weight}")
        if not 0.0 <= self.join_fraction <= 1.0:
            raise InputError(f"join_fraction must be in [0, 1], got {self.join_fraction}")
        if not 0.0 < self.area_rate <= 1.0:
            raise InputError(f"area_rate must be in (0, 1], got {self.area_rate}")


def join_agreeing_regions(probability: np.ndarray, appearance: np.ndarray, motion: np.ndarray, reach: np.ndarray,
                          fraction: float) -> np.ndarray:
    """probability, appearance, motion (h, w) float32, reach (h, w) bool -> (h, w) float32: ``probability``
    raised to min(appearance, motion) over every 8-connected region where both cues pass 0.5 and at
    least ``fraction`` of whose pixels lie in ``reach``."""
    agreement = np.minimum(appearance, motion)
    count, labels = cv2.connectedComponents((agreement > 0.5).astype(np.uint8), connectivity=8)
    if count <= 1:
        return probability
    area = np.bincount(labels.ravel(), minlength=count)
    in_reach = np.bincount(labels[reach], minlength=count)
    joins = in_reach >= fraction * area
    joins[0] = False  # the background label
    return np.where(joins[labels], np.maximum(probability, agreement), probability).astype(np.float32)


def check_object_mask(mask: object, frame_size: tuple[int, int] | None = None) -> np.ndarray:
    """An object mask (H, W) of any numeric / bool dtype (nonzero = object) -> (H, W) bool; InputError
    when it is not 2-D, when it is empty, or (with ``frame_size`` (W, H)) when it is not the frame's size."""
    array = np.asarray(mask)
    if array.ndim != 2 or array.size == 0:
        raise InputError(f"object mask must be a 2-D (H, W) image, got shape {array.shape}")
    if frame_size is not None and array.shape != (frame_size[1], frame_size[0]):
        raise InputError(f"object mask is {array.shape[1]}x{array.shape[0]} but the frames are "
                         f"{frame_size[0]}x{frame_size[1]} (WxH)")
    binary = np.nan_to_num(array) != 0
    if not binary.any():
        raise InputError("object mask is empty: nothing to follow (nonzero pixels mark the object)")
    return binary


class ObjectMemory:
    """The followed object of one stream: the last published probability (h, w) on the network grid.

    ``give(mask, newest=...)`` sets the object (camera resolution, (H, W) bool): for the next pair's
    newest frame (published as given) or for the frame it pairs with (carried from it). ``source``
    is the rule that produced the last mask (``SOURCES``), None before the first.
    """

    def __init__(self, rule: ObjectRule = ObjectRule()) -> None:
        self.rule = rule
        self.source: str | None = None
        self._given: tuple[np.ndarray, bool] | None = None  # (mask (H, W) bool, for the newest frame)
        self._last: np.ndarray | None = None  # (h, w) float32 object probability of the previous frame
        self._area = 0.0  # reference area (network pixels)
        self._disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * rule.reach_px + 1,) * 2)

    @property
    def following(self) -> bool:
        """Whether an object was given (and not reset since)."""
        return self._given is not None or self._last is not None

    def give(self, mask: np.ndarray, newest: bool) -> None:
        """mask (H, W), nonzero = the object: the next pair's newest frame (``newest``) or the frame
        it pairs with. InputError for an empty or non-2-D mask (the size is checked at that pair)."""
        self._given = (check_object_mask(mask), newest)

    def reset(self) -> None:
        """Forget the object (a pair reset, or following ends)."""
        self._given = self._last = None
        self.source = None

    def update(self, appearance: np.ndarray, motion: np.ndarray, flow_to_previous: np.ndarray, occluded: np.ndarray,
               camera_size: tuple[int, int]) -> np.ndarray:
        """appearance, motion (h, w) float32 in [0, 1] of the newest frame, flow_to_previous (h, w, 2)
        network pixels, occluded (h, w) bool, camera_size (W, H) of the frames -> the object probability
        (h, w) float32 of the newest frame, kept as the object. InputError when a given mask is not
        the frames' size (the mask is dropped, the object stays as it was)."""
        appearance = np.nan_to_num(appearance.astype(np.float32, copy=False), nan=0.0)
        motion = np.nan_to_num(motion.astype(np.float32, copy=False), nan=0.0)
        if self._given is not None:
            mask, newest = self._given
            self._given = None
            check_object_mask(mask, camera_size)
            given = cv2.resize(mask.astype(np.float32), appearance.shape[::-1], interpolation=cv2.INTER_AREA)
            self._area = max(float((given > 0.5).sum()), 1.0)
            self._last = given
            if newest:
                self.source = "given"
                return given.copy()
        if self._last is None:
            raise InputError("no object to follow: give a mask first")
        carried, known = carry_along_flow(self._last, flow_to_previous, occluded)
        reach = cv2.dilate(((carried > 0.5) & known).astype(np.uint8), self._disc).astype(bool)
        mixed = self.rule.motion_weight * motion + (1.0 - self.rule.motion_weight) * appearance
        evidence = np.where(reach, mixed, 0.0)
        weight = self.rule.carry_weight
        kept = np.maximum(weight * carried + (1.0 - weight) * evidence, self.rule.growth_weight * evidence)
        probability = np.where(known, kept, evidence).astype(np.float32)
        if self.rule.join_fraction > 0:
            probability = join_agreeing_regions(probability, appearance, motion, reach, self.rule.join_fraction)
        inside = probability > 0.5
        area = float(inside.sum())
        if area < self.rule.collapse_fraction * self._area or (
                area > 0 and float(appearance[inside].mean()) < self.rule.min_appearance):
            probability = self._reidentify(appearance, motion)
            self.source = "reidentified"
        else:
            self._area += self.rule.area_rate * (area - self._area)
            self.source = "carried"
        self._last = probability
        return probability.copy()

    @staticmethod
    def _reidentify(appearance: np.ndarray, motion: np.ndarray) -> np.ndarray:
        """The appearance inside its most supported region (appearance + motion), 0 elsewhere."""
        region = select_component(appearance > 0.5, appearance + motion)
        return np.where(region, appearance, 0.0).astype(np.float32)
