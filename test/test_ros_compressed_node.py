"""perception_node with ``image_transport:=compressed`` and camera_source's compressed topic, as
real processes over real DDS on loopback.

One node process (namespace /camc, untrained model, 96x64 network, one torch thread) subscribes
sensor_msgs/CompressedImage on /camc/image_raw/compressed: the remapped ``image`` plus
``/compressed``, as image_transport names it. The test process (``Probe``) sends PNG frames with
chosen stamps, bad compressed messages, and starts camera_source processes.
"""
from __future__ import annotations

import struct
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("rclpy", reason="ROS 2 wheels (rclpy) not installed")

from perception_link import (  # noqa: E402
    HEIGHT,
    OUTPUTS,
    WAIT,
    WIDTH,
    Link,
    decode_msg,
    linked,
    random_frame,
    save_untrained_model,
    send_pair,
    stamp_key,
)
from rclpy.qos import qos_profile_sensor_data  # noqa: E402
from ros_helpers import pick_domain_id, start_module, stop  # noqa: E402
from sensor_msgs.msg import CompressedImage  # noqa: E402

from jointperception.data.compressed_image import decode_compressed, encode_compressed  # noqa: E402
from jointperception.data.formats import write_image  # noqa: E402
from jointperception.runtime.pipeline import PerceptionPipeline  # noqa: E402

NAMESPACE = "/camc"
NODE = f"{NAMESPACE}/jointperception_node"
COMPRESSED_TOPIC = f"{NAMESPACE}/image_raw/compressed"


@pytest.fixture(scope="module")
def domain_id() -> int:
    return pick_domain_id()


@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_untrained_model(tmp_path_factory.mktemp("model") / "m.safetensors")


@pytest.fixture(scope="module")
def node(model_file: Path, domain_id: int, tmp_path_factory: pytest.TempPathFactory):
    log = tmp_path_factory.mktemp("node") / "node.log"
    args = ["-r", f"__ns:={NAMESPACE}", "-p", f"model:={model_file}", "-p", "threads:=1", "-p", "backend:=torch",
            "-p", f"network_width:={WIDTH}", "-p", f"network_height:={HEIGHT}", "-p", "diagnostics_period_s:=0.2",
            "-p", "mask_memory:=0.0", "-p", "image_transport:=compressed", "-r", f"image:={NAMESPACE}/image_raw"]
    process = start_module("jointperception.ros.perception_node", args, domain_id, log)
    yield process, log
    stop(process)


@pytest.fixture(scope="module")
def link(node, domain_id: int):
    with linked(node, domain_id, node=NODE, camera=NAMESPACE, compression="png") as link:
        yield link


def test_png_frames_give_the_outputs_of_the_decoded_frames(link: Link, node, model_file: Path) -> None:
    frame = random_frame(21)
    _stamp, outputs = send_pair(link, 10.0, frame)
    for name, encoding in OUTPUTS.items():
        assert (outputs[name].encoding, outputs[name].height, outputs[name].width) == (encoding, HEIGHT, WIDTH)
        assert outputs[name].header.frame_id == "cam_optical"
    pipeline = PerceptionPipeline.from_model_file(model_file, network_size=(WIDTH, HEIGHT))
    expected = pipeline.infer_pair(np.roll(frame, 3, axis=1), frame)  # PNG is lossless: the very frames
    flow = decode_msg(outputs["flow"])
    np.testing.assert_allclose(flow, expected.flow, atol=1e-3)
    decided = np.abs(expected.mask_probability - 0.5) > 1e-3
    np.testing.assert_array_equal((decode_msg(outputs["mask"]) > 0)[decided], expected.mask[decided])
    assert "input compressed on /camc/image_raw/compressed" in node[1].read_text()


def _bad_messages() -> list[tuple[str, dict[str, object]]]:
    """(cause, CompressedImage fields) of each kind of bad compressed input; causes repeat."""
    png = b"\x89PNG\r\n\x1a\n"
    huge = png + b"\x00\x00\x00\x0dIHDR" + struct.pack(">II", 60000, 60000) + b"\x08\x02\x00\x00\x00" + bytes(4)
    return [
        ("corrupt_data", dict(format="rgb8; png compressed bgr8", data=png + b"cut short")),
        ("corrupt_data", dict(format="rgb8; jpeg compressed bgr8", data=b"")),
        ("corrupt_data", dict(format="jpeg", data=b"\xff\xd8\xff\xe0" * 16)),
        ("unsupported_format", dict(format="16UC1; compressedDepth png", data=png)),
        ("unsupported_format", dict(format="h264", data=b"\x00\x00\x00\x01" * 8)),
        ("oversized", dict(format="png", data=huge)),
    ]


