"""record-sample -> replay: the output bag carries every output topic with the input stamps, the
outputs are the node's infer_pair(newest, previous, memory), GT is scored, and the report is written."""
from __future__ import annotations

import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest

from jointperception.cli import main
from jointperception.config import ModelConfig
from jointperception.data.bags import BagImageWriter, bag_topics, read_image_messages, record_rgb
from jointperception.data.compressed_image import EncodedCompressedImage
from jointperception.data.formats import write_image, write_mask
from jointperception.data.image_msg import EncodedImage, decode_image, image_to_rgb
from jointperception.eval.metrics import flow_errors, jaccard
from jointperception.eval.replay import ReplaySettings, replay_bag
from jointperception.models import build_model
from jointperception.models.weights import save_weights
from jointperception.runtime.mask_memory import MaskMemory
from jointperception.runtime.pipeline import PerceptionPipeline

TOPIC = "/camera/image_raw"
PREFIX = "/jointperception_node"
NETWORK = (96, 64)
OUTPUTS = {"mask": ("mono8", ()), "flow": ("32FC2", (2,)), "occlusion": ("mono8", ()),
           "motion_layers": ("mono8", ()), "flow_color": ("rgb8", (3,)), "overlay": ("rgb8", (3,))}


@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("model") / "m.safetensors"
    return save_weights(path, build_model(ModelConfig()), ModelConfig(), {})


@pytest.fixture(scope="module")
def replayed(tmp_path_factory: pytest.TempPathFactory, model_file: Path) -> tuple[Path, Path, Path]:
    """(sample bag, output bag, report folder) of one record-sample + replay run through the CLI."""
    root = tmp_path_factory.mktemp("replay")
    sample, out = root / "sample", root / "run" / "out_bag"
    assert main(["record-sample", "--out", str(sample), "--frames", "6", "--size", "96x64",
                 "--storage", "sqlite3", "--encoding", "bgr8"]) == 0
    assert main(["replay", str(sample), "--topic", TOPIC, "--out", str(out), "--model", str(model_file),
                 "--network-size", "96x64"]) == 0
    return sample, out, root / "run"


def _frames(bag: Path, topic: str) -> list[tuple[int, str, np.ndarray]]:
    return [(r.stamp_ns, r.encoding, decode_image(*r[2:])) for r in read_image_messages(bag, topic)]


