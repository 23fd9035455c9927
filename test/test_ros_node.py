"""perception_node and camera_source as real processes, talking real DDS on loopback.

One node process serves the module (untrained model, 96x64 network, one torch thread). The test
process is a second participant (``Probe``): it publishes frames with chosen stamps and
subscribes to every output and to /diagnostics. Frames are sent in lock-step with the node's
answers (outputs or diagnostics counters), so the latest-only slot has no reason to drop a
test frame; a pair whose first frame was still dropped (a loaded machine) is sent again.
"""
from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rclpy", reason="ROS 2 wheels (rclpy) not installed")

from perception_link import (  # noqa: E402
    HEIGHT,
    OUTPUTS,
    WAIT,
    WIDTH,
    Link,
    call_service,
    decode_msg,
    linked,
    random_frame,
    save_untrained_model,
    send_pair,
    stamp_key,
)
from rcl_interfaces.srv import GetParameters, SetParameters  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import qos_profile_sensor_data  # noqa: E402
from ros_helpers import (  # noqa: E402
    REPO,
    pick_domain_id,
    ros_env,
    start_module,
    stop,
)
from sensor_msgs.msg import CameraInfo, Image  # noqa: E402

from jointperception.data.formats import write_image  # noqa: E402
from jointperception.runtime.mask_memory import DEFAULT_MEMORY_WEIGHT, MaskMemory  # noqa: E402
from jointperception.runtime.pipeline import PerceptionPipeline  # noqa: E402
from jointperception.viz import flow_to_color, overlay_mask  # noqa: E402

NODE = "/jointperception_node"


@pytest.fixture(scope="module")
def domain_id() -> int:
    return pick_domain_id()


@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("model") / "m.safetensors"
    return save_untrained_model(path)


@pytest.fixture(scope="module")
def node(model_file: Path, domain_id: int, tmp_path_factory: pytest.TempPathFactory):
    log = tmp_path_factory.mktemp("node") / "node.log"
    args = ["-p", f"model:={model_file}", "-p", "threads:=1", "-p", "backend:=torch", "-p", f"network_width:={WIDTH}",
            "-p", f"network_height:={HEIGHT}", "-p", "diagnostics_period_s:=0.2",
            "-r", "image:=/cam/image_raw", "-r", "camera_info:=/cam/camera_info"]
    process = start_module("jointperception.ros.perception_node", args, domain_id, log)
    yield process, log
    stop(process)


@pytest.fixture(scope="module")
def link(node, domain_id: int):
    with linked(node, domain_id) as link:
        yield link


def test_outputs_carry_the_input_header_encoding_and_size(link: Link, model_file: Path) -> None:
    info = CameraInfo(width=2 * WIDTH, height=2 * HEIGHT, distortion_model="plumb_bob", d=[0.1, 0.0, 0.0, 0.0, 0.0],
                      k=[200.0, 0.0, 96.0, 0.0, 200.0, 64.0, 0.0, 0.0, 1.0],
                      p=[200.0, 0.0, 96.0, 0.0, 0.0, 200.0, 64.0, 0.0, 0.0, 0.0, 1.0, 0.0])
    link.info_pub.publish(info)
    link.probe.spin_for(0.2)
    assert _set(link, "mask_memory", 0.0).successful  # a retried pair (send_pair) must not carry a mask over
    frame = random_frame(1)
    stamp, outputs = send_pair(link, 10.25, frame)
    assert _set(link, "mask_memory", DEFAULT_MEMORY_WEIGHT).successful
    newest = np.roll(frame, 3, axis=1)
    for name, encoding in OUTPUTS.items():
        msg = outputs[name]
        assert msg.header.frame_id == "cam_optical"
        assert (msg.encoding, msg.height, msg.width) == (encoding, HEIGHT, WIDTH), name
    mask = decode_msg(outputs["mask"])
    assert set(np.unique(mask)) <= {0, 255}
    assert set(np.unique(decode_msg(outputs["occlusion"]))) <= {0, 255}
    flow = decode_msg(outputs["flow"])
    assert flow.shape == (HEIGHT, WIDTH, 2) and flow.dtype == np.float32 and np.isfinite(flow).all()
    # the same pipeline in this process: outputs of the newest frame, flow newest -> previous
    pipeline = PerceptionPipeline.from_model_file(model_file, network_size=(WIDTH, HEIGHT))
    expected = pipeline.infer_pair(newest, frame)
    np.testing.assert_allclose(flow, expected.flow, atol=1e-3)
    assert np.abs(pipeline.infer_pair(frame, newest).flow - flow).max() > 1e-2  # the order matters
    decided = np.abs(expected.mask_probability - 0.5) > 1e-3
    np.testing.assert_array_equal((mask > 0)[decided], expected.mask[decided])
    # the pictures are of the newest frame and of the published flow
    np.testing.assert_array_equal(decode_msg(outputs["overlay"]), overlay_mask(newest, mask > 0))
    np.testing.assert_array_equal(decode_msg(outputs["flow_color"]), flow_to_color(flow))
    layers = decode_msg(outputs["motion_layers"])
    assert np.mean(layers == expected.layers) > 0.99  # argmax ties may fall either way across processes
    assert np.bincount(layers.ravel()).argmax() == 0  # 0 is the background: the largest layer

    info_out = link.expect_output(stamp, ("camera_info",))["camera_info"]
    assert info_out.header.frame_id == "cam_optical"
    assert (info_out.width, info_out.height) == (WIDTH, HEIGHT)
    np.testing.assert_allclose(info_out.k, [100.0, 0.0, 48.0, 0.0, 100.0, 32.0, 0.0, 0.0, 1.0])
    np.testing.assert_allclose(info_out.p[:7], [100.0, 0.0, 48.0, 0.0, 0.0, 100.0, 32.0])
    np.testing.assert_allclose(info_out.d, info.d)