def test_bad_compressed_frames_are_skipped_logged_once_and_counted(link: Link, node) -> None:
    process, log = node
    send_pair(link, 20.0, random_frame(22))
    expected = {cause: link.count(f"bad: {cause}") for cause, _fields in _bad_messages()}
    for index, (cause, fields) in enumerate(_bad_messages()):
        expected[cause] += 1
        link.send(20.2 + 0.01 * index, fields=fields)
        link.expect_count(f"bad: {cause}", expected[cause])
    second, outputs = send_pair(link, 21.0, random_frame(23))  # still serving
    assert stamp_key(outputs["mask"].header.stamp) == stamp_key(outputs["flow"].header.stamp)
    assert process.poll() is None
    text = log.read_text()
    for cause in expected:
        assert text.count(f"[{cause};") == 1, f"{cause} logged {text.count(f'[{cause};')} times:\n{text}"


def test_camera_source_offers_compressed_frames_under_the_remapped_name(link: Link, domain_id: int,
                                                                         tmp_path: Path) -> None:
    """camera_source in another namespace, image_raw remapped onto /camc/image_raw: its compressed
    topic follows the remap, so the compressed node answers its frames; PNG frames decode exactly."""
    folder = tmp_path / "frames"
    folder.mkdir()
    frames = [random_frame(30 + i) for i in range(3)]
    for index, frame in enumerate(frames):
        write_image(folder / f"{index:03d}.png", frame)
    offered: list[CompressedImage] = []
    link.probe.node.create_subscription(CompressedImage, COMPRESSED_TOPIC, offered.append, qos_profile_sensor_data)
    source = start_module("jointperception.ros.camera_source", [
        "-r", "__ns:=/elsewhere", "-r", f"image_raw:={NAMESPACE}/image_raw", "-p", f"source:={folder}",
        "-p", "rate_hz:=8.0", "-p", "loop:=true", "-p", "compression:=png", "-p", "frame_id:=cam_src"],
        domain_id, tmp_path / "source.log")
    try:
        def node_answered() -> bool:
            stamps = {stamp_key(m.header.stamp) for m in offered}
            masks = [m for m in link.received["mask"] if stamp_key(m.header.stamp) in stamps]
            return len(offered) >= 4 and len(masks) >= 2

        assert link.probe.spin_until(node_answered, WAIT), (tmp_path / "source.log").read_text()
    finally:
        assert stop(source) == 0, (tmp_path / "source.log").read_text()
    for msg in offered:
        assert msg.format == "rgb8; png compressed bgr8" and msg.header.frame_id == "cam_src"
        decoded = decode_compressed(msg.format, msg.data)
        assert any(np.array_equal(decoded, frame) for frame in frames)


def test_outputs_are_offered_compressed_while_subscribed(link: Link) -> None:
    """~/<output>/compressed beside every image output but the flow: PNG masks and layer ids equal
    the raw outputs exactly, the JPEG picture is the raw one encoded at output_jpeg_quality; same headers."""
    received: dict[str, list[CompressedImage]] = {name: [] for name in ("mask", "motion_layers", "overlay")}
    subscriptions = [link.probe.node.create_subscription(CompressedImage, f"{NODE}/{name}/compressed",
                                                         received[name].append, qos_profile_sensor_data)
                     for name in received]
    assert link.probe.spin_until(lambda: all(s.get_publisher_count() > 0 for s in subscriptions), WAIT)
    assert link.probe.node.count_publishers(f"{NODE}/flow/compressed") == 0

    def compressed_for(stamp: tuple[int, int]) -> dict[str, CompressedImage] | None:
        found = {name: [m for m in msgs if stamp_key(m.header.stamp) == stamp] for name, msgs in received.items()}
        return {name: msgs[-1] for name, msgs in found.items()} if all(found.values()) else None

    seconds, outputs = send_pair(link, 30.0, random_frame(24))
    stamp = stamp_key(outputs["mask"].header.stamp)
    assert link.probe.spin_until(lambda: compressed_for(stamp) is not None, WAIT)
    compressed = compressed_for(stamp)
    assert compressed["mask"].format == "mono8; png compressed mono8"
    assert compressed["overlay"].format == "rgb8; jpeg compressed bgr8"
    for name in ("mask", "motion_layers"):
        decoded = cv2.imdecode(np.frombuffer(compressed[name].data, np.uint8), cv2.IMREAD_UNCHANGED)
        np.testing.assert_array_equal(decoded, decode_msg(outputs[name]))
    # the picture is the raw overlay as JPEG at the default quality (90): the same bytes as encoding it here
    assert bytes(compressed["overlay"].data) == encode_compressed(decode_msg(outputs["overlay"]), "jpeg", 90).data
    assert all(m.header.frame_id == "cam_optical" for m in compressed.values())
    for subscription in subscriptions:
        link.probe.node.destroy_subscription(subscription)
