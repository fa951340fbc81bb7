"""SLAM on a live Intel RealSense: realsense2_camera's rs_launch.py + slam_node (+ RViz).

    ros2 launch gs4_slam realsense.launch.py
    ros2 launch gs4_slam realsense.launch.py serial_no:="'123456789012'" rviz:=false

The camera streams colour and depth aligned to colour at 640x480, 30 Hz, with
synchronised stamps (align_depth.enable, enable_sync); slam_node's inputs are
remapped to the driver's topics /<camera_namespace>/<camera_name>/... (realsense-ros 4.x).
Record a session for later: ``gs4-slam record --out rec --namespace camera``.
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription
from launch.conditions import IfCondition
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare

#: The driver's settings SLAM needs; profile names changed in realsense-ros 4.54, both are given.
CAMERA_SETTINGS = {
    "align_depth.enable": "true",
    "enable_sync": "true",
    "enable_color": "true",
    "enable_depth": "true",
    "pointcloud.enable": "false",
    "rgb_camera.color_profile": "640x480x30",
    "depth_module.depth_profile": "640x480x30",
    "rgb_camera.profile": "640x480x30",
    "depth_module.profile": "640x480x30",
}


def generate_launch_description() -> LaunchDescription:
    share = FindPackageShare("gs4_slam")
    arg = LaunchConfiguration
    arguments = [
        DeclareLaunchArgument("camera_namespace", default_value="camera",
                              description="realsense2_camera's camera_namespace (must not be empty here)"),
        DeclareLaunchArgument("camera_name", default_value="camera", description="realsense2_camera's camera_name"),
        DeclareLaunchArgument("serial_no", default_value="''",
                              description="serial number of the camera to open ('': the first one found)"),
        DeclareLaunchArgument("start_camera", default_value="true",
                              description="start the driver (false: a driver or a bag is already publishing)"),
        DeclareLaunchArgument("params_file", default_value=PathJoinSubstitution([share, "config", "realsense.yaml"]),
                              description="slam_node parameter file"),
        DeclareLaunchArgument("output_dir", default_value="output/realsense",
                              description="folder slam_node's ~/save_map writes into"),
        DeclareLaunchArgument("rviz", default_value="true", description="start RViz with rviz/gs4_slam.rviz"),
        DeclareLaunchArgument("rviz_config", default_value=PathJoinSubstitution([share, "rviz", "gs4_slam.rviz"]),
                              description="RViz configuration file"),
    ]
    camera = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(
            PathJoinSubstitution([FindPackageShare("realsense2_camera"), "launch", "rs_launch.py"])),
        launch_arguments={"camera_namespace": arg("camera_namespace"), "camera_name": arg("camera_name"),
                          "serial_no": arg("serial_no"), **CAMERA_SETTINGS}.items(),
        condition=IfCondition(arg("start_camera")),
    )
    driver = ["/", arg("camera_namespace"), "/", arg("camera_name"), "/"]
    slam = Node(
        package="gs4_slam", executable="slam_node", name="slam_node", output="screen",
        parameters=[arg("params_file"), {"output_dir": ParameterValue(arg("output_dir"), value_type=str)}],
        remappings=[
            ("camera/color/image_raw", [*driver, "color/image_raw"]),
            ("camera/aligned_depth_to_color/image_raw", [*driver, "aligned_depth_to_color/image_raw"]),
            ("camera/color/camera_info", [*driver, "color/camera_info"]),
        ],
    )
    # The map frame is the first camera's optical frame (z forward, y down); this shows it z-up in RViz.
    world = Node(package="tf2_ros", executable="static_transform_publisher", name="world_to_map",
                 arguments=["--qx", "-0.5", "--qy", "0.5", "--qz", "-0.5", "--qw", "0.5",
                            "--frame-id", "world", "--child-frame-id", "map"])
    rviz = Node(package="rviz2", executable="rviz2", name="rviz2", arguments=["-d", arg("rviz_config")],
                condition=IfCondition(arg("rviz")))
    return LaunchDescription([*arguments, camera, slam, world, rviz])