def _call(link: Link, service_type, name: str, request):
    return call_service(link.probe, service_type, f"{NODE}/{name}", request)


def _set(link: Link, name: str, value: object):
    request = SetParameters.Request(parameters=[Parameter(name, value=value).to_parameter_msg()])
    return _call(link, SetParameters, "set_parameters", request).results[0]


def test_refine_flow_parameter_switches_the_published_flow(link: Link, model_file: Path) -> None:
    """With refine_flow off the node publishes the network's own flow, which differs from the refined one."""
    assert _set(link, "refine_flow", False).successful
    frame = random_frame(21)
    stamp, outputs = send_pair(link, 70.0, frame)
    assert _set(link, "refine_flow", True).successful
    flow = decode_msg(outputs["flow"])
    newest = np.roll(frame, 3, axis=1)
    pipeline = PerceptionPipeline.from_model_file(model_file, network_size=(WIDTH, HEIGHT), refine=False)
    np.testing.assert_allclose(flow, pipeline.infer_pair(newest, frame).flow, atol=1e-3)
    pipeline.refine = True
    assert np.abs(pipeline.infer_pair(newest, frame).flow - flow).max() > 1e-2


def test_mask_memory_carries_the_last_mask_into_the_newest(link: Link, model_file: Path) -> None:
    """Frames A, B, C in a row: C's mask is the pipeline's with the memory of B, not C's own."""
    assert _set(link, "mask_memory", 0.95).successful
    # the untrained net's occlusion would gate every pixel, and its mask probability stays below 0.5
    assert _set(link, "occlusion_threshold", 1.0).successful and _set(link, "mask_threshold", 0.3).successful
    assert _set(link, "reset_gap_s", 0.5).successful  # a retried pair (1 s later) starts afresh
    a = random_frame(11)
    b, c = np.roll(a, 3, axis=1), np.roll(a, 6, axis=1)
    stamp, _ = send_pair(link, 50.0, a)  # A, then B at stamp
    link.send(stamp + 0.1, c)
    assert link.probe.spin_until(lambda: link.output_for(stamp + 0.1, ("mask",)) is not None, 10.0)
    mask = decode_msg(link.output_for(stamp + 0.1, ("mask",))["mask"]) > 0
    for name, value in (("mask_memory", DEFAULT_MEMORY_WEIGHT), ("reset_gap_s", 1.0), ("occlusion_threshold", 0.5), ("mask_threshold", 0.5)):
        assert _set(link, name, value).successful

    pipeline = PerceptionPipeline.from_model_file(model_file, network_size=(WIDTH, HEIGHT))
    pipeline.occlusion_threshold, pipeline.mask_threshold = 1.0, 0.3
    memory = MaskMemory(0.95)
    pipeline.infer_pair(b, a, memory)
    expected, plain = pipeline.infer_pair(c, b, memory), pipeline.infer_pair(c, b)
    decided = np.abs(expected.mask_probability - 0.3) > 1e-3
    np.testing.assert_array_equal(mask[decided], expected.mask[decided])
    assert (mask[decided] != plain.mask[decided]).any()  # the memory changed what was published


