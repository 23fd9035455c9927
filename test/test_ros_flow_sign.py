"""The bundled, trained model behind perception_node over real DDS: a frame moved 3 px to the
right gives ~/flow u of about -3 px (docs/design.md, contracts: the newest frame's displacement to the previous
frame) and v of about 0. An untrained model could not tell the sign, so this needs real weights."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("rclpy", reason="ROS 2 wheels (rclpy) not installed")

from perception_link import WAIT, Link, decode_msg, send_pair  # noqa: E402
from ros_helpers import open_probe, pick_domain_id, start_module, stop  # noqa: E402

from jointperception.data.synthetic import render_sequence  # noqa: E402

HEIGHT, WIDTH = 128, 160  # the bundled model's training size


def test_flow_sign_and_size_on_a_known_translation(tmp_path) -> None:
    domain_id = pick_domain_id()
    node = start_module("jointperception.ros.perception_node", [
        "-p", "threads:=1", "-p", "backend:=torch", "-p", f"network_width:={WIDTH}", "-p", f"network_height:={HEIGHT}",
        "-p", "diagnostics_period_s:=0.2", "-r", "image:=/cam/image_raw", "-r", "camera_info:=/cam/camera_info",
    ], domain_id, tmp_path / "node.log")  # no model parameter: the bundled one
    try:
        probe = open_probe(domain_id)
        try:
            link = Link(probe)
            assert probe.spin_until(lambda: link.connected() or node.poll() is not None, WAIT), \
                (tmp_path / "node.log").read_text()
            frame = render_sequence(11, 2, HEIGHT, WIDTH).frames[0]  # textured, so the shift is visible
            _stamp, outputs = send_pair(link, 40.0, frame)  # the second frame is the first moved 3 px right
            flow = decode_msg(outputs["flow"])
        finally:
            probe.close()
    finally:
        assert stop(node) == 0
    interior = flow[8:-8, 8:-8]  # np.roll wraps the left columns around
    assert np.median(interior[..., 0]) == pytest.approx(-3.0, abs=0.75)
    assert abs(float(np.median(interior[..., 1]))) < 0.75
