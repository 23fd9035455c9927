"""jointperception: joint segmentation, optical flow, occlusion and motion layers for camera streams.

The core (everything outside ``jointperception.ros``) never imports ROS.
"""

__version__ = "0.1.0"
