"""ROS 2 child processes on loopback, started from plain Python (no rclpy here).

Every child runs with the venv's python, a clean copy of the environment (without the ROS
wheels' bootstrap marker, docs/design.md, contracts), ``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST``, the given
``ROS_DOMAIN_ID`` and the shared-memory Fast DDS profile of ``config/fastdds_shm.xml``.
"""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

from jointperception.errors import ConfigError, InputError
from jointperception.resources import resource_roots, shipped_file

PROFILE = "config/fastdds_shm.xml"
# The ROS wheels re-exec Python with their library path and set this marker; a child that
# inherits the marker but not the path cannot import rclpy.
BOOTSTRAP_MARKER = "_ROS_WHEELS_BOOTSTRAP_COMPLETE"
DOMAIN_RANGE = (120, 200)  # random picks: valid for Fast DDS ports, apart from the usual 0


def fastdds_profile() -> Path:
    """config/fastdds_shm.xml of a source checkout, else of the installed package's share folder."""
    profile = shipped_file(PROFILE)
    if not profile.is_file():
        raise ConfigError(f"{PROFILE} not found in {' or '.join(str(root) for root in resource_roots())}")
    return profile


def pick_domain_id(given: int | None = None) -> int:
    """``given``, else $ROS_DOMAIN_ID when set, else a random id in DOMAIN_RANGE."""
    if given is None and os.environ.get("ROS_DOMAIN_ID", "").strip():
        text = os.environ["ROS_DOMAIN_ID"].strip()
        if not text.isdigit():
            raise InputError(f"ROS_DOMAIN_ID must be an integer, got {text!r}")
        given = int(text)
    if given is None:
        return random.randint(*DOMAIN_RANGE)
    if not 0 <= given <= 232:
        raise InputError(f"ROS domain id must be in 0..232, got {given}")
    return given


def child_env(domain_id: int) -> dict[str, str]:
    """A clean copy of os.environ for a ROS child on loopback in ``domain_id``, one torch thread."""
    env = {key: value for key, value in os.environ.items() if key != BOOTSTRAP_MARKER}
    env.pop("ROS_LOCALHOST_ONLY", None)  # deprecated in Jazzy; the discovery range replaces it
    env.pop("ROS_STATIC_PEERS", None)
    env.update(
        ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
        ROS_DOMAIN_ID=str(domain_id),
        RMW_IMPLEMENTATION="rmw_fastrtps_cpp",
        FASTRTPS_DEFAULT_PROFILES_FILE=str(fastdds_profile()),
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
        PYTHONUNBUFFERED="1",
    )
    return env


def stop_process(process: subprocess.Popen, timeout: float = 20.0) -> int:
    """SIGINT (like Ctrl-C), then SIGKILL after ``timeout`` s; the exit code."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout)
    return process.returncode


class RosChildren:
    """Context manager for ``python -m MODULE ARGS`` children; all still running are stopped on exit."""

    def __init__(self, domain_id: int, log_dir: Path) -> None:
        self.domain_id = domain_id
        self.log_dir = log_dir
        self.processes: dict[str, subprocess.Popen] = {}

    def start(self, name: str, module: str, args: Sequence[str]) -> subprocess.Popen:
        """Start ``module`` as child ``name``; stdout and stderr go to LOG_DIR/NAME.log."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path(name), "wb") as log:
            process = subprocess.Popen([sys.executable, "-m", module, *args], env=child_env(self.domain_id),
                                       stdout=log, stderr=subprocess.STDOUT)
        self.processes[name] = process
        return process

    def log_path(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def log_tail(self, name: str, lines: int = 5) -> str:
        text = self.log_path(name).read_text(errors="replace").strip().splitlines()
        return " | ".join(text[-lines:])

    def wait_for_log(self, name: str, lines: Sequence[str], timeout: float) -> None:
        """Wait until every one of ``lines`` is in child ``name``'s log; InputError naming the log
        when the child exits first or ``timeout`` s pass."""
        deadline = time.monotonic() + timeout
        while not set(lines) <= set(self.log_path(name).read_text(errors="replace").splitlines()):
            if self.processes[name].poll() is not None or time.monotonic() > deadline:
                raise InputError(f"{name} did not print {', '.join(lines)} ({self.log_path(name)}: {self.log_tail(name)})")
            time.sleep(0.1)

    def stop(self, name: str) -> int:
        return stop_process(self.processes[name])

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        for process in reversed(self.processes.values()):
            stop_process(process)