def test_parameters_are_validated_and_applied_on_set(link: Link) -> None:
    assert _set(link, "mask_threshold", 0.25).successful
    values = _call(link, GetParameters, "get_parameters", GetParameters.Request(names=["mask_threshold"])).values
    assert values[0].double_value == 0.25
    for name, value in [("mask_threshold", 1.5), ("max_rate_hz", -1.0), ("reset_gap_s", "long"),
                        ("backend", "onnxruntime"), ("network_width", 10),
                        ("mask_source", "both"), ("mask_memory", 0.99), ("mask_memory", -0.1), ("prealign", "yes"),
                        ("refine_flow", 1)]:
        result = _set(link, name, value)
        assert not result.successful and result.reason, (name, value)
    for source in ("segmentation", "motion", "fused"):
        assert _set(link, "mask_source", source).successful
    for weight in (0.0, DEFAULT_MEMORY_WEIGHT):  # memory off, then the default again
        assert _set(link, "mask_memory", weight).successful
    for prealign in (False, True):
        assert _set(link, "prealign", prealign).successful
    for refine in (False, True):
        assert _set(link, "refine_flow", refine).successful

    for threshold, expected in [(1.0, 0), (0.0, 255)]:  # probability > 1 never, > 0 always
        assert _set(link, "mask_threshold", threshold).successful
        _stamp_out, outputs = send_pair(link, 20.0 + threshold, random_frame(6))
        assert (decode_msg(outputs["mask"]) == expected).all()
    assert _set(link, "mask_threshold", 0.5).successful

    assert _set(link, "max_rate_hz", 0.5).successful
    before = link.count("dropped: rate_limit")
    for index in range(3):  # within 2 s of each other: at most one passes
        link.send(30.0 + index * 0.1, random_frame(index))
        link.probe.spin_for(0.1)
    link.expect_count("dropped: rate_limit", before + 2)
    assert _set(link, "max_rate_hz", 0.0).successful


