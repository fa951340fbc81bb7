"""dataset_player -> slam_node (+ RViz) for any dataset folder or bag; the other replay launch files include it.

    ros2 launch gs4_slam dataset_replay.launch.py dataset:=tum path:=/data/rgbd_dataset_freiburg1_xyz
    ros2 launch gs4_slam dataset_replay.launch.py bag:=/data/my_recording rviz:=false

Both nodes read ``params_file`` (their sections of it); the arguments below override it.
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare


def generate_launch_description() -> LaunchDescription:
    share = FindPackageShare("gs4_slam")
    arg = LaunchConfiguration
    arguments = [
        DeclareLaunchArgument("dataset", default_value="auto",
                              description="dataset layout: tum, scannet, replica, synthetic or auto (detect)"),
        DeclareLaunchArgument("path", default_value="",
                              description="dataset folder ('' with dataset:=synthetic: a room generated in memory)"),
        DeclareLaunchArgument("bag", default_value="",
                              description="rosbag2 folder to play instead of a dataset folder"),
        DeclareLaunchArgument("params_file", default_value=PathJoinSubstitution([share, "config", "slam_node.yaml"]),
                              description="parameter file of both nodes (sections dataset_player and slam_node)"),
        DeclareLaunchArgument("rate", default_value="1.0", description="real-time factor of the player"),
        DeclareLaunchArgument("start_offset_s", default_value="0.0",
                              description="skip the first seconds of the sequence"),
        DeclareLaunchArgument("loop", default_value="false", description="play the sequence again at its end"),
        DeclareLaunchArgument("paused", default_value="false",
                              description="start paused (resume: ros2 service call /dataset_player/resume "
                                          "std_srvs/srv/Trigger)"),
        DeclareLaunchArgument("stride", default_value="1", description="play every N-th frame"),
        DeclareLaunchArgument("seed", default_value="3",
                              description="synthetic room generated in memory (dataset:=synthetic, empty path)"),
        DeclareLaunchArgument("frames", default_value="60", description="frames of the generated synthetic room"),
        DeclareLaunchArgument("output_dir", default_value="output/replay",
                              description="folder slam_node's ~/save_map writes into"),
        DeclareLaunchArgument("rviz", default_value="true", description="start RViz with rviz/gs4_slam.rviz"),
        DeclareLaunchArgument("rviz_config", default_value=PathJoinSubstitution([share, "rviz", "gs4_slam.rviz"]),
                              description="RViz configuration file"),
    ]
    player = Node(
        package="gs4_slam", executable="dataset_player_node", name="dataset_player", output="screen",
        parameters=[arg("params_file"), {
            "dataset": ParameterValue(arg("dataset"), value_type=str),
            "path": ParameterValue(arg("path"), value_type=str),
            "bag": ParameterValue(arg("bag"), value_type=str),
            "rate": ParameterValue(arg("rate"), value_type=float),
            "start_offset_s": ParameterValue(arg("start_offset_s"), value_type=float),
            "loop": ParameterValue(arg("loop"), value_type=bool),
            "paused": ParameterValue(arg("paused"), value_type=bool),
            "reader.stride": ParameterValue(arg("stride"), value_type=int),
            "synthetic.seed": ParameterValue(arg("seed"), value_type=int),
            "synthetic.frames": ParameterValue(arg("frames"), value_type=int),
        }],
    )
    slam = Node(
        package="gs4_slam", executable="slam_node", name="slam_node", output="screen",
        parameters=[arg("params_file"), {"output_dir": ParameterValue(arg("output_dir"), value_type=str)}],
    )
    # The map frame is the first camera's optical frame (z forward, y down); this shows it z-up in RViz.
    world = Node(package="tf2_ros", executable="static_transform_publisher", name="world_to_map",
                 arguments=["--qx", "-0.5", "--qy", "0.5", "--qz", "-0.5", "--qw", "0.5",
                            "--frame-id", "world", "--child-frame-id", "map"])
    rviz = Node(package="rviz2", executable="rviz2", name="rviz2", arguments=["-d", arg("rviz_config")],
                condition=IfCondition(arg("rviz")))
    return LaunchDescription([*arguments, player, slam, world, rviz])
