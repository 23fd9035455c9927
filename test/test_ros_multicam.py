"""Two cameras, two perception_node processes in one ROS domain, each under its own namespace.

The front camera sends 96x64 frames stamped 100 s and later, the rear camera 80x48 frames stamped
200 s and later; each node must answer only its own camera (stamps and sizes), and the two
/diagnostics statuses must be told apart by name.
"""
from __future__ import annotations

import pytest

pytest.importorskip("rclpy", reason="ROS 2 wheels (rclpy) not installed")

from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from perception_link import WAIT, Link, random_frame, save_untrained_model, send_pair  # noqa: E402
from ros_helpers import open_probe, pick_domain_id, start_module, stop  # noqa: E402

# namespace -> (frame height, frame width, first stamp in seconds)
CAMERAS = {"front": (64, 96, 100.0), "rear": (48, 80, 200.0)}


@pytest.fixture(scope="module")
def links(tmp_path_factory: pytest.TempPathFactory):
    """One node per camera, started as `perception_node --ros-args -r __ns:=/<camera> -r image:=/<camera>/image_raw`."""
    folder = tmp_path_factory.mktemp("multicam")
    model = save_untrained_model(folder / "m.safetensors")
    domain_id = pick_domain_id()
    processes = {
        camera: start_module("jointperception.ros.perception_node", [
            "-r", f"__ns:=/{camera}", "-r", f"image:=/{camera}/image_raw", "-r", f"camera_info:=/{camera}/camera_info",
            "-p", f"model:={model}", "-p", "threads:=1", "-p", "backend:=torch", "-p", "network_width:=96", "-p", "network_height:=64",
            "-p", "diagnostics_period_s:=0.2"], domain_id, folder / f"{camera}.log")
        for camera in CAMERAS
    }
    probe = open_probe(domain_id)
    try:
        links = {camera: Link(probe, node=f"/{camera}/jointperception_node", camera=f"/{camera}") for camera in CAMERAS}
        ready = probe.spin_until(lambda: all(link.connected() for link in links.values()), WAIT)
        logs = {camera: (folder / f"{camera}.log").read_text() for camera in CAMERAS}
        assert ready and all(p.poll() is None for p in processes.values()), f"nodes not reachable: {logs}"
        yield links
    finally:
        probe.close()
        codes = {camera: stop(process) for camera, process in processes.items()}
    assert codes == dict.fromkeys(CAMERAS, 0), codes  # both stop cleanly on Ctrl-C


def test_each_node_answers_only_its_own_camera(links: dict[str, Link]) -> None:
    for round_index in range(2):  # interleaved: front, rear, front, rear
        for camera, (height, width, first) in CAMERAS.items():
            frame = random_frame(round_index, height, width)
            send_pair(links[camera], first + 10.0 * round_index, frame)
    for camera, (height, width, first) in CAMERAS.items():
        messages = [m for received in links[camera].received.values() for m in received]
        assert messages
        for msg in messages:
            assert first <= msg.header.stamp.sec < first + 100.0, (camera, msg.header.stamp)
            assert (msg.height, msg.width) == (height, width), camera


def test_diagnostics_status_names_are_distinct_per_node(links: dict[str, Link]) -> None:
    probe = next(iter(links.values())).probe
    names: set[str] = set()
    probe.node.create_subscription(DiagnosticArray, "/diagnostics",
                                   lambda msg: names.update(status.name for status in msg.status), 10)
    expected = {f"/{camera}/jointperception_node: perception" for camera in CAMERAS}
    assert probe.spin_until(lambda: expected <= names, WAIT), names
    for link in links.values():
        link.expect_count("frames processed", 1)
