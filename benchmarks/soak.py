"""Soak and fault bench of the lifecycle perception node (issue #27), over real DDS on loopback.

Processes, each with its own rclpy context in one fresh ROS_DOMAIN_ID, discovery on LOCALHOST:
  lifecycle_node  jointperception_lifecycle_node, bundled model, 320x240 network (the defaults),
                  input remapped to /camera/image_raw
  camera          benchmarks/soak_camera.py: a moving 640x480 scene at --rate-hz, stamped with its
                  wall clock; takes fault commands on stdin; SIGKILLed and restarted by a fault
  this process    an rclpy node that configures and activates the node (lifecycle services),
                  records every ~/mask output (receive time, stamp, size) and the /diagnostics
                  counters, samples the node process, and injects the faults
Every ``--sample-s`` (10) s: the node's RSS, open fds and threads (/proc/PID/status, /proc/PID/fd)
and its counters. Over ``--minutes`` the six faults come at evenly spaced times, in this order:
camera SIGKILLed and restarted; a burst of malformed frames (wrong step, wrong data length, unknown
encoding, zero size); a resolution change (640x480 -> 512x384); 10x the rate for 3 s; stamps
jumping 30 s back; lifecycle deactivate, 2 s inactive, activate. A fault comes at its time once
outputs resumed after the one before (or 10 s passed); the run lasts until all six have come and settled. A fault ends when the camera
acknowledges it (for the restart: its first frame; for the lifecycle: the activate answer); its
resume time is then: the receive time of the first output whose input was sent after the end
(input send time = stamp - the camera's stamp offset; after the resolution change only outputs of
the new size count) minus the end. A fault without such an output before the next one (or the
end of the run) is reported as not resumed. The node process is checked after every fault.

Then the training phase (benchmarks/soak_training.py, skipped with ``--train-kills 0``).

Prints a summary and writes every sample to ``--out`` (benchmarks/results/soak.json); never asserts.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/soak.py --minutes 30 [--rate-hz 30] [--train-kills 5]
        [--train-steps 40] [--out benchmarks/results/soak.json]
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from rclpy.signals import SignalHandlerOptions
from sensor_msgs.msg import Image
from soak_training import kill_and_resume

from jointperception.runtime.ros_processes import RosChildren, child_env, pick_domain_id, stop_process

NODE = "/jointperception_lifecycle_node"
TOPIC = "/camera/image_raw"
CAMERA = Path(__file__).with_name("soak_camera.py")
INPUT_SIZE, CHANGED_SIZE = (640, 480), (512, 384)
MALFORMED_FRAMES = 60
BURST_S, BURST_FACTOR = 3.0, 10
JUMP_S = 30.0  # backward stamp jump; larger than any latency, so stamps before and after it never mix
INACTIVE_S = 2.0
SETTLE_S = 10.0  # the next fault waits for outputs to resume after the last, at most this long
WAIT_S = 120.0  # bound on starting a process, a transition, the first output (2 busy cores)
COUNTERS = ("frames received", "frames processed", "dropped frames", "bad frames")
DDS_KEYS = ("ROS_AUTOMATIC_DISCOVERY_RANGE", "ROS_DOMAIN_ID", "RMW_IMPLEMENTATION", "FASTRTPS_DEFAULT_PROFILES_FILE")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0, help="length of the node run")
    parser.add_argument("--rate-hz", type=float, default=30.0, help="camera frame rate")
    parser.add_argument("--sample-s", type=float, default=10.0, help="period of the process samples")
    parser.add_argument("--train-kills", type=int, default=5, help="SIGKILLs of the training run; 0 skips the phase")
    parser.add_argument("--train-steps", type=int, default=40, help="max_steps of the training run")
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill moments")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/soak.json"), help="JSON result")
    parser.add_argument("--logs", type=Path, help="keep the processes' logs and the training runs here (default: a "
                        "temporary folder, removed at the end)")
    args = parser.parse_args()
    if args.minutes <= 0 or args.rate_hz <= 0 or args.sample_s <= 0 or args.train_kills < 0 or args.train_steps < 1:
        parser.error("--minutes, --rate-hz, --sample-s, --train-steps must be > 0 and --train-kills >= 0")
    return args


def process_sample(pid: int) -> dict[str, float]:
    """RSS (MB), open file descriptors and threads of process ``pid``, from /proc."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return {"rss_mb": int(fields["VmRSS"].split()[0]) / 1024, "threads": int(fields["Threads"]),
            "fds": len(os.listdir(f"/proc/{pid}/fd"))}


def slope_mb_per_hour(samples: list[dict[str, float]], duration_s: float) -> float | None:
    """Least-squares slope of RSS over the samples of the last two thirds of the run, MB/hour."""
    tail = [s for s in samples if s["t_s"] >= duration_s / 3]
    if len(tail) < 2:
        return None
    return float(np.polyfit([s["t_s"] / 3600 for s in tail], [s["rss_mb"] for s in tail], 1)[0])


