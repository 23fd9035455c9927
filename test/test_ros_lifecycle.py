"""perception_lifecycle_node as a real process, driven over DDS through its lifecycle services.

The node starts with a model path that does not exist; the test process (a ``Probe``) walks it
through configure (fails, then succeeds once the parameter is fixed), activate, deactivate,
cleanup and shutdown, sending frames in every state and checking outputs appear only while active.
"""
from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rclpy", reason="ROS 2 wheels (rclpy) not installed")

from lifecycle_msgs.msg import Transition  # noqa: E402
from lifecycle_msgs.srv import ChangeState, GetState  # noqa: E402
from perception_link import (  # noqa: E402
    HEIGHT,
    WAIT,
    WIDTH,
    Link,
    call_service,
    random_frame,
    save_untrained_model,
    send_pair,
    stamp_key,
)
from rcl_interfaces.srv import SetParameters  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from ros_helpers import Probe, open_probe, pick_domain_id, start_module, stop  # noqa: E402

NODE = "/jointperception_lifecycle_node"
QUIET_S = 1.5  # how long a node that must not answer is given to answer anyway


class Lifecycle:
    """Calls to the node's lifecycle and parameter services."""

    def __init__(self, probe: Probe) -> None:
        self.probe = probe

    def state(self) -> str:
        return call_service(self.probe, GetState, f"{NODE}/get_state", GetState.Request()).current_state.label

    def change(self, transition_id: int) -> bool:
        request = ChangeState.Request(transition=Transition(id=transition_id))
        return call_service(self.probe, ChangeState, f"{NODE}/change_state", request, idempotent=False).success

    def set(self, name: str, value: object):
        request = SetParameters.Request(parameters=[Parameter(name, value=value).to_parameter_msg()])
        return call_service(self.probe, SetParameters, f"{NODE}/set_parameters", request).results[0]


def _outputs_since(link: Link, counts: dict[str, int]) -> list[tuple[int, int]]:
    """Stamps of every output message received after ``counts`` (per output name) were taken."""
    return [stamp_key(m.header.stamp) for name, seen in counts.items() for m in link.received[name][seen:]]


def _assert_no_outputs(link: Link, first: float) -> None:
    """Send a pair stamped ``first``, ``first + 0.1`` and check that nothing comes out for QUIET_S."""
    counts = {name: len(messages) for name, messages in link.received.items()}
    frame = random_frame(int(first))
    link.send(first, frame)
    link.probe.spin_for(0.2)
    link.send(first + 0.1, np.roll(frame, 3, axis=1))
    link.probe.spin_for(QUIET_S)
    assert _outputs_since(link, counts) == []


@pytest.fixture(scope="module")
def domain_id() -> int:
    return pick_domain_id()


@contextmanager
def _running_node(domain_id: int, model: Path, log: Path) -> Iterator[tuple[subprocess.Popen, Probe]]:
    """The lifecycle node (unconfigured, ``model``, 96x64 network, one thread) and a Probe beside it."""
    process = start_module("jointperception.ros.lifecycle_node", [
        "-p", f"model:={model}", "-p", "threads:=1", "-p", "backend:=torch", "-p", f"network_width:={WIDTH}",
        "-p", f"network_height:={HEIGHT}", "-p", "diagnostics_period_s:=0.2",
        "-r", "image:=/cam/image_raw", "-r", "camera_info:=/cam/camera_info"], domain_id, log)
    probe = open_probe(domain_id)
    try:
        yield process, probe
    finally:
        probe.close()
        stop(process)


