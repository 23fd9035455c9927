"""bag_player -> perception_node -> bag_recorder as real processes over DDS on loopback.

The node's outputs, played in lock-step from a synthetic bag (raw Images, or PNG CompressedImages
to a node with ``image_transport:=compressed``), equal ``jointperception replay`` on the same bag
with the same model and network size; the recorded bag is a real rosbag2 (mcap) bag;
the player reads sqlite3 bags too; ``jointperception demo`` runs the whole pipeline end to end.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rclpy", reason="ROS 2 wheels (rclpy) not installed")

from ros_helpers import pick_domain_id  # noqa: E402

from jointperception.cli import main  # noqa: E402
from jointperception.config import ModelConfig  # noqa: E402
from jointperception.data.bags import bag_topics, read_image_messages, record_rgb  # noqa: E402
from jointperception.data.image_msg import decode_image  # noqa: E402
from jointperception.models import build_model  # noqa: E402
from jointperception.models.weights import save_weights  # noqa: E402
from jointperception.runtime.ros_processes import RosChildren  # noqa: E402

TOPIC = "/camera/image_raw"
NODE = "/jointperception_node"
COMPARED = ("mask", "flow", "occlusion")
FRAMES = 5
WAIT = 120.0  # generous bound for 2 busy cores; a passing run takes a few seconds


@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("model") / "untrained.safetensors"
    return save_weights(path, build_model(ModelConfig()), ModelConfig(), {})


def _record_sample(bag: Path, *extra: str) -> Path:
    assert main(["record-sample", "--out", str(bag), "--frames", str(FRAMES), "--size", "96x64", *extra]) == 0
    return bag


def _images(bag: Path, topic: str) -> dict[int, np.ndarray]:
    return {r.stamp_ns: decode_image(*r[2:]) for r in read_image_messages(bag, topic)}


def _finish(children: RosChildren, name: str) -> None:
    code = children.processes[name].wait(WAIT)
    assert code == 0, f"{name} exited with {code}: {children.log_tail(name)}"


# (pipelined worker, input compression) of each lock-step run
NODE_RUNS = {"one-thread": (False, None), "pipelined": (True, None), "compressed-png": (False, "png")}


@pytest.fixture(scope="module", params=list(NODE_RUNS))
def node_run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
             model_file: Path) -> tuple[Path, Path, str]:
    """(sample bag, recorded bag, camera topic) of one lock-step run through the node: one worker
    thread, the two-stage (pipelined) worker, or PNG-compressed frames on TOPIC/compressed."""
    pipelined, compression = NODE_RUNS[request.param]
    root = tmp_path_factory.mktemp("pipeline")
    extra = ["--compression", compression] if compression else []
    sample, recorded = _record_sample(root / "sample", *extra), root / "recorded"
    topic = f"{TOPIC}/compressed" if compression else TOPIC
    node_args = ["--ros-args", "-p", f"model:={model_file}", "-p", "threads:=1", "-p", "backend:=torch", "-p", "network_width:=96",
                 "-p", "network_height:=64", "-p", "diagnostics_period_s:=0.2", "-p", f"pipelined:={str(pipelined).lower()}",
                 "-p", f"image_transport:={'compressed' if compression else 'raw'}", "-r", f"image:={TOPIC}"]
    with RosChildren(pick_domain_id(), root / "logs") as children:
        children.start("node", "jointperception.ros.perception_node", node_args)
        from_node = [*(f"{NODE}/{name}" for name in COMPARED), "/diagnostics"]
        children.start("recorder", "jointperception.ros.bag_recorder",
                       [str(recorded), "--topics", topic, *from_node, "--idle-timeout", "30"])
        children.wait_for_log("recorder", [f"bag_recorder: matched {topic}" for topic in from_node], WAIT)
        children.start("player", "jointperception.ros.bag_player",
                       [str(sample), "--topics", topic, "--wait-subscribers", "2", "--delay", "1.0",
                        "--lockstep-topic", f"{NODE}/mask", "--lockstep-timeout", "60"])
        _finish(children, "player")
        assert "0 lock-step timeouts" in children.log_tail("player")
        assert children.stop("recorder") == 0, children.log_tail("recorder")
    return sample, recorded, topic


def test_node_outputs_equal_offline_replay(node_run: tuple[Path, Path, str], model_file: Path, tmp_path: Path) -> None:
    sample, recorded, topic = node_run
    replayed = tmp_path / "replay_bag"
    assert main(["replay", str(sample), "--topic", topic, "--out", str(replayed), "--model", str(model_file),
                 "--network-size", "96x64"]) == 0
    input_stamps = sorted(r.stamp_ns for r in read_image_messages(sample, topic))
    for name in COMPARED:
        node, offline = _images(recorded, f"{NODE}/{name}"), _images(replayed, f"{NODE}/{name}")
        assert sorted(node) == sorted(offline) == input_stamps[1:], name  # every frame but the first
        for stamp, expected in offline.items():
            if name == "flow":
                np.testing.assert_allclose(node[stamp], expected, atol=1e-3, rtol=0)
            else:
                np.testing.assert_array_equal(node[stamp], expected)


def test_recorded_bag_is_a_rosbag2_mcap_bag(node_run: tuple[Path, Path, str]) -> None:
    sample, recorded, topic = node_run
    assert (recorded / "metadata.yaml").is_file() and list(recorded.glob("*.mcap"))
    topics = bag_topics(recorded)
    assert topics["/diagnostics"].msgtype == "diagnostic_msgs/msg/DiagnosticArray"
    assert topics["/diagnostics"].count >= 1
    assert topics[topic] == bag_topics(sample)[topic] and topics[topic].count == FRAMES  # same message type
    played = {r.stamp_ns: record_rgb(r) for r in read_image_messages(recorded, topic)}
    original = {r.stamp_ns: record_rgb(r) for r in read_image_messages(sample, topic)}
    assert sorted(played) == sorted(original)  # header stamps unchanged
    for stamp, image in original.items():
        np.testing.assert_array_equal(played[stamp], image)


def test_player_plays_a_sqlite3_bag_at_a_fixed_rate(tmp_path: Path) -> None:
    sample = _record_sample(tmp_path / "sample_sqlite", "--storage", "sqlite3", "--encoding", "bgr8")
    assert list(sample.glob("*.db3"))
    recorded = tmp_path / "recorded"
    # reliable on both sides: best effort may drop a frame on a loaded machine; --delay covers the
    # recorder's half of discovery after the player has seen it
    with RosChildren(pick_domain_id(), tmp_path / "logs") as children:
        children.start("recorder", "jointperception.ros.bag_recorder",
                       [str(recorded), "--topics", "/remapped/image", "--max-messages", str(FRAMES), "--qos", "reliable"])
        children.start("player", "jointperception.ros.bag_player",
                       [str(sample), "--topics", TOPIC, "--rate-hz", "10", "--qos", "reliable", "--wait-subscribers", "1", "--delay", "1.0",
                        "--ros-args", "-r", f"{TOPIC}:=/remapped/image"])
        _finish(children, "player")
        _finish(children, "recorder")  # stops by itself after FRAMES messages
    played = list(read_image_messages(recorded, "/remapped/image"))
    original = list(read_image_messages(sample, TOPIC))
    assert [(r.stamp_ns, r.encoding, r.frame_id) for r in played] == [(r.stamp_ns, r.encoding, r.frame_id)
                                                                        for r in original]
    for a, b in zip(played, original):
        np.testing.assert_array_equal(a.data, b.data)


@pytest.mark.parametrize("content", [None, b"not a bag"])
def test_player_rejects_a_missing_or_corrupt_bag_in_one_line(tmp_path: Path, content: bytes | None) -> None:
    bag = tmp_path / "in.mcap"
    if content is not None:
        bag.write_bytes(content)
    result = subprocess.run([sys.executable, "-m", "jointperception.ros.bag_player", str(bag)],
                            capture_output=True, text=True, timeout=WAIT)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and str(bag) in result.stderr


@pytest.mark.parametrize("compression", ["none", "jpeg"])
def test_demo_end_to_end(tmp_path: Path, model_file: Path, capsys: pytest.CaptureFixture[str], compression: str) -> None:
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--model", str(model_file), "--frames", "4", "--size", "96x64",
                 "--network-size", "96x64", "--domain-id", str(pick_domain_id()), "--compression", compression]) == 0
    printed = capsys.readouterr().out
    for path in (out / "sample_bag", out / "node_bag", out / "metrics.json", out / "report.html", out / "logs"):
        assert path.exists() and str(path) in printed
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["frames"]["processed"] == 3 and metrics["frames"]["processed (node)"] == 3
    assert metrics["frames"]["no output (first frame excluded)"] == 0
    assert metrics["throughput_fps"] > 0 and 0 < metrics["latency_ms"]["p50"] <= metrics["latency_ms"]["p99"]
    assert 0.0 <= metrics["gt"]["mask"]["j_mean"] <= 1.0 and metrics["gt"]["flow"]["num_pairs"] == 3
    recorded = {topic.rsplit("/", 1)[1]: count for topic, count in metrics["output_topics"].items()}
    assert {name: recorded.get(name, 0) for name in ("mask", "flow", "occlusion", "motion_layers")} == \
        {"mask": 3, "flow": 3, "occlusion": 3, "motion_layers": 3}  # every output the recorder took, not only the timed one
    topic = TOPIC if compression == "none" else f"{TOPIC}/compressed"
    assert metrics["topic"] == topic and bag_topics(out / "node_bag")[topic].count == 4  # the recorder took every frame
    samples = list((out / "report_files").glob("sample_*.png"))
    assert samples and all(path.name in (out / "report.html").read_text() for path in samples)
