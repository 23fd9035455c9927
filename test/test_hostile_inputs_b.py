"""Hostile inputs, part B of issue 27: image headers that declare huge sizes in every format OpenCV
decodes, videos and bags shorter than they declare, bag_player's loop period, misspelt config keys
and node parameters.

Commands run in-process through ``cli.main`` with an untrained model; the node runs as a real
process over real DDS on loopback (``perception_link``); bags are real rosbag2 files.
"""
from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from cli_helpers import one_line_error

from jointperception.cli import EXIT_USER_ERROR, main
from jointperception.config import ModelConfig, load_config
from jointperception.data.bags import BagImageWriter
from jointperception.data.compressed_image import decode_compressed
from jointperception.data.formats import read_image, read_mask, write_image
from jointperception.data.image_header import MAX_PIXELS, check_declared_size, declared_size, image_format
from jointperception.data.image_msg import CORRUPT_DATA, OVERSIZED, ImageConversionError
from jointperception.errors import EXIT_SHORT_INPUT, ConfigError, DataFormatError
from jointperception.models import build_model
from jointperception.models.weights import save_weights
from jointperception.names import did_you_mean
from jointperception.ros.play_schedule import PlaySchedule

HUGE = 60000  # 60000 x 60000 = 3.6 Gpx, far above MAX_PIXELS
_JP2 = b"\x00\x00\x00\x0cjP  \r\n\x87\n"


def _ifd_entry(tag: int, value: int) -> bytes:
    return struct.pack("<HHII", tag, 4, 1, value)  # LONG, one value


# format -> a few bytes whose header declares HUGE x HUGE (or the format's largest size)
CRAFTED = {
    "png": b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR" + struct.pack(">II", HUGE, HUGE) + b"\x08\x02\x00\x00\x00"
           + bytes(4),
    "jpeg": b"\xff\xd8\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00" + bytes(9)
            + b"\xff\xc0" + struct.pack(">HBHH", 17, 8, HUGE, HUGE) + bytes(12) + b"\xff\xd9",
    "bmp": b"BM" + bytes(12) + struct.pack("<Iii", 40, HUGE, -HUGE) + bytes(28),
    "tiff": b"II*\x00" + struct.pack("<IH", 8, 2) + _ifd_entry(256, HUGE) + _ifd_entry(257, HUGE) + bytes(4),
    "bigtiff": b"II+\x00" + struct.pack("<HHQQ", 8, 0, 16, 2)
               + struct.pack("<HHQQ", 256, 4, 1, HUGE) + struct.pack("<HHQQ", 257, 4, 1, HUGE),
    "webp (VP8X)": b"RIFF" + struct.pack("<I", 22) + b"WEBPVP8X" + struct.pack("<I", 10) + bytes(4)
                   + (HUGE - 1).to_bytes(3, "little") * 2,
    "webp (VP8L)": b"RIFF" + struct.pack("<I", 13) + b"WEBPVP8L" + struct.pack("<I", 5) + b"\x2f"
                   + struct.pack("<I", 0x3FFF | 0x3FFF << 14),
    "webp (VP8)": b"RIFF" + struct.pack("<I", 18) + b"WEBPVP8 " + struct.pack("<I", 10) + bytes(3)
                  + b"\x9d\x01\x2a" + struct.pack("<HH", 0x3FFF, 0x3FFF),
    "ppm": b"P6\n# a comment\n60000 60000\n255\n",
    "pgm": b"P5 60000\n60000 255\n",
    "pam": b"P7\nWIDTH 60000\nHEIGHT 60000\nDEPTH 3\nMAXVAL 255\nTUPLTYPE RGB\nENDHDR\n",
    "pfm": b"PF\n60000 60000\n-1.0\n",
    "sun raster": b"\x59\xa6\x6a\x95" + struct.pack(">IIII", HUGE, HUGE, 24, 0),
    "radiance hdr": b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n-Y 60000 +X 60000\n",
    "gif": b"GIF89a" + struct.pack("<HH", 0xFFFF, 0xFFFF) + bytes(3),
    "jpeg 2000 (codestream)": b"\xff\x4f\xff\x51" + struct.pack(">HH", 41, 0)
                              + struct.pack(">IIII", HUGE, HUGE, 0, 0),
    "jpeg 2000 (jp2)": _JP2 + struct.pack(">I", 20) + b"ftypjp2 " + bytes(8)
                       + struct.pack(">I", 45) + b"jp2h" + struct.pack(">I", 22) + b"ihdr"
                       + struct.pack(">II", HUGE, HUGE),
    "openexr": b"\x76\x2f\x31\x01\x02\x00\x00\x00" + b"dataWindow\x00box2i\x00" + struct.pack("<I", 16)
               + struct.pack("<iiii", 0, 0, HUGE - 1, HUGE - 1) + b"\x00",
    "avif": struct.pack(">I", 16) + b"ftypavif" + bytes(4) + struct.pack(">I", 20) + b"ispe" + bytes(4)
            + struct.pack(">II", HUGE, HUGE),
}
# suffix OpenCV encodes -> the image array to encode (37 x 53: no format's rounding hides a swap)
_RGB = np.random.default_rng(0).integers(0, 255, (37, 53, 3), dtype=np.uint8)
WRITTEN = {".png": _RGB, ".jpg": _RGB, ".bmp": _RGB, ".tiff": _RGB, ".webp": _RGB, ".ppm": _RGB,
           ".pgm": _RGB[..., 0], ".pbm": _RGB[..., 0], ".pam": _RGB, ".pfm": _RGB.astype(np.float32) / 255, ".sr": _RGB,
           ".hdr": _RGB.astype(np.float32) / 255, ".gif": _RGB, ".jp2": _RGB, ".avif": _RGB}


