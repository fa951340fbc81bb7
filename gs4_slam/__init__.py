"""gs4_slam: real-time semantic Gaussian-splatting SLAM from RGB-D.

The core library needs no ROS; the ROS 2 layer lives in ``gs4_slam.ros`` and is
the only part that imports rclpy. Generated ROS interfaces (``gs4_slam.msg``,
``gs4_slam.srv``) may be installed in a separate folder of the same package name,
so the package path is extended over every such folder on ``sys.path``.
"""
from pkgutil import extend_path

__path__ = extend_path(__path__, __name__)

__version__ = "0.1.0"
