"""Helpers for tests that talk to ROS 2 nodes over real DDS, on loopback only.

Every process that calls rclpy.init runs with ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST and the
test's own ROS_DOMAIN_ID, and with the shared-memory Fast DDS profile of config/
(``jointperception.runtime.ros_processes``, which the demo and the benchmarks use too).
"""
from __future__ import annotations

import os
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

from jointperception.runtime.ros_processes import child_env, stop_process

REPO = Path(__file__).resolve().parents[1]
# children and probes share one environment recipe with the demo and the benchmarks
ros_env = child_env
stop = stop_process


def pick_domain_id() -> int:
    """A ROS_DOMAIN_ID in 150..230 picked by process id, apart from other test runs."""
    return 150 + os.getpid() % 81


def start_module(module: str, ros_args: list[str], domain_id: int, log_path: Path) -> subprocess.Popen:
    """``python -m module --ros-args ...`` with ``ros_env``; stdout and stderr go to ``log_path``."""
    with open(log_path, "wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", module, "--ros-args", *ros_args],
            env=ros_env(domain_id), cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
        )


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


def open_probe(domain_id: int) -> Probe:
    """A Probe in ``domain_id``, created with ``ros_env``'s DDS variables (``probe_env``), which are
    taken out of this process's environment again once it exists."""
    with pytest.MonkeyPatch.context() as patch:
        probe_env(patch, domain_id)
        return Probe(domain_id)
