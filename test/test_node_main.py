"""ros/node_main.run_node's exit codes around shutdown, in a fresh process each (rclpy.init once)."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

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