def test_sample_bag_gt_follows_the_flow_convention_of_the_node(replayed: tuple[Path, Path, Path]) -> None:
    """/gt/flow of frame t points to where its pixels are in frame t-1: warping t-1 by it gives t."""
    sample = replayed[0]
    assert set(bag_topics(sample)) == {TOPIC, "/gt/mask", "/gt/flow", "/gt/occlusion"}
    images = [image_to_rgb(*r[2:]).astype(np.float32) for r in read_image_messages(sample, TOPIC)]
    flows = _frames(sample, "/gt/flow")
    occlusions = {stamp: array > 0 for stamp, _, array in _frames(sample, "/gt/occlusion")}
    stamps = [r.stamp_ns for r in read_image_messages(sample, TOPIC)]
    assert [stamp for stamp, _, _ in flows] == stamps[1:]
    height, width = images[0].shape[:2]
    grid_x, grid_y = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    for t, (stamp, encoding, flow) in enumerate(flows, start=1):
        assert encoding == "32FC2" and flow.shape == (height, width, 2)
        visible = ~occlusions[stamp]

        def warp_error(sign: float, t: int = t, flow: np.ndarray = flow, visible: np.ndarray = visible) -> float:
            warped = cv2.remap(images[t - 1], grid_x + sign * flow[..., 0], grid_y + sign * flow[..., 1],
                               cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            return float(np.abs(warped - images[t])[visible].mean())

        assert warp_error(1.0) < 0.6 * warp_error(-1.0)


def test_output_bag_has_every_output_with_input_stamps(replayed: tuple[Path, Path, Path], model_file: Path) -> None:
    sample, out, _report = replayed
    inputs = list(read_image_messages(sample, TOPIC))
    topics = bag_topics(out)
    assert set(topics) == {TOPIC} | {f"{PREFIX}/{name}" for name in OUTPUTS}
    copied = list(read_image_messages(out, TOPIC))
    assert [(r.stamp_ns, r.frame_id, r.encoding, r.data.tobytes()) for r in copied] == [
        (r.stamp_ns, r.frame_id, r.encoding, r.data.tobytes()) for r in inputs]

    pipeline = PerceptionPipeline.from_model_file(model_file, "torch", "cpu", NETWORK)
    rgb = [image_to_rgb(*r[2:]) for r in inputs]
    memory = MaskMemory()  # the node's default, as replay's
    expected = [pipeline.infer_pair(rgb[t], rgb[t - 1], memory) for t in range(1, len(rgb))]  # (newest, previous)
    outputs = {name: list(read_image_messages(out, f"{PREFIX}/{name}")) for name in OUTPUTS}
    for name, (encoding, channels) in OUTPUTS.items():
        records = outputs[name]
        assert [r.stamp_ns for r in records] == [r.stamp_ns for r in inputs[1:]], name
        assert {r.frame_id for r in records} == {"camera"}
        for record in records:
            assert record.encoding == encoding
            assert decode_image(*record[2:]).shape == (64, 96, *channels)
    for record, want in zip(outputs["flow"], expected):
        np.testing.assert_allclose(decode_image(*record[2:]), want.flow, atol=1e-4)
    for record, want in zip(outputs["mask"], expected):
        np.testing.assert_array_equal(decode_image(*record[2:]), want.mask.astype(np.uint8) * 255)


def test_metrics_json_scores_outputs_against_gt(replayed: tuple[Path, Path, Path]) -> None:
    sample, out, report = replayed
    metrics = json.loads((report / "metrics.json").read_text())
    assert metrics["frames"] == {"received": 6, "processed": 5}
    assert metrics["output_topics"][f"{PREFIX}/flow"] == 5
    assert set(metrics["gt"]) == {"mask", "flow", "occlusion"}
    gt_masks = {stamp: array > 0 for stamp, _, array in _frames(sample, "/gt/mask")}
    gt_flows = {stamp: array for stamp, _, array in _frames(sample, "/gt/flow")}
    gt_occlusion = {stamp: array > 0 for stamp, _, array in _frames(sample, "/gt/occlusion")}
    masks = {stamp: array > 0 for stamp, _, array in _frames(out, f"{PREFIX}/mask")}
    flows = {stamp: array for stamp, _, array in _frames(out, f"{PREFIX}/flow")}
    rows = metrics["per_frame"]
    assert [row["stamp_ns"] for row in rows] == sorted(flows)
    for row in rows:
        stamp = row["stamp_ns"]
        assert row["latency_ms"] > 0
        assert row["j"] == pytest.approx(jaccard(masks[stamp], gt_masks[stamp]))
        errors = flow_errors(flows[stamp], gt_flows[stamp], occlusion=gt_occlusion[stamp])
        assert row["epe_all"] == pytest.approx(errors["epe_all"], rel=1e-6)
    assert metrics["gt"]["flow"]["epe_all"] == pytest.approx(np.mean([row["epe_all"] for row in rows]), rel=1e-6)
    assert metrics["gt"]["mask"]["j_mean"] == pytest.approx(np.mean([row["j"] for row in rows]))
    assert metrics["gt"]["flow"]["num_pairs"] == 5
    assert metrics["latency_ms"]["p99"] >= metrics["latency_ms"]["p50"] > 0


def test_report_references_plots_and_samples(replayed: tuple[Path, Path, Path]) -> None:
    report = replayed[2]
    page = (report / "report.html").read_text()
    images = re.findall(r'<img src="([^"]+)"', page)
    assert {"report_files/latency.png", "report_files/quality.png"} <= set(images)
    samples = [name for name in images if "sample_" in name]
    assert len(samples) == 4  # ReplaySettings.samples, spread over the 5 processed frames
    for name in images:
        picture = cv2.imread(str(report / name))
        assert picture is not None and picture.size > 0, name
    assert "epe_all" in page and "j_mean" in page


def _write(writer: BagImageWriter, stamp_s: float, rgb: np.ndarray, encoding: str = "rgb8") -> None:
    """One frame stamped ``stamp_s``, logged 1 ms after the previous one (a recorder's order)."""
    image = rgb[..., ::-1] if encoding == "bgr8" else rgb
    log_time = round(20e9) + sum(writer.counts.values()) * 1_000_000
    writer.write(TOPIC, round(stamp_s * 1e9), np.ascontiguousarray(image), encoding, "cam", log_time)


def test_replay_pairs_like_the_node(tmp_path: Path, model_file: Path) -> None:
    """Pairs reset on a backward stamp, an encoding or size change and a long gap; bad frames are
    counted and skipped without breaking the pair."""
    rng = np.random.default_rng(0)
    small, large = (rng.integers(0, 256, (48, 64, 3), dtype=np.uint8) for _ in range(2))
    large = np.ascontiguousarray(np.tile(large, (2, 2, 1))[:64, :96])
    bag = tmp_path / "events"
    with BagImageWriter(bag) as writer:
        _write(writer, 10.0, small)
        _write(writer, 10.1, small)  # pairs -> output at 10.1
        truncated = EncodedImage("rgb8", 48, 64, 192, 0, bytes(100))
        writer.write_fields(TOPIC, round(10.15e9), truncated, "cam", round(20e9) + 2_000_000)
        _write(writer, 10.2, small)  # pairs with 10.1 -> output
        _write(writer, 10.0, small)  # stamp backwards: reset
        _write(writer, 10.3, small, "bgr8")  # encoding change: reset
        _write(writer, 10.4, small, "bgr8")  # output
        _write(writer, 10.5, large, "bgr8")  # size change: reset
        _write(writer, 12.0, large, "bgr8")  # gap of 1.5 s > 1 s: reset
        _write(writer, 12.1, large, "bgr8")  # output
    pipeline = PerceptionPipeline.from_model_file(model_file, "torch", "cpu", NETWORK)
    result = replay_bag(pipeline, bag, tmp_path / "out", ReplaySettings(samples=0))
    assert result.counts == {
        "received": 10, "processed": 4, "bad: truncated_data": 1, "pair resets: stamp_backwards": 1,
        "pair resets: encoding_change": 1, "pair resets: size_change": 1, "pair resets: time_gap": 1,
    }
    assert [row["stamp_ns"] for row in result.frames] == [round(s * 1e9) for s in (10.1, 10.2, 10.4, 12.1)]
    assert result.gt == {}
    sizes = [decode_image(*r[2:]).shape for r in read_image_messages(tmp_path / "out", f"{PREFIX}/mask")]
    assert sizes == [(48, 64)] * 3 + [(64, 96)]


def test_png_compressed_sample_replays_like_the_raw_one(replayed: tuple[Path, Path, Path], model_file: Path,
                                                       tmp_path: Path) -> None:
    """record-sample --compression png -> replay of TOPIC/compressed: the very outputs and GT scores
    of the raw sample (same scene, lossless), the input topic copied as CompressedImage; a corrupt
    JPEG in the middle is counted and skipped, and the frame after it still pairs."""
    raw_sample, raw_out, raw_report = replayed
    sample, out = tmp_path / "sample", tmp_path / "run" / "out_bag"
    assert main(["record-sample", "--out", str(sample), "--frames", "6", "--size", "96x64",
                 "--compression", "png"]) == 0
    compressed = f"{TOPIC}/compressed"
    assert bag_topics(sample)[compressed].msgtype == "sensor_msgs/msg/CompressedImage"
    assert main(["replay", str(sample), "--topic", compressed, "--out", str(out), "--model", str(model_file),
                 "--network-size", "96x64"]) == 0
    assert bag_topics(out)[compressed] == bag_topics(sample)[compressed]
    for name in ("mask", "flow", "motion_layers"):
        ours, theirs = _frames(out, f"{PREFIX}/{name}"), _frames(raw_out, f"{PREFIX}/{name}")
        assert len(ours) == len(theirs) == 5
        for (stamp, _, array), (raw_stamp, _, raw_array) in zip(ours, theirs):
            assert stamp == raw_stamp
            np.testing.assert_array_equal(array, raw_array)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["gt"] == json.loads((raw_report / "metrics.json").read_text())["gt"]

    frames = [record_rgb(r) for r in read_image_messages(sample, compressed)][:3]
    broken = tmp_path / "broken"
    with BagImageWriter(broken) as writer:
        for index, frame in enumerate(frames):
            writer.write_compressed(compressed, round((10.0 + 0.1 * index) * 1e9), frame, "jpeg")
            if index == 1:
                writer.write_fields(compressed, round(10.15e9), EncodedCompressedImage("jpeg", b"\xff\xd8 cut"))
    pipeline = PerceptionPipeline.from_model_file(model_file, "torch", "cpu", NETWORK)
    result = replay_bag(pipeline, broken, tmp_path / "broken_out", ReplaySettings(topic=compressed, samples=0))
    assert result.counts == {"received": 4, "processed": 2, "bad: corrupt_data": 1}


def test_cli_errors_are_one_line_with_exit_code_2(replayed: tuple[Path, Path, Path], model_file: Path,
                                                  tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sample, out, _report = replayed
    assert main(["replay", str(sample), "--topic", "/nope", "--out", str(tmp_path / "o"),
                 "--model", str(model_file)]) == 2
    error = capsys.readouterr().err
    assert "no topic '/nope'" in error and "/camera/image_raw [sensor_msgs/msg/Image]" in error
    assert not (tmp_path / "o").exists()
    assert main(["replay", str(sample), "--out", str(sample), "--model", str(model_file)]) == 2
    assert "is not an earlier `replay` output" in capsys.readouterr().err
    assert main(["record-sample", "--out", str(tmp_path / "s"), "--source", str(tmp_path / "absent")]) == 2
    assert "no such file or folder" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


def test_record_sample_from_a_folder_resizes_and_stamps_at_the_rate(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    frames = [rng.integers(0, 256, (40, 50, 3), dtype=np.uint8) for _ in range(3)]
    (tmp_path / "frames").mkdir()
    for i, frame in enumerate(frames):
        write_image(tmp_path / "frames" / f"{i:03d}.png", frame)
    bag = tmp_path / "bag"
    assert main(["record-sample", "--out", str(bag), "--source", str(tmp_path / "frames"), "--frames", "2",
                 "--rate", "10", "--start", "5", "--topic", "/cam/image"]) == 0
    assert set(bag_topics(bag)) == {"/cam/image"}  # no GT for real frames
    records = list(read_image_messages(bag, "/cam/image"))
    assert [r.stamp_ns for r in records] == [5_000_000_000, 5_100_000_000]
    for record, frame in zip(records, frames):
        np.testing.assert_array_equal(image_to_rgb(*record[2:]), frame)
    resized = tmp_path / "resized"
    assert main(["record-sample", "--out", str(resized), "--source", str(tmp_path / "frames"),
                 "--size", "25x20"]) == 0
    assert [(r.width, r.height) for r in read_image_messages(resized, "/camera/image_raw")] == [(25, 20)] * 3


def test_replay_follows_a_first_mask_and_names_each_masks_origin(replayed: tuple[Path, Path, Path], model_file: Path,
                                                                 tmp_path: Path) -> None:
    sample, _out, _report = replayed
    truth = _frames(sample, "/gt/mask")
    mask_file = tmp_path / "first.png"
    write_mask(mask_file, truth[0][2] != 0)  # the movers of frame 0
    out = tmp_path / "run" / "out_bag"
    assert main(["replay", str(sample), "--topic", TOPIC, "--out", str(out), "--model", str(model_file),
                 "--network-size", "96x64", "--first-mask", str(mask_file)]) == 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["first_mask"] == str(mask_file)
    origins = [row["mask_origin"] for row in metrics["per_frame"]]
    assert len(origins) == 5 and set(origins) <= {"carried", "reidentified"}
    assert len(_frames(out, f"{PREFIX}/mask")) == 5


@pytest.mark.parametrize(("shape", "message"), [((64, 96), "empty"), ((60, 96), "96x60 but the frames are 96x64")])
def test_a_bad_first_mask_is_one_line_with_exit_code_2(replayed: tuple[Path, Path, Path], model_file: Path,
                                                       tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                       shape: tuple[int, int], message: str) -> None:
    sample, _out, _report = replayed
    mask_file = tmp_path / "first.png"
    write_mask(mask_file, np.full(shape, message != "empty"))
    out = tmp_path / "o"
    assert main(["replay", str(sample), "--topic", TOPIC, "--out", str(out), "--model", str(model_file),
                 "--network-size", "96x64", "--first-mask", str(mask_file)]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()
