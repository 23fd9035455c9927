"""ROS 2 front end: the only package of jointperception that imports rclpy or message types.

The message codecs that need no ROS live in ``data.image_msg`` and ``data.compressed_image``;
here: ``perception_node`` (executable ``perception_node``), ``camera_source``
(executable ``camera_source``).
"""
