"""``benchmarks/soak.py`` stays runnable: a few seconds of the soak (all six faults on the real
lifecycle node over DDS on loopback) and one SIGKILL of the smallest training run; the JSON's
structure and sanity are checked, not the figures of a loaded machine."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("rclpy", reason="ROS 2 wheels (rclpy) not installed")
pytestmark = pytest.mark.slow  # the bundled model on the CPU and two training runs, about a minute

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "soak.py"
FAULTS = 6


def test_short_soak_writes_every_sample_fault_and_the_training_comparison(tmp_path: Path) -> None:
    out = tmp_path / "soak.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, str(SCRIPT), "--minutes", "0.2", "--sample-s", "2", "--train-kills", "1",
                           "--train-steps", "4", "--out", str(out)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    result = json.loads(out.read_text())
    node = result["node"]
    assert node["duration_s"] >= 12 and len(node["samples"]) >= 5
    for sample in node["samples"]:
        assert sample["rss_mb"] > 100 and sample["fds"] > 0 and sample["threads"] > 1  # torch is loaded
    assert isinstance(node["rss_slope_mb_per_hour"], float)
    frames = node["frames"]
    assert frames["frames_received"] >= frames["frames_processed"] > 0 and frames["outputs_received"] > 0
    assert frames["bad_frames"] > 0 and frames["camera_restarts"] == 1  # the malformed burst and the restart
    assert len(node["faults"]) == FAULTS
    for fault in node["faults"]:
        assert fault["not_injected"] is None, fault
        assert fault["start"] <= fault["end"] and fault["node_alive"]
        assert fault["resume_s"] is None or 0 <= fault["resume_s"] < 60
    assert node["crashes"] == 0 and node["node_exit_code"] == 0 and node["node_log_tracebacks"] == 0
    training = result["training"]
    assert len(training["sessions"]) == 2 and training["sessions"][-1]["exit_code"] == 0
    assert training["identical"] is True and training["model_tensors"] > 100
    for line in ("fault", "crashes 0", f"wrote {out}"):
        assert line in done.stdout