def test_lifecycle_transitions_gate_the_outputs(domain_id: int, tmp_path: Path) -> None:
    model = save_untrained_model(tmp_path / "m.safetensors")
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"not a safetensors file")
    missing = tmp_path / "missing.safetensors"
    log = tmp_path / "node.log"
    with _running_node(domain_id, missing, log) as (process, probe):
        link = Link(probe, node=NODE)
        lifecycle = Lifecycle(probe)
        assert lifecycle.state() == "unconfigured", log.read_text()
        assert link.image_pub.get_subscription_count() == 0  # no input subscription until active
        _assert_no_outputs(link, 1.0)

        # configure checks the parameters and loads the model; a failure leaves it unconfigured
        assert not lifecycle.change(Transition.TRANSITION_CONFIGURE)
        assert lifecycle.state() == "unconfigured"
        assert f"model file not found: {missing}" in log.read_text()
        assert lifecycle.set("model", str(corrupt)).successful
        assert not lifecycle.change(Transition.TRANSITION_CONFIGURE)
        assert lifecycle.state() == "unconfigured"
        assert log.read_text().count("configure failed") == 2, log.read_text()
        assert lifecycle.set("model", str(model)).successful
        assert lifecycle.change(Transition.TRANSITION_CONFIGURE), log.read_text()
        assert lifecycle.state() == "inactive"
        refused = lifecycle.set("model", str(corrupt))  # startup parameters wait for a cleanup
        assert not refused.successful and "unconfigured" in refused.reason
        _assert_no_outputs(link, 2.0)

        assert lifecycle.change(Transition.TRANSITION_ACTIVATE)
        assert lifecycle.state() == "active"
        assert probe.spin_until(link.connected, WAIT), f"outputs not connected; log:\n{log.read_text()}"
        _second, outputs = send_pair(link, 3.0, random_frame(3))
        for msg in outputs.values():
            assert (msg.height, msg.width, msg.header.frame_id) == (HEIGHT, WIDTH, "cam_optical")
        # every output so far answers the second frame of a pair sent while active (3.1, 4.1, ...)
        stamps = _outputs_since(link, dict.fromkeys(link.received, 0))
        assert stamps and all(sec >= 3 and nanosec == 100_000_000 for sec, nanosec in stamps), stamps
        link.expect_count("frames processed", 1)
        assert link.diagnostics["model"] == str(model)

        assert lifecycle.change(Transition.TRANSITION_DEACTIVATE)
        assert lifecycle.state() == "inactive"
        assert probe.spin_until(lambda: link.image_pub.get_subscription_count() == 0, WAIT)
        _assert_no_outputs(link, 10.0)
        assert lifecycle.change(Transition.TRANSITION_ACTIVATE)  # the worker starts again
        send_pair(link, 20.0, random_frame(20))
        assert lifecycle.change(Transition.TRANSITION_DEACTIVATE)

        assert lifecycle.change(Transition.TRANSITION_CLEANUP)
        assert lifecycle.state() == "unconfigured"
        assert lifecycle.set("network_width", 2 * WIDTH).successful  # settable again once cleaned up
        assert probe.spin_until(lambda: all(sub.get_publisher_count() == 0 for sub in link.subs), WAIT)

        request = ChangeState.Request(transition=Transition(id=Transition.TRANSITION_UNCONFIGURED_SHUTDOWN))
        probe.node.create_client(ChangeState, f"{NODE}/change_state").call_async(request)
        assert probe.spin_until(lambda: process.poll() is not None, WAIT), "node still running after shutdown"
        assert process.returncode == 0, log.read_text()
        assert "Traceback" not in log.read_text(), log.read_text()


def test_sigint_while_active_exits_cleanly(domain_id: int, tmp_path: Path) -> None:
    """Ctrl-C on an active node: the worker stops and the process exits 0 without a traceback."""
    model = save_untrained_model(tmp_path / "m.safetensors")
    log = tmp_path / "node.log"
    with _running_node(domain_id, model, log) as (process, probe):
        link = Link(probe, node=NODE)
        lifecycle = Lifecycle(probe)
        assert lifecycle.change(Transition.TRANSITION_CONFIGURE), log.read_text()
        assert lifecycle.change(Transition.TRANSITION_ACTIVATE)
        assert probe.spin_until(link.connected, WAIT), log.read_text()
        send_pair(link, 1.0, random_frame(1))
        assert stop(process) == 0, log.read_text()
    assert "Traceback" not in log.read_text(), log.read_text()
