"""Helpers for tests that talk to ROS 2 nodes over real DDS, on loopback only.

Every process that calls rclpy.init runs with ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST and the
test's own ROS_DOMAIN_ID, and with the shared-memory Fast DDS profile of config/.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import rclpy
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions

REPO = Path(__file__).resolve().parents[1]
FASTDDS_PROFILE = REPO / "config" / "fastdds_shm.xml"
# The ROS wheels re-exec Python with their library path and set this marker; a child that
# inherits the marker but not the path cannot import rclpy, so children start without it.
BOOTSTRAP_MARKER = "_ROS_WHEELS_BOOTSTRAP_COMPLETE"


def pick_domain_id() -> int:
    """A ROS_DOMAIN_ID in 150..230 picked by process id, apart from other test runs."""
    return 150 + os.getpid() % 81


def ros_env(domain_id: int) -> dict[str, str]:
    """A clean copy of the environment for a ROS child process on loopback, one torch thread."""
    env = {key: value for key, value in os.environ.items() if key != BOOTSTRAP_MARKER}
    env.pop("ROS_LOCALHOST_ONLY", None)  # deprecated in Jazzy; the discovery range replaces it
    env.pop("ROS_STATIC_PEERS", None)
    env.update(
        ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
        ROS_DOMAIN_ID=str(domain_id),
        RMW_IMPLEMENTATION="rmw_fastrtps_cpp",
        FASTRTPS_DEFAULT_PROFILES_FILE=str(FASTDDS_PROFILE),
        OMP_NUM_THREADS="1",
        PYTHONUNBUFFERED="1",
    )
    return env


def start_module(module: str, ros_args: list[str], domain_id: int, log_path: Path) -> subprocess.Popen:
    """``python -m module --ros-args ...`` with ``ros_env``; stdout and stderr go to ``log_path``."""
    with open(log_path, "wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", module, "--ros-args", *ros_args],
            env=ros_env(domain_id), cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
        )


def stop(process: subprocess.Popen, timeout: float = 20.0) -> int:
    """SIGINT (like Ctrl-C), then SIGKILL after ``timeout`` s; returns the exit code."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout)
    return process.returncode


def probe_env(monkeypatch: pytest.MonkeyPatch, domain_id: int) -> None:
    """Put the DDS variables of ``ros_env`` into this process's environment for a Probe."""
    env = ros_env(domain_id)
    for key in ("ROS_AUTOMATIC_DISCOVERY_RANGE", "ROS_DOMAIN_ID", "RMW_IMPLEMENTATION",
                "FASTRTPS_DEFAULT_PROFILES_FILE"):
        monkeypatch.setenv(key, env[key])
    monkeypatch.delenv("ROS_LOCALHOST_ONLY", raising=False)
    monkeypatch.delenv("ROS_STATIC_PEERS", raising=False)


class Probe:
    """The test's own ROS participant (its own context, no signal handlers) in ``domain_id``.

    Create it with ``ros_env``'s DDS variables in os.environ (see ``probe_env``).
    """

    def __init__(self, domain_id: int, name: str = "test_probe") -> None:
        self.context = Context()
        rclpy.init(context=self.context, domain_id=domain_id, signal_handler_options=SignalHandlerOptions.NO)
        self.node = Node(name, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)

    def spin_until(self, done: Callable[[], bool], timeout: float) -> bool:
        """Spin until ``done()`` is true (returns True) or ``timeout`` s pass (returns False)."""
        deadline = time.monotonic() + timeout
        while not done():
            if time.monotonic() > deadline:
                return False
            self.executor.spin_once(timeout_sec=0.05)
        return True

    def spin_for(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.executor.spin_once(timeout_sec=0.05)

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)
