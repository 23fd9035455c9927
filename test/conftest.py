"""Test-wide settings. DDS must stay on loopback: every process that may call rclpy.init
inherits ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST and a domain id of its own."""
import os
import shutil
import tempfile

import pytest

from jointperception.data.paths import shared_data_root


def pytest_configure(config):
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    os.environ.setdefault("ROS_DOMAIN_ID", str(100 + os.getpid() % 100))
    # exported ONNX files are cached under $XDG_CACHE_HOME: keep the tests' out of the user's home
    config.jointperception_cache = tempfile.mkdtemp(prefix="jointperception-test-cache-")
    os.environ["XDG_CACHE_HOME"] = config.jointperception_cache


def pytest_unconfigure(config):
    shutil.rmtree(getattr(config, "jointperception_cache", ""), ignore_errors=True)


@pytest.fixture(scope="session")
def shared_data():
    """Root of ../shared/data; tests that need it skip with the reason when it is absent."""
    root = shared_data_root()
    if not root.is_dir():
        pytest.skip(f"real evaluation data not found at {root} (optional; set JOINTPERCEPTION_DATA)")
    return root
