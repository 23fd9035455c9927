"""The perception node's worker under a free-running stream, with one thread and with the
two-stage (pipelined) worker: frames arrive back to back without waiting for outputs, so the
latest-only slot may drop some and, pipelined, the network of one pair runs while the pair before
is finished and published. Every
output must still equal the offline pipeline's for its pair (the newest frame with the previous
frame the worker kept), and outputs must come in stamp order.

The node runs in the test process on the probe's own context; its outputs reach the probe's
subscription over real DDS on loopback.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rclpy", reason="ROS 2 wheels (rclpy) not installed")

from perception_link import WAIT, decode_msg, random_frame, save_untrained_model, stamp_key, stamp_msg  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from ros_helpers import Probe, pick_domain_id, probe_env  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from jointperception.data.image_msg import encode_image  # noqa: E402
from jointperception.ros.perception_node import PerceptionNode  # noqa: E402
from jointperception.runtime.pipeline import PerceptionPipeline  # noqa: E402

FRAMES = 24
SEND_GAP_S = 0.004  # spin between frames: the probe's subscription takes outputs as they come
NODE = "/jointperception_node"
# matches the node's sensor-data publisher; deep enough that a busy test thread loses no output
OUTPUT_QOS = QoSProfile(depth=FRAMES, reliability=ReliabilityPolicy.BEST_EFFORT)


@pytest.mark.parametrize("pipelined", [False, True], ids=["one-thread", "pipelined"])
def test_free_running_outputs_equal_the_offline_pipeline_pair_by_pair(
    pipelined: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    domain_id = pick_domain_id()
    probe_env(monkeypatch, domain_id)
    model = save_untrained_model(tmp_path / "untrained.safetensors")
    probe = Probe(domain_id)
    node = None
    try:
        overrides = [Parameter("model", value=str(model)), Parameter("backend", value="torch"),
                     Parameter("threads", value=1), Parameter("network_width", value=96),
                     Parameter("network_height", value=64), Parameter("mask_memory", value=0.0),
                     Parameter("pipelined", value=pipelined)]
        node = PerceptionNode(context=probe.context, parameter_overrides=overrides)
        probe.executor.add_node(node)
        received: dict[str, dict[tuple[int, int], np.ndarray]] = {"mask": {}, "flow": {}}
        for name, outputs in received.items():
            probe.node.create_subscription(Image, f"{NODE}/{name}", lambda msg, into=outputs: into.setdefault(
                stamp_key(msg.header.stamp), decode_msg(msg)), OUTPUT_QOS)
        masks, flows = received["mask"], received["flow"]
        assert probe.spin_until(lambda: all(node.count_subscribers(f"{NODE}/{name}") for name in received), WAIT)

        frames = {}
        for index in range(FRAMES):
            stamp = stamp_msg(1.0 + 0.01 * index)
            frames[stamp_key(stamp)] = frame = random_frame(index)
            node.worker.on_image(Image(header=Header(stamp=stamp, frame_id="cam"), **vars(encode_image(frame, "rgb8"))))
            if index == 1:  # the first output proves the path to the probe matched both ways; then free-running
                assert probe.spin_until(lambda: masks and flows, WAIT)
            probe.spin_for(SEND_GAP_S)
        last = stamp_key(stamp_msg(1.0 + 0.01 * (FRAMES - 1)))
        assert probe.spin_until(lambda: last in masks and last in flows, WAIT), "the newest frame is never dropped"
    finally:
        if node is not None:
            node.destroy_node()
        probe.close()

    stamps = list(masks)
    assert stamps == sorted(stamps), "outputs in stamp order"
    assert len(stamps) >= 3, f"{len(stamps)} outputs of {FRAMES} frames"
    offline = PerceptionPipeline.from_model_file(model, backend="torch", network_size=(96, 64))
    for previous, current in zip(stamps, stamps[1:]):  # each output pairs with the output before it
        expected = offline.infer_pair(frames[current], frames[previous])
        np.testing.assert_array_equal(masks[current], expected.mask.astype(np.uint8) * 255,
                                      err_msg=f"mask of frame {current} with {previous}")
        np.testing.assert_allclose(flows[current], expected.flow, atol=1e-3, rtol=0,
                                   err_msg=f"flow of frame {current} with {previous}")