@dataclass
class Fault:
    name: str
    start: float  # wall time the fault began
    end: float  # wall time it was over (acknowledged)
    offset_s: float  # the camera's stamp offset after it
    size: tuple[int, int]  # the camera's frame size after it
    node_alive: bool = True  # the node process after the fault
    not_injected: str | None = None  # why the bench could not inject it (then start = end = when it gave up)
    resume_s: float | None = None  # first output sent after ``end`` received - end; None: not resumed


class Observer:
    """This process's rclpy node (own context, executor spinning in a thread): the ~/mask outputs as
    (receive wall time, stamp s, width, height), the node's latest /diagnostics values, and the
    lifecycle transitions."""

    def __init__(self, domain_id: int) -> None:
        self.context = Context()
        rclpy.init(context=self.context, domain_id=domain_id, signal_handler_options=SignalHandlerOptions.NO)
        self.node = Node("soak_observer", context=self.context)
        self.outputs: list[tuple[float, float, int, int]] = []
        self.diagnostics: dict[str, str] = {}
        self.node.create_subscription(Image, f"{NODE}/mask", self._on_mask, qos_profile_sensor_data)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 10)
        self.lifecycle = self.node.create_client(ChangeState, f"{NODE}/change_state")
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()

    def _on_mask(self, msg: Image) -> None:
        stamp = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
        self.outputs.append((time.time(), stamp, msg.width, msg.height))

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name.startswith(f"{NODE}:"):
                self.diagnostics = {kv.key: kv.value for kv in status.values}

    def counters(self) -> dict[str, int]:
        return {key: int(self.diagnostics.get(key, 0)) for key in COUNTERS}

    def transition(self, transition_id: int) -> bool:
        """One lifecycle transition (sent once: it is not idempotent); its success."""
        wait_until(self.lifecycle.service_is_ready, WAIT_S, "lifecycle service")
        time.sleep(0.3)  # let the server match this client's reply reader
        future = self.lifecycle.call_async(ChangeState.Request(transition=Transition(id=transition_id)))
        wait_until(future.done, WAIT_S, f"lifecycle transition {transition_id}")
        return future.result().success

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)


def wait_until(done: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise SystemExit(f"soak: {what}: nothing within {timeout:g} s")
        time.sleep(0.05)


class NotInjected(Exception):
    """A fault the bench could not inject (its command was never acknowledged); recorded, the run goes on."""


class Camera:
    """The camera process (benchmarks/soak_camera.py), its commands, and its restarts."""

    def __init__(self, domain_id: int, logs: Path, rate_hz: float) -> None:
        self.domain_id, self.logs, self.rate_hz = domain_id, logs, rate_hz
        self.size, self.offset_s = INPUT_SIZE, 0.0
        self.process: subprocess.Popen | None = None
        self.starts = 0

    @property
    def log(self) -> Path:
        return self.logs / f"camera{self.starts}.log"

    def start(self) -> float:
        """Start a camera with the current size and offset; the wall time of its first frame."""
        self.starts += 1
        width, height = self.size
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, str(CAMERA), "--topic", TOPIC, "--rate-hz", str(self.rate_hz),
                 "--size", f"{width}x{height}", "--stamp-offset-s", str(self.offset_s)],
                env=child_env(self.domain_id), stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT, text=True)
        return self._wait_line("publishing at ", seen=0)

    def command(self, text: str) -> float:
        """Send ``text`` (soak_camera's stdin commands); the wall time the camera acknowledged it."""
        prefix = f"ack {text} at "
        seen = len(self._lines(prefix))  # counted before sending: the answer can come before this process looks
        self.process.stdin.write(text + "\n")
        self.process.stdin.flush()
        return self._wait_line(prefix, seen)

    def _wait_line(self, prefix: str, seen: int) -> float:
        """The time on the last log line starting with ``prefix``, once there are more than ``seen`` of them.
        Raises NotInjected when none comes within WAIT_S; exits when the camera process ended."""
        deadline = time.monotonic() + WAIT_S
        while len(lines := self._lines(prefix)) == seen:
            if self.process.poll() is not None:
                raise SystemExit(f"soak: camera exited ({self.log}: {self.log.read_text()[-500:]})")
            if time.monotonic() > deadline:
                raise NotInjected(f"no camera line {prefix!r} within {WAIT_S:g} s")
            time.sleep(0.05)
        return float(lines[-1][len(prefix):])

    def _lines(self, prefix: str) -> list[str]:
        return [line for line in self.log.read_text(errors="replace").splitlines() if line.startswith(prefix)]

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)


