"""``~/object_mask`` over real DDS: perception_node (bundled model, 320x240) as a real process, the
test process publishing frames of a synthetic scene with several movers and, mid-stream, the mask
of one of them. The published masks then follow that object: their J against the scene's GT of
that object beats the unsupervised stream's. Bad masks are logged and counted; the node keeps serving."""
from __future__ import annotations

import time

import numpy as np
import pytest

pytest.importorskip("rclpy", reason="ROS 2 wheels (rclpy) not installed")

from perception_link import WAIT, Link, decode_msg, linked, stamp_msg  # noqa: E402
from ros_helpers import pick_domain_id, start_module, stop  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from jointperception.data.synthetic import SyntheticSequence, render_sequence  # noqa: E402
from jointperception.eval.metrics import jaccard  # noqa: E402
from jointperception.data.image_msg import encode_image  # noqa: E402

NODE = "/jointperception_node"
WIDTH, HEIGHT = 320, 240
FRAMES = 8
GIVEN_AT = 2  # the object mask is stamped like this frame and published after its output


@pytest.fixture(scope="module")
def scene() -> SyntheticSequence:
    """The first scene of the seeds with 2+ movers whose object 1 is in view at frame GIVEN_AT."""
    return next(s for s in (render_sequence(seed, FRAMES, HEIGHT, WIDTH) for seed in range(40_000_000, 40_000_050))
                if s.layers.max() >= 2 and (s.layers[GIVEN_AT] == 1).any())


@pytest.fixture(scope="module")
def link(tmp_path_factory: pytest.TempPathFactory):
    domain_id = pick_domain_id()
    log = tmp_path_factory.mktemp("node") / "node.log"
    args = ["-p", "threads:=1", "-p", "backend:=torch", "-p", "diagnostics_period_s:=0.2",
            "-r", "image:=/cam/image_raw", "-r", "camera_info:=/cam/camera_info"]
    process = start_module("jointperception.ros.perception_node", args, domain_id, log)
    try:
        with linked((process, log), domain_id) as link:
            link.mask_pub = link.probe.node.create_publisher(Image, f"{NODE}/object_mask", 10)
            assert link.probe.spin_until(lambda: link.mask_pub.get_subscription_count() > 0, WAIT)
            yield link
    finally:
        stop(process)


def _send_mask(link: Link, seconds: float, mask: np.ndarray, encoding: str = "mono8") -> None:
    msg = Image(**vars(encode_image(mask.astype(np.uint8) * 255, encoding)))
    msg.header.stamp = stamp_msg(seconds)
    link.mask_pub.publish(msg)
    link.probe.spin_for(0.5)  # it arrives before the frame it is matched to is finished


def _stream(link: Link, start: float, frames: list[np.ndarray], between=None) -> dict[int, np.ndarray]:
    """Frames stamped start + 0.1 i in lock-step with the node's answers -> {i: published mask (H, W)
    bool} for i >= 1; ``between(i, stamp)`` runs after frame i's output. Frames 0 and 1 are sent
    again when frame 0 was not taken in time (the resend is older: a pair reset, then they pair)."""
    masks: dict[int, np.ndarray] = {}
    deadline = time.monotonic() + WAIT
    while 1 not in masks:
        link.send(start, frames[0])
        link.probe.spin_for(0.3)
        link.send(start + 0.1, frames[1])
        if link.probe.spin_until(lambda: link.output_for(start + 0.1, ("mask",)) is not None, 15.0):
            masks[1] = decode_msg(link.output_for(start + 0.1, ("mask",))["mask"]) > 0
        assert time.monotonic() < deadline, f"no output within {WAIT} s; diagnostics {link.diagnostics}"
    for i in range(1, len(frames)):
        stamp = start + 0.1 * i
        if i > 1:
            link.send(stamp, frames[i])
            masks[i] = decode_msg(link.expect_output(stamp, ("mask",))["mask"]) > 0
        if between is not None:
            between(i, stamp)
    return masks


def test_an_object_mask_set_mid_stream_is_followed(link: Link, scene: SyntheticSequence) -> None:
    frames, truth = list(scene.frames), list(scene.layers == 1)
    unsupervised = _stream(link, 100.0, frames)
    applied = link.count("object mask: applied")

    def give(i: int, stamp: float) -> None:
        if i == GIVEN_AT:  # drawn on the frame just published: carried into the next one
            _send_mask(link, stamp, truth[GIVEN_AT])

    followed = _stream(link, 200.0, frames, between=give)
    link.expect_count("object mask: applied", applied + 1)
    link.expect_count("mask origin: carried", 1)
    after = range(GIVEN_AT + 1, FRAMES)
    j_followed = np.mean([jaccard(followed[i], truth[i]) for i in after])
    j_unsupervised = np.mean([jaccard(unsupervised[i], truth[i]) for i in after])
    print(f"J of the followed object, frames {GIVEN_AT + 1}..{FRAMES - 1}: followed {j_followed:.3f}, "
          f"unsupervised {j_unsupervised:.3f}")
    assert j_followed > j_unsupervised + 0.1, (j_followed, j_unsupervised)


def test_bad_object_masks_are_counted_and_the_node_keeps_serving(link: Link, scene: SyntheticSequence) -> None:
    frames, truth = list(scene.frames), list(scene.layers == 1)
    counts = {key: link.count(key) for key in ("object mask: bad size", "object mask: dropped, its frame is gone",
                                               "object mask: bad unsupported_encoding", "object mask: stop following")}
    half = np.zeros((HEIGHT // 2, WIDTH // 2), bool)
    half[10:20, 10:20] = True

    def bad(i: int, stamp: float) -> None:
        if i == 1:
            _send_mask(link, stamp, half)  # the wrong size for its frame
        elif i == 2:
            _send_mask(link, stamp + 0.05, truth[2])  # no frame has this stamp: it never arrives
        elif i == 3:
            _send_mask(link, stamp, np.repeat(truth[3][..., None], 3, axis=2), encoding="rgb8")  # not mono8
        elif i == 4:
            _send_mask(link, stamp, truth[4])  # a good one, then an empty one: follow nothing again
        elif i == 5:
            _send_mask(link, stamp, np.zeros((HEIGHT, WIDTH), bool))

    masks = _stream(link, 300.0, frames, between=bad)
    assert len(masks) == FRAMES - 1  # every frame still answered
    for key, before in counts.items():
        link.expect_count(key, before + 1)