@pytest.mark.parametrize("module, parameter, message", [
    ("perception_node", "backend:=bogus", "backend must be one of"),
    ("lifecycle_node", "mask_threshold:=2.0", "mask_threshold out of range"),  # backend is checked on configure
    ("camera_source", "source:=/no/such/folder", "camera_source: error:"),
    ("perception_node", "image_transport:=theora", "image_transport must be one of"),
    ("camera_source", "compression:=gif", "compression must be jpeg or png"),
])
def test_bad_startup_parameter_exits_with_code_2(domain_id: int, module: str, parameter: str, message: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", f"jointperception.ros.{module}", "--ros-args", "-p", parameter],
        env=ros_env(domain_id), cwd=REPO, capture_output=True, text=True, timeout=WAIT,
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and message in result.stderr and "Traceback" not in result.stderr


def _bad_frames() -> list[tuple[str, dict[str, object]]]:
    """(cause, Image fields) for each kind of bad input; causes repeat to test logging once."""
    rgb = random_frame(7).tobytes()
    nan_depth = np.full((HEIGHT, WIDTH), 0.5, dtype=np.float32)
    nan_depth[3, 4] = np.nan
    flow = np.zeros((HEIGHT, WIDTH, 2), dtype=np.float32)

    def fields(encoding: str, data: bytes, step: int, height: int = HEIGHT, width: int = WIDTH) -> dict[str, object]:
        return dict(encoding=encoding, height=height, width=width, step=step, data=data)

    return [
        ("unsupported_encoding", fields("16SC1", bytes(HEIGHT * WIDTH * 2), WIDTH * 2)),
        ("unsupported_encoding", fields("16UC3", bytes(HEIGHT * WIDTH * 6), WIDTH * 6)),
        ("unsupported_encoding", fields("jpeg", b"\xff\xd8\xff\xe0" * 16, 64, height=1, width=64)),
        ("unsupported_encoding", fields("32FC2", flow.tobytes(), WIDTH * 8)),
        ("wrong_step", fields("rgb8", rgb[: HEIGHT * (WIDTH * 3 - 2)], WIDTH * 3 - 2)),
        ("zero_size", fields("rgb8", b"", 0, width=0)),
        ("zero_size", fields("rgb8", b"", WIDTH * 3, height=0)),
        ("truncated_data", fields("rgb8", rgb[:-10], WIDTH * 3)),
        ("excess_data", fields("rgb8", rgb + bytes(3), WIDTH * 3)),
        ("odd_width", fields("yuv422", bytes(HEIGHT * 95 * 2), 95 * 2, width=95)),
        ("nan_values", fields("32FC1", nan_depth.tobytes(), WIDTH * 4)),
    ]


def test_bad_input_is_skipped_logged_once_and_counted(link: Link, node) -> None:
    process, log = node
    send_pair(link, 100.0, random_frame(2))  # a known state: the node serves good frames
    expected = {cause: link.count(f"bad: {cause}") for cause, _fields in _bad_frames()}
    for index, (cause, fields) in enumerate(_bad_frames()):
        expected[cause] += 1
        link.send(100.2 + 0.01 * index, fields=fields)
        link.expect_count(f"bad: {cause}", expected[cause])

    # pair resets: each frame that breaks the pair is counted, and the next frame pairs with it
    small = random_frame(3, height=32, width=48)
    steps = [
        ("stamp_backwards", 50.0, "rgb8", random_frame(4)),
        ("size_change", 50.2, "rgb8", small),
        ("encoding_change", 50.4, "bgr8", small),
        ("time_gap", 55.0, "bgr8", small),
    ]
    for reason, seconds, encoding, rgb in steps:
        before = link.count(f"pair resets: {reason}")
        link.send(seconds, rgb, encoding)
        link.expect_count(f"pair resets: {reason}", before + 1)
        link.send(seconds + 0.1, np.roll(rgb, 2, axis=1), encoding)
        outputs = link.expect_output(seconds + 0.1)
        assert (outputs["mask"].height, outputs["mask"].width) == rgb.shape[:2]

    assert process.poll() is None
    text = log.read_text()
    for cause in [*expected, *(reason for reason, *_rest in steps)]:
        assert text.count(f"[{cause};") == 1, f"{cause} logged {text.count(f'[{cause};')} times:\n{text}"
    assert link.count("bad frames") >= sum(expected.values())


def test_camera_source_to_node_to_subscriber(link: Link, domain_id: int, tmp_path: Path) -> None:
    folder = tmp_path / "frames"
    folder.mkdir()
    frames = [random_frame(10 + i) for i in range(3)]
    for index, frame in enumerate(frames):
        write_image(folder / f"{index:03d}.png", frame)
    calibration = tmp_path / "calib.yaml"
    calibration.write_text(
        f"image_width: {2 * WIDTH}\nimage_height: {2 * HEIGHT}\ncamera_name: test\n"
        "camera_matrix: {rows: 3, cols: 3, data: [200, 0, 96, 0, 200, 64, 0, 0, 1]}\n"
        "distortion_model: plumb_bob\n"
        "distortion_coefficients: {rows: 1, cols: 5, data: [0.1, 0, 0, 0, 0]}\n"
    )
    source_images: list[Image] = []
    link.probe.node.create_subscription(Image, "/cam/image_raw", source_images.append, qos_profile_sensor_data)
    looping = start_module("jointperception.ros.camera_source", [
        "-r", "__ns:=/cam", "-p", f"source:={folder}", "-p", "rate_hz:=8.0", "-p", "loop:=true",
        "-p", "frame_id:=cam_src", "-p", f"calibration_file:={calibration}"], domain_id, tmp_path / "loop.log")
    once = start_module("jointperception.ros.camera_source", [
        "-r", "__ns:=/once", "-p", f"source:={folder}", "-p", "rate_hz:=20.0"], domain_id, tmp_path / "once.log")
    try:
        def node_answered() -> bool:
            stamps = {stamp_key(m.header.stamp) for m in source_images}
            masks = [m for m in link.received["mask"] if stamp_key(m.header.stamp) in stamps]
            infos = [m for m in link.received["camera_info"] if m.header.frame_id == "cam_src"]
            return len(source_images) >= 5 and len(masks) >= 2 and bool(infos)

        assert link.probe.spin_until(node_answered, WAIT), (tmp_path / "loop.log").read_text()
        assert stop(looping) == 0
        assert once.wait(WAIT) == 0
    finally:
        stop(looping)
        stop(once)
    assert "end of" in (tmp_path / "once.log").read_text()
    decoded = [decode_msg(m) for m in source_images]
    positions = [next(i for i, f in enumerate(frames) if np.array_equal(d, f)) for d in decoded]
    assert all((b - a) % 3 == 1 for a, b in zip(positions, positions[1:])), positions  # in order, looping
    assert all(m.header.frame_id == "cam_src" and m.encoding == "rgb8" for m in source_images)
    stamps = [stamp_key(m.header.stamp) for m in source_images]
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)
    info = [m for m in link.received["camera_info"] if m.header.frame_id == "cam_src"][-1]
    assert (info.width, info.height) == (WIDTH, HEIGHT) and info.k[0] == pytest.approx(100.0)


def test_node_stops_cleanly_on_sigint_while_streaming(link: Link, node) -> None:
    """Ctrl-C lands while the worker publishes: exit code 0 and no traceback."""
    process, log = node
    frame = random_frame(5)
    for index in range(30):  # about 30 fps: the worker is busy most of the time
        if index == 15:
            process.send_signal(signal.SIGINT)
        link.send(500.0 + index / 30.0, np.roll(frame, index, axis=1))
        link.probe.spin_for(1.0 / 30.0)
    assert process.wait(WAIT) == 0
    assert "Traceback" not in log.read_text(), log.read_text()
