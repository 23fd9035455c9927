"""ROS 2 front end: the only package of jointperception that imports rclpy or message types.

``convert`` (Image <-> numpy) and ``compressed`` (CompressedImage <-> numpy), both importable
without ROS; ``perception_node`` (executable ``perception_node``), ``camera_source``
(executable ``camera_source``).
"""