@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("model") / "untrained.safetensors"
    save_weights(path, build_model(ModelConfig()), ModelConfig(), {"note": "untrained, for tests"})
    return path


def _frames(folder: Path, count: int, size: tuple[int, int] = (48, 64)) -> list[Path]:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    paths = [folder / f"{index:03d}.png" for index in range(count)]
    for path in paths:
        write_image(path, rng.integers(0, 255, (*size, 3), dtype=np.uint8))
    return paths


# --- every decoder is bounded by the declared size --------------------------------------------------


@pytest.mark.parametrize("suffix", sorted(WRITTEN))
def test_the_declared_size_of_every_format_opencv_writes_is_read(suffix: str) -> None:
    """Real files from OpenCV's own encoders: the header parser and the decoder agree on W x H."""
    try:
        ok, buffer = cv2.imencode(suffix, WRITTEN[suffix])
    except cv2.error:
        pytest.skip(f"this OpenCV build has no {suffix} encoder")
    assert ok
    data = buffer.tobytes()
    decoded = cv2.imdecode(buffer, cv2.IMREAD_UNCHANGED)
    assert declared_size(data) == (decoded.shape[1], decoded.shape[0]) == (53, 37)
    assert check_declared_size(data) == (53, 37)


def test_lossless_webp_is_read_too() -> None:
    ok, buffer = cv2.imencode(".webp", _RGB, [cv2.IMWRITE_WEBP_QUALITY, 101])  # > 100: VP8L, lossless
    assert ok and buffer.tobytes()[12:16] == b"VP8L"
    assert declared_size(buffer.tobytes()) == (53, 37)


@pytest.mark.parametrize("name", sorted(CRAFTED))
def test_a_header_declaring_a_huge_image_is_refused_before_decoding(name: str) -> None:
    data = CRAFTED[name]
    width, height = declared_size(data)
    assert width * height > MAX_PIXELS and image_format(data) is not None
    with pytest.raises(ImageConversionError) as caught:
        check_declared_size(data)
    assert caught.value.cause == OVERSIZED and f"{width}x{height}" in str(caught.value)
    with pytest.raises(ImageConversionError) as caught:  # a compressed frame (format read from the data)
        decode_compressed("", data)
    assert caught.value.cause == OVERSIZED


def test_max_pixels_is_the_bound_and_unknown_data_is_refused() -> None:
    ok, buffer = cv2.imencode(".tiff", _RGB)
    with pytest.raises(ImageConversionError) as caught:
        decode_compressed("tiff", buffer.tobytes(), max_pixels=53 * 37 - 1)
    assert caught.value.cause == OVERSIZED
    assert decode_compressed("tiff", buffer.tobytes(), max_pixels=53 * 37).shape == (37, 53, 3)
    for data in (b"", b"not an image at all", CRAFTED["png"][:20]):
        with pytest.raises(ImageConversionError) as caught:
            check_declared_size(data)
        assert caught.value.cause == CORRUPT_DATA