def fault_schedule(camera: Camera, observer: Observer) -> list[tuple[str, Callable[[], tuple[float, float]]]]:
    """(name, inject) in order; inject runs the fault and returns its (start, end) wall times."""
    def restart() -> tuple[float, float]:
        start = time.time()
        camera.kill()
        time.sleep(1.0)  # the camera stays away for a second
        return start, camera.start()

    def malformed() -> tuple[float, float]:
        return time.time(), camera.command(f"malformed {MALFORMED_FRAMES}")

    def resize() -> tuple[float, float]:
        camera.size = CHANGED_SIZE
        return time.time(), camera.command(f"size {CHANGED_SIZE[0]}x{CHANGED_SIZE[1]}")

    def burst() -> tuple[float, float]:
        start = camera.command(f"rate {camera.rate_hz * BURST_FACTOR:g}")
        time.sleep(BURST_S)
        return start, camera.command(f"rate {camera.rate_hz:g}")

    def jump() -> tuple[float, float]:
        camera.offset_s -= JUMP_S
        return time.time(), camera.command(f"jump {JUMP_S:g}")

    def lifecycle_cycle() -> tuple[float, float]:
        start = time.time()
        deactivated = observer.transition(Transition.TRANSITION_DEACTIVATE)
        time.sleep(INACTIVE_S)
        activated = observer.transition(Transition.TRANSITION_ACTIVATE)
        if not (deactivated and activated):
            raise SystemExit(f"soak: lifecycle cycle refused (deactivate {deactivated}, activate {activated})")
        return start, time.time()

    return [("camera SIGKILL + restart", restart), (f"{MALFORMED_FRAMES} malformed frames", malformed),
            (f"resolution {INPUT_SIZE[0]}x{INPUT_SIZE[1]} -> {CHANGED_SIZE[0]}x{CHANGED_SIZE[1]}", resize),
            (f"{BURST_FACTOR}x rate for {BURST_S:g} s", burst), (f"stamps jump {JUMP_S:g} s back", jump),
            (f"lifecycle deactivate, {INACTIVE_S:g} s, activate", lifecycle_cycle)]


def first_output_after(fault: Fault, outputs: list[tuple[float, float, int, int]], window_end: float) -> float | None:
    """Receive time of the first output whose input was sent after ``fault`` ended (and which has
    the camera's size after it), received before ``window_end``; None when there is none."""
    for received, stamp, width, height in outputs:
        if fault.end <= stamp - fault.offset_s <= received < window_end and (width, height) == fault.size:
            return received
    return None


def settled(fault: Fault, observer: Observer) -> bool:
    """The next fault may come: outputs resumed after ``fault``, or SETTLE_S passed without."""
    return time.time() > fault.end + SETTLE_S or first_output_after(fault, list(observer.outputs), math.inf) is not None


def resume_times(faults: list[Fault], outputs: list[tuple[float, float, int, int]], run_end: float) -> None:
    """Fill each fault's resume_s: the first output sent after its end, received before the next fault."""
    for fault, following in zip(faults, [*faults[1:], None]):
        received = first_output_after(fault, outputs, following.start if following is not None else run_end)
        fault.resume_s = None if received is None else received - fault.end


