"""ROS 2 layer of gs4_slam: converts messages and calls the core pipeline.

This is the only part of the package that imports rclpy (in ``slam_node`` and
``publishers``); ``sync``, ``conversions`` and ``params`` need only the message
packages, so their logic is testable without spinning a node.
"""
