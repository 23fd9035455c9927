"""ros/node_main.run_node's exit codes around shutdown, and bag_recorder's, in a fresh process
each (rclpy.init once)."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("rclpy", reason="ROS 2 wheels (rclpy) not installed")

SCRIPT = textwrap.dedent("""
    import sys
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.impl.implementation_singleton import rclpy_implementation
    from jointperception.ros.node_main import run_node

    def shutdown_then_wait(node):
        # what a Ctrl-C landing between the executor's ok() check and its wait set does
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        rclpy.shutdown()
        executor.spin_once(timeout_sec=0.1)

    def fail_while_running(node):
        raise rclpy_implementation.RCLError("a failure with the context still valid")

    spin = {"shutdown": shutdown_then_wait, "failure": fail_while_running}[sys.argv[1]]
    sys.exit(run_node("probe", lambda: rclpy.create_node("node_main_probe"), spin))
""")


def run_script(case: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", SCRIPT, case], capture_output=True, text=True, timeout=120,
                          env=os.environ.copy())  # conftest: loopback discovery, a domain of our own


def test_shutdown_racing_the_wait_set_is_a_normal_stop() -> None:
    result = run_script("shutdown")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr


def test_an_rcl_error_while_the_context_is_valid_is_not_swallowed() -> None:
    result = run_script("failure")
    assert result.returncode == 1 and "a failure with the context still valid" in result.stderr


RECORDER_SCRIPT = textwrap.dedent("""
    import sys
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from jointperception.ros import bag_recorder

    spin_once = SingleThreadedExecutor.spin_once
    calls = []

    def shutdown_then_spin(executor, timeout_sec=None):
        # from the second spin on, force the timing of a Ctrl-C landing between the recording
        # loop's ok() check and the executor's wait set
        calls.append(1)
        if len(calls) > 1:
            rclpy.shutdown()
        spin_once(executor, timeout_sec=timeout_sec)

    SingleThreadedExecutor.spin_once = shutdown_then_spin
    sys.exit(bag_recorder.main(["bag_recorder", sys.argv[1], "--topics", "/camera/image_raw"]))
""")


def test_bag_recorder_stopped_in_the_race_closes_its_bag_and_exits_0(tmp_path: Path) -> None:
    out = tmp_path / "recorded"
    result = subprocess.run([sys.executable, "-c", RECORDER_SCRIPT, str(out)], capture_output=True, text=True,
                            timeout=120, env=os.environ.copy())
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr and f"bag_recorder: wrote {out}" in result.stdout
    assert (out / "metadata.yaml").is_file()  # the writer was closed: the bag is complete
