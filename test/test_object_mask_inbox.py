"""ObjectMaskInbox: how an ~/object_mask is matched by stamp to the pair (newest, previous) being published."""
from __future__ import annotations

import numpy as np
import pytest

from jointperception.data.image_msg import ImageConversionError, encode_image
from jointperception.ros.object_mask import ObjectMask, ObjectMaskInbox, object_mask_from_fields

OBJECT = np.eye(4, dtype=bool)


def _inbox(stamp_ns: int, mask: np.ndarray = OBJECT) -> ObjectMaskInbox:
    inbox = ObjectMaskInbox()
    assert not inbox.put(ObjectMask(stamp_ns, mask))
    return inbox


@pytest.mark.parametrize(("stamp", "kind"), [(300, "newest"), (200, "previous"), (250, "stale"), (100, "stale")])
def test_a_mask_is_matched_to_the_frame_of_its_stamp(stamp: int, kind: str) -> None:
    inbox = _inbox(stamp)
    match = inbox.match(300, 200)
    assert match.kind == kind and match.stamp_ns == stamp
    assert (match.mask is not None) == (kind != "stale")
    assert inbox.match(400, 300) is None  # taken out


def test_a_mask_for_a_coming_frame_waits_and_a_newer_one_replaces_it() -> None:
    inbox = _inbox(500)
    assert inbox.match(300, 200) is None and inbox.match(400, 300) is None
    assert inbox.put(ObjectMask(600, OBJECT))  # replaced the one for 500
    assert inbox.match(600, 500).kind == "newest"


def test_an_empty_mask_stops_following_whatever_its_stamp() -> None:
    assert _inbox(0, np.zeros((4, 4), bool)).match(300, 200).kind == "stop"


def test_masks_decode_from_mono8_only() -> None:
    encoded = encode_image(OBJECT.astype(np.uint8) * 255, "mono8")
    mask = object_mask_from_fields(*vars(encoded).values(), stamp_ns=7)
    np.testing.assert_array_equal(mask.mask, OBJECT)
    rgb = encode_image(np.zeros((4, 4, 3), np.uint8), "rgb8")
    with pytest.raises(ImageConversionError, match="mono8"):
        object_mask_from_fields(*vars(rgb).values(), stamp_ns=7)
