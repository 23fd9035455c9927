"""Perception on a live camera topic: perception_node, and optionally a camera_source feeding it.

  ros2 launch jointperception camera.launch.py camera_topic:=/camera/image_raw
  ros2 launch jointperception camera.launch.py start_camera:=true video_file:=/path/clip.mp4 namespace:=cam1

Outputs are <namespace>/jointperception_node/{mask,flow,occlusion,motion_layers,flow_color,overlay};
one launch per camera, each in its own namespace, runs several cameras side by side. A camera that
publishes compressed frames: ``image_transport: compressed`` in params_file, and the node listens on
<camera_topic>/compressed (camera_source offers that topic too).
"""
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare

from launch import LaunchContext, LaunchDescription


def _camera_source(context: LaunchContext) -> list[Node]:
    """camera_source (if start_camera) on video_file when one is given, else on device video_device."""
    source = LaunchConfiguration("video_file").perform(context) or LaunchConfiguration("video_device").perform(context)
    return [
        Node(
            package="jointperception",
            executable="camera_source",
            namespace=LaunchConfiguration("namespace"),
            parameters=[{"source": ParameterValue(source, value_type=str)}],
            remappings=[("image_raw", LaunchConfiguration("camera_topic"))],
            condition=IfCondition(LaunchConfiguration("start_camera")),
            output="screen",
        )
    ]


def generate_launch_description() -> LaunchDescription:
    return LaunchDescription([
        DeclareLaunchArgument("camera_topic", default_value="/camera/image_raw",
                              description="sensor_msgs/Image topic the node subscribes to (remap of 'image')"),
        DeclareLaunchArgument("params_file",
                              default_value=PathJoinSubstitution([FindPackageShare("jointperception"), "config",
                                                                  "perception.yaml"]),
                              description="parameters of perception_node"),
        DeclareLaunchArgument("namespace", default_value="", description="namespace of the nodes (one per camera)"),
        DeclareLaunchArgument("start_camera", default_value="false",
                              description="also start camera_source, publishing on camera_topic"),
        DeclareLaunchArgument("video_device", default_value="0", description="camera device index for camera_source"),
        DeclareLaunchArgument("video_file", default_value="",
                              description="video file or image folder for camera_source (overrides video_device)"),
        DeclareLaunchArgument("backend", default_value="auto",
                              description="inference backend: auto | torch | onnxruntime | tensorrt"),
        Node(
            package="jointperception",
            executable="perception_node",
            namespace=LaunchConfiguration("namespace"),
            parameters=[LaunchConfiguration("params_file"), {"backend": LaunchConfiguration("backend")}],
            remappings=[("image", LaunchConfiguration("camera_topic"))],
            output="screen",
        ),
        OpaqueFunction(function=_camera_source),
    ])