@pytest.mark.parametrize("suffix, name", [(".bmp", "bmp"), (".tif", "tiff"), (".webp", "webp (VP8X)"),
                                          (".ppm", "ppm"), (".png", "png")])
def test_image_and_mask_files_are_bounded(tmp_path: Path, suffix: str, name: str) -> None:
    path = tmp_path / f"huge{suffix}"
    path.write_bytes(CRAFTED[name])
    for read in (read_image, read_mask):
        with pytest.raises(DataFormatError, match=f"{path}.*declares 60000x60000"):
            read(path)


def test_predict_and_record_sample_refuse_an_oversized_frame_in_one_line(
        tmp_path: Path, model_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _frames(tmp_path / "frames", 2)
    huge = tmp_path / "frames" / "999.tiff"  # sorts last: two frames are written before it is read
    huge.write_bytes(CRAFTED["tiff"])
    code = main(["predict", "--input", str(tmp_path / "frames"), "--out", str(tmp_path / "out"),
                 "--model", str(model_file), "--network-size", "64x48"])
    assert code == EXIT_USER_ERROR
    one_line_error(capsys, str(huge), "60000x60000")
    assert not (tmp_path / "out" / "summary.json").exists()  # no summary: not a complete output

    code = main(["record-sample", "--source", str(tmp_path / "frames"), "--out", str(tmp_path / "bag")])
    assert code == EXIT_USER_ERROR
    one_line_error(capsys, str(huge), "60000x60000")


def test_predict_refuses_an_oversized_first_mask(tmp_path: Path, model_file: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    _frames(tmp_path / "frames", 2)
    mask = tmp_path / "mask.bmp"
    mask.write_bytes(CRAFTED["bmp"])
    code = main(["predict", "--input", str(tmp_path / "frames"), "--out", str(tmp_path / "out"),
                 "--model", str(model_file), "--network-size", "64x48", "--first-mask", str(mask)])
    assert code == EXIT_USER_ERROR
    one_line_error(capsys, str(mask), "60000x60000")


# --- a video or bag shorter than it declares ---------------------------------------------------------


def _truncated_video(path: Path, frames: int = 20) -> Path:
    """An MJPG AVI of ``frames`` 64x48 frames cut to 60 % of its bytes: the header still declares them all."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (64, 48))
    if not writer.isOpened():
        pytest.skip("this OpenCV build cannot write MJPG AVI")
    rng = np.random.default_rng(2)
    for _ in range(frames):
        writer.write(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
    writer.release()
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 6 // 10])
    return path


def test_predict_on_a_truncated_video_warns_and_exits_3(tmp_path: Path, model_file: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    video = _truncated_video(tmp_path / "cut.avi")
    declared = cv2.VideoCapture(str(video)).get(cv2.CAP_PROP_FRAME_COUNT)
    if declared != 20:
        pytest.skip(f"this OpenCV backend does not report the AVI header's frame count ({declared})")
    code = main(["predict", "--input", str(video), "--out", str(tmp_path / "out"), "--model", str(model_file),
                 "--network-size", "64x48"])
    assert code == EXIT_SHORT_INPUT
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert 2 <= summary["frame_count"] < 20
    assert summary["warnings"] == [f"{video}: the container declares 20 frames, {summary['frame_count']} decoded"]
    one_line_error(capsys, "warning", "declares 20 frames")
    assert len(list((tmp_path / "out" / "mask").glob("*.png"))) == summary["frame_count"]


def _short_bag(path: Path, frames: int = 4) -> Path:
    """A real bag of ``frames`` 64x48 frames on /cam/image_raw whose metadata lists 3 more."""
    rng = np.random.default_rng(3)
    with BagImageWriter(path) as writer:
        for index in range(frames):
            writer.write("/cam/image_raw", 1_000_000_000 + index * 100_000_000,
                         rng.integers(0, 255, (48, 64, 3), dtype=np.uint8), "rgb8", "cam")
    meta = yaml.safe_load((path / "metadata.yaml").read_text())
    for entry in meta["rosbag2_bagfile_information"]["topics_with_message_count"]:
        entry["message_count"] += 3
    (path / "metadata.yaml").write_text(yaml.safe_dump(meta))
    return path


def test_predict_and_replay_on_a_bag_shorter_than_its_metadata_warn_and_exit_3(
        tmp_path: Path, model_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bag = _short_bag(tmp_path / "short")
    expected = f"{bag}: the metadata lists 7 messages on /cam/image_raw, the storage gave 4"
    code = main(["predict", "--input", str(bag), "--out", str(tmp_path / "out"), "--model", str(model_file),
                 "--network-size", "64x48"])
    assert code == EXIT_SHORT_INPUT
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["frame_count"] == 4 and summary["warnings"] == [expected]
    one_line_error(capsys, "warning", expected)

    code = main(["replay", str(bag), "--out", str(tmp_path / "replayed"), "--topic", "/cam/image_raw",
                 "--model", str(model_file), "--network-size", "64x48", "--samples", "0"])
    assert code == EXIT_SHORT_INPUT
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["frames"]["received"] == 4 and metrics["warnings"] == [expected]
    assert capsys.readouterr().err.strip().splitlines() == [
        f"jointperception replay: warning: {expected} (metrics.json lists it; exit {EXIT_SHORT_INPUT})"]


# --- misspelt names ----------------------------------------------------------------------------------


def test_nearest_name_is_suggested() -> None:
    assert did_you_mean("network_widht", ["network_width", "network_height"]) == "did you mean network_width?"
    assert did_you_mean("zzz", ["network_width"]) == ""


def test_unknown_node_parameters_are_named_with_the_nearest_one() -> None:
    pytest.importorskip("rclpy", reason="ROS 2 wheels (rclpy) not installed")
    from jointperception.ros.common import unknown_parameter_warnings
    from jointperception.ros.node_parts import PARAMETERS

    given = ["network_widht", "max_pixel", "qos_overrides./image.subscription.depth", "mask_threshold", "xyzzy"]
    assert unknown_parameter_warnings(given, PARAMETERS) == [
        "unknown parameter 'max_pixel' ignored, did you mean max_pixels?",
        "unknown parameter 'network_widht' ignored, did you mean network_width?",
        "unknown parameter 'xyzzy' ignored",
    ]


def test_a_misspelt_training_config_key_is_refused_with_the_nearest_name(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("train:\n  bacth_size: 4\n")
    with pytest.raises(ConfigError, match=r"train\.bacth_size: unknown key, did you mean batch_size\?"):
        load_config(config)


# --- bag_player --loop keeps its period -------------------------------------------------------------


def test_the_play_schedule_keeps_the_period_across_passes() -> None:
    """A 4-message bag looped three times: every interval, the pass boundaries included, is one period."""
    fixed = PlaySchedule(100.0, rate_hz=15.0)
    bag_timing = PlaySchedule(100.0, rate=2.0)  # logged at 15 Hz, played twice as fast
    logged = [5_000_000_000 + round(index * 1e9 / 15) for index in range(4)]
    fixed_dues, bag_dues = [], []
    for pass_index in range(3):
        if pass_index:
            fixed.next_pass()
            bag_timing.next_pass()
        fixed_dues += [fixed.due(index, log_time) for index, log_time in enumerate(logged)]
        bag_dues += [bag_timing.due(index, log_time) for index, log_time in enumerate(logged)]
    np.testing.assert_allclose(np.diff(fixed_dues), 1 / 15, atol=1e-9)
    np.testing.assert_allclose(np.diff(bag_dues), 1 / 30, atol=1e-9)


def test_a_late_player_shifts_the_schedule_and_keeps_the_period() -> None:
    schedule = PlaySchedule(0.0, rate_hz=10.0)
    assert schedule.due(0, 0) == 0.0
    schedule.shift(0.5)  # the player was half a second late for message 0
    assert schedule.due(1, 0) == pytest.approx(0.6)
    schedule.next_pass()
    assert schedule.due(0, 0) == pytest.approx(0.7)
    single = PlaySchedule(0.0)
    single.due(0, 7)
    single.next_pass()  # a one-message bag at bag timing has no period
    assert single.due(0, 7) == 0.0


def test_bag_player_loops_at_its_rate_over_dds(tmp_path: Path) -> None:
    """bag_player --loop --restamp --rate-hz 10 on a 3-frame bag, as a real process: the stamps
    (publish times) of consecutive messages stay one period apart over the pass boundaries."""
    pytest.importorskip("rclpy", reason="ROS 2 wheels (rclpy) not installed")
    from rclpy.qos import qos_profile_sensor_data
    from ros_helpers import REPO, open_probe, pick_domain_id, ros_env, stop
    from sensor_msgs.msg import Image

    bag = tmp_path / "three"
    with BagImageWriter(bag) as writer:
        for index in range(3):
            writer.write("/cam/image_raw", 1_000_000_000 + index * 100_000_000, _RGB, "rgb8", "cam")
    domain_id = pick_domain_id()
    probe = open_probe(domain_id)
    stamps: list[float] = []
    probe.node.create_subscription(Image, "/cam/image_raw",
                                   lambda m: stamps.append(m.header.stamp.sec + m.header.stamp.nanosec * 1e-9),
                                   qos_profile_sensor_data)
    log = tmp_path / "player.log"
    with open(log, "wb") as out:
        player = subprocess.Popen(
            [sys.executable, "-m", "jointperception.ros.bag_player", str(bag), "--loop", "--restamp", "--rate-hz", "10",
             "--duration", "1.25", "--wait-subscribers", "1"],
            env=ros_env(domain_id), cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
    try:
        assert probe.spin_until(lambda: player.poll() is not None, 60.0), log.read_text()
        probe.spin_for(0.3)
    finally:
        stop(player)
        probe.close()
    assert player.returncode == 0, log.read_text()
    intervals = np.diff(stamps)
    assert len(stamps) >= 7, (stamps, log.read_text())  # at least two pass boundaries
    assert intervals.min() > 0.07, intervals  # the old player sent a pass's first frame at once (~0 s)
    assert np.median(intervals) == pytest.approx(0.1, abs=0.01)


# --- the node: a misspelt parameter is named, max_pixels bounds compressed frames --------------------


def test_node_warns_of_a_misspelt_parameter_and_drops_frames_above_max_pixels(tmp_path: Path) -> None:
    """perception_node (compressed input, max_pixels 3000) started with a params file holding
    ``network_widht``: the log names it with the nearest parameter; a 48x40 PNG frame (1920 px) is
    served, a 96x64 one (6144 px) is dropped with cause oversized, and the node keeps serving."""
    pytest.importorskip("rclpy", reason="ROS 2 wheels (rclpy) not installed")
    from perception_link import linked, random_frame, save_untrained_model, send_pair
    from ros_helpers import pick_domain_id, start_module, stop

    model = save_untrained_model(tmp_path / "m.safetensors")
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"/**": {"ros__parameters": {
        "network_widht": 64, "max_pixels": 3000, "model": str(model), "threads": 1, "network_height": 48,
        "network_width": 64, "backend": "torch", "image_transport": "compressed", "diagnostics_period_s": 0.2,
        "mask_memory": 0.0}}}))
    domain_id = pick_domain_id()
    log = tmp_path / "node.log"
    process = start_module("jointperception.ros.perception_node", ["--params-file", str(params), "-r", "__ns:=/camh",
                                                                   "-r", "image:=/camh/image_raw"], domain_id, log)
    try:
        with linked((process, log), domain_id, node="/camh/jointperception_node", camera="/camh",
                    compression="png") as link:
            send_pair(link, 10.0, random_frame(5, height=40, width=48))
            before = link.count("bad: oversized")
            link.send(11.0, random_frame(6))  # 96 x 64
            link.expect_count("bad: oversized", before + 1)
            send_pair(link, 12.0, random_frame(7, height=40, width=48))  # still serving
            assert process.poll() is None
    finally:
        stop(process)
    text = log.read_text()
    assert "unknown parameter 'network_widht' ignored, did you mean network_width?" in text, text
    assert "header declares 96x64 pixels, more than the 3000 allowed" in text, text
