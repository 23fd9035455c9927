"""Perception on a recorded bag: ``ros2 bag play`` into perception_node, optionally recording outputs.

  ros2 launch jointperception replay.launch.py bag:=sample_bag
  ros2 launch jointperception replay.launch.py bag:=sample_bag record:=true output_bag:=outputs/live

Bags of compressed frames (camera_topic + /compressed, sensor_msgs/CompressedImage): set
``image_transport: compressed`` in params_file; the player and the recorder take camera_topic and its
/compressed topic, whichever the bag holds. For the same outputs offline, without DDS:
``jointperception replay BAG --topic T --out OUT``.
"""
from launch.actions import DeclareLaunchArgument, ExecuteProcess
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

from launch import LaunchDescription

OUTPUTS = ("mask", "flow", "occlusion", "motion_layers", "flow_color", "overlay")


def generate_launch_description() -> LaunchDescription:
    # <namespace>/jointperception_node/<output>: relative to the recorder (root) when namespace has no '/'
    output_topics = [[LaunchConfiguration("namespace"), f"/jointperception_node/{name}"] for name in OUTPUTS]
    compressed_topic = [LaunchConfiguration("camera_topic"), "/compressed"]  # image_transport's compressed transport
    return LaunchDescription([
        DeclareLaunchArgument("bag", description="rosbag2 bag to play (folder, mcap or sqlite3)"),
        DeclareLaunchArgument("camera_topic", default_value="/camera/image_raw",
                              description="camera topic of the bag (remap of the node's 'image'); a bag of "
                                          "CompressedImage holds it as <camera_topic>/compressed"),
        DeclareLaunchArgument("params_file",
                              default_value=PathJoinSubstitution([FindPackageShare("jointperception"), "config",
                                                                  "perception.yaml"]),
                              description="parameters of perception_node"),
        DeclareLaunchArgument("namespace", default_value="", description="namespace of perception_node"),
        DeclareLaunchArgument("backend", default_value="auto",
                              description="inference backend: auto | torch | onnxruntime | tensorrt"),
        DeclareLaunchArgument("rate", default_value="1.0", description="playback speed factor"),
        DeclareLaunchArgument("record", default_value="false", description="record input and outputs to output_bag"),
        DeclareLaunchArgument("output_bag", default_value="jointperception_outputs",
                              description="bag folder written when record is true (mcap)"),
        Node(
            package="jointperception",
            executable="perception_node",
            namespace=LaunchConfiguration("namespace"),
            parameters=[LaunchConfiguration("params_file"), {"backend": LaunchConfiguration("backend")}],
            remappings=[("image", LaunchConfiguration("camera_topic"))],
            output="screen",
        ),
        ExecuteProcess(
            cmd=["ros2", "bag", "record", "-s", "mcap", "-o", LaunchConfiguration("output_bag"),
                 "--topics", LaunchConfiguration("camera_topic"), compressed_topic, *output_topics],
            condition=IfCondition(LaunchConfiguration("record")),
            output="screen",
        ),
        ExecuteProcess(
            cmd=["ros2", "bag", "play", LaunchConfiguration("bag"), "--rate", LaunchConfiguration("rate"),
                 "--topics", LaunchConfiguration("camera_topic"), compressed_topic],
            output="screen",
        ),
    ])
