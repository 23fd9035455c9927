"""The node's ``~/object_mask`` input: which object to follow (first-mask mode, docs/first_mask.md).

A sensor_msgs/Image mono8 (or 8UC1), nonzero = the object, matched by header stamp to a frame of the
stream. The newest mask waits in an inbox (a newer one replaces it) until the publish stage takes
the pair (newest, previous) it belongs to:

  stamp = the newest frame's   the newest frame's published mask is the given mask; the object is
                               carried from it
  stamp = the previous frame's the object of the previous frame (e.g. a mask drawn on the last
                               published frame), carried into the newest
  any other stamp up to the    its frame is gone (dropped by the latest-only slot, or never
  newest frame's               arrived): the mask is dropped, logged and counted
  stamp newer                  it waits for its frame (a newer mask replaces it)
  all zero (any stamp up to    follow nothing: back to the unsupervised mask (with the mask memory)
  the newest frame's)

A mask whose size is not its frame's is dropped, logged and counted; so is one that does not decode
as mono8. A pair reset (stamp jump, size or encoding change, gap) ends following. This module
imports nothing from ROS; the worker hands it the decoded message fields.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from jointperception.data.image_msg import UNSUPPORTED_ENCODING, ImageConversionError, decode_image

MASK_ENCODINGS = ("mono8", "8UC1")
FOLLOW_COUNTERS = ("object mask: ", "mask origin: ")  # prefixes of the worker's /diagnostics counters for this input


@dataclass(frozen=True)
class ObjectMask:
    """A decoded ``~/object_mask``: the stamp of its frame and the mask (H, W) bool (all False: stop)."""

    stamp_ns: int
    mask: np.ndarray


@dataclass(frozen=True)
class Match:
    """What the inbox holds for a pair: ``kind`` is "newest" / "previous" (give the mask for that
    frame), "stop" (follow nothing) or "stale" (dropped: its frame is gone); ``mask`` is None for those."""

    kind: str
    stamp_ns: int
    mask: np.ndarray | None = None


def object_mask_from_fields(encoding: str, height: int, width: int, step: int, is_bigendian: bool, data: Any,
                            stamp_ns: int) -> ObjectMask:
    """Image message fields -> ObjectMask; ImageConversionError (with a cause) for anything not mono8 / 8UC1."""
    if encoding not in MASK_ENCODINGS:
        raise ImageConversionError(UNSUPPORTED_ENCODING, f"object mask must be mono8 or 8UC1, got {encoding!r}")
    return ObjectMask(stamp_ns, decode_image(encoding, height, width, step, is_bigendian, data) != 0)


class ObjectMaskInbox:
    """The newest object mask not yet matched; filled by the subscription callback, read by the
    publish stage (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: ObjectMask | None = None

    def put(self, mask: ObjectMask) -> bool:
        """Keep ``mask``; True when it replaced one that was never matched."""
        with self._lock:
            replaced, self._pending = self._pending is not None, mask
            return replaced

    def match(self, newest_stamp_ns: int, previous_stamp_ns: int) -> Match | None:
        """The pending mask's meaning for the pair (newest, previous), taken out of the inbox; None
        while it waits for a newer frame (or when there is none)."""
        with self._lock:
            pending = self._pending
            if pending is None or pending.stamp_ns > newest_stamp_ns:
                return None
            self._pending = None
        if not pending.mask.any():
            return Match("stop", pending.stamp_ns)
        if pending.stamp_ns == newest_stamp_ns:
            return Match("newest", pending.stamp_ns, pending.mask)
        if pending.stamp_ns == previous_stamp_ns:
            return Match("previous", pending.stamp_ns, pending.mask)
        return Match("stale", pending.stamp_ns)  # older than the pair, or a frame between them that was dropped