def soak(args: argparse.Namespace, logs: Path) -> dict[str, object]:
    """The node run: start, warm up, sample and inject the faults for --minutes; its record."""
    domain_id = pick_domain_id()
    os.environ.update({key: value for key, value in child_env(domain_id).items() if key in DDS_KEYS})
    duration_s = args.minutes * 60.0
    samples: list[dict[str, object]] = []
    faults: list[Fault] = []
    crashes = 0
    started = time.monotonic()
    with RosChildren(domain_id, logs) as children:
        node = children.start("lifecycle_node", "jointperception.ros.lifecycle_node",
                              ["--ros-args", "-r", f"image:={TOPIC}"])
        observer = Observer(domain_id)
        camera = Camera(domain_id, logs, args.rate_hz)
        try:
            if not (observer.transition(Transition.TRANSITION_CONFIGURE)
                    and observer.transition(Transition.TRANSITION_ACTIVATE)):
                raise SystemExit(f"soak: the node did not activate ({children.log_tail('lifecycle_node')})")
            camera.start()
            wait_until(lambda: bool(observer.outputs) or node.poll() is not None, WAIT_S, "first output")
            begin, startup_s = time.time(), time.monotonic() - started
            schedule = fault_schedule(camera, observer)
            due = [begin + duration_s * (k + 1) / (len(schedule) + 1) for k in range(len(schedule))]
            next_sample = begin
            while node.poll() is None and (time.time() < begin + duration_s or schedule
                                           or not settled(faults[-1], observer)):
                if time.time() >= next_sample:
                    samples.append({"t_s": round(time.time() - begin, 2), **process_sample(node.pid),
                                    **observer.counters(), "outputs": len(observer.outputs)})
                    next_sample += args.sample_s
                if schedule and time.time() >= due[len(faults)] and (not faults or settled(faults[-1], observer)):
                    name, inject = schedule.pop(0)
                    try:
                        start, end = inject()
                        not_injected = None
                    except NotInjected as failure:
                        start = end = time.time()
                        not_injected = str(failure)
                    faults.append(Fault(name, start, end, camera.offset_s, camera.size, node.poll() is None,
                                        not_injected))
                    print(f"{time.time() - begin:7.1f} s  {name}: {not_injected or 'injected'}", flush=True)
                time.sleep(0.1)
            run_end = time.time()
            if node.poll() is None:
                samples.append({"t_s": round(run_end - begin, 2), **process_sample(node.pid),
                                **observer.counters(), "outputs": len(observer.outputs)})
            else:
                crashes += 1
            time.sleep(1.5)  # outputs in flight and a last /diagnostics status
            counters, diagnostics = observer.counters(), dict(observer.diagnostics)
            outputs = list(observer.outputs)
        finally:
            camera.stop()
            observer.close()
        node_exit = stop_process(node) if node.poll() is None else node.returncode
    resume_times(faults, outputs, run_end)
    node_log = children.log_path("lifecycle_node").read_text(errors="replace")
    return {
        "duration_s": round(run_end - begin, 1), "startup_s": round(startup_s, 1), "domain_id": domain_id,
        "configured": next((line.split("configured: ", 1)[1] for line in node_log.splitlines() if "configured: " in line),
                           None),
        "samples": samples,
        "rss_slope_mb_per_hour": slope_mb_per_hour(samples, run_end - begin),
        "frames": {"camera_restarts": camera.starts - 1, "outputs_received": len(outputs),
                   **{key.replace(" ", "_"): value for key, value in counters.items()}},
        "faults": [asdict(fault) for fault in faults],
        "crashes": crashes + (node_exit not in (0, None)), "node_exit_code": node_exit,
        "node_log_tracebacks": node_log.count("Traceback"), "diagnostics_final": diagnostics,
    }


def print_summary(result: dict[str, object]) -> None:
    node = result["node"]
    samples = node["samples"]
    slope = "n/a" if node["rss_slope_mb_per_hour"] is None else f"{node['rss_slope_mb_per_hour']:.1f}"
    print(f"\nnode run {node['duration_s']:g} s, {len(samples)} samples: RSS {samples[0]['rss_mb']:.0f} -> "
          f"{samples[-1]['rss_mb']:.0f} MB, slope over the last two thirds {slope} MB/hour; "
          f"fds {samples[0]['fds']} -> {samples[-1]['fds']}, threads {samples[0]['threads']} -> {samples[-1]['threads']}")
    print("frames: " + ", ".join(f"{key} {value}" for key, value in node["frames"].items()))
    print(f"{'fault':<40} {'resume (s)':>10}  node alive")
    for fault in node["faults"]:
        resume = "NOT RESUMED" if fault["resume_s"] is None else f"{fault['resume_s']:.2f}"
        not_injected = f"  NOT INJECTED: {fault['not_injected']}" if fault["not_injected"] else ""
        print(f"{fault['name']:<40} {resume:>10}  {fault['node_alive']}{not_injected}")
    print(f"node startup to first output {node['startup_s']} s; configured: {node['configured']}")
    print(f"crashes {node['crashes']} (node exit code {node['node_exit_code']}, "
          f"{node['node_log_tracebacks']} tracebacks in its log)")
    training = result.get("training")
    if training:
        print(f"training: {training.get('kills_landed')} SIGKILLs landed, final weights identical to the "
              f"uninterrupted run: {training['identical']} (optimizer state: {training.get('optimizer_identical')}) "
              f"{training.get('reason', '')}")


def main() -> None:
    args = parse_args()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="jointperception-soak-") as tmp:
        work = args.logs or Path(tmp)
        result: dict[str, object] = {
            "command": " ".join(["benchmarks/soak.py", *sys.argv[1:]]),
            "config": {"minutes": args.minutes, "rate_hz": args.rate_hz, "sample_s": args.sample_s,
                       "input_size": list(INPUT_SIZE), "network_size": [320, 240], "model": "bundled",
                       "node": NODE, "dds": "Fast DDS, config/fastdds_shm.xml, loopback"},
            "machine": {"cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
                        "loadavg_before": load_before},
            "node": soak(args, work / "logs"),
        }
        if args.train_kills:
            started = time.monotonic()
            result["training"] = kill_and_resume(work / "training", args.train_steps, args.train_kills, args.seed)
            result["training"]["phase_s"] = round(time.monotonic() - started, 1)
    result["machine"]["loadavg_after"] = os.getloadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print_summary(result)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
