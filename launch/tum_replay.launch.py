"""A TUM RGB-D sequence through dataset_player -> slam_node (+ RViz), with config/tum_replay.yaml.

    ros2 launch gs4_slam tum_replay.launch.py path:=/data/rgbd_dataset_freiburg1_xyz rate:=0.5

Everything else is dataset_replay.launch.py's (included with dataset:=tum).
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.substitutions import FindPackageShare


def generate_launch_description() -> LaunchDescription:
    share = FindPackageShare("gs4_slam")
    arguments = [
        DeclareLaunchArgument("path", default_value="",
                              description="TUM sequence folder (rgb.txt, depth.txt, groundtruth.txt)"),
        DeclareLaunchArgument("params_file",
                              default_value=PathJoinSubstitution([share, "config", "tum_replay.yaml"]),
                              description="parameter file of both nodes (sections dataset_player and slam_node)"),
        DeclareLaunchArgument("rate", default_value="1.0", description="real-time factor of the player"),
        DeclareLaunchArgument("start_offset_s", default_value="0.0",
                              description="skip the first seconds of the sequence"),
        DeclareLaunchArgument("loop", default_value="false", description="play the sequence again at its end"),
        DeclareLaunchArgument("stride", default_value="1", description="play every N-th frame"),
        DeclareLaunchArgument("output_dir", default_value="output/tum",
                              description="folder slam_node's ~/save_map writes into"),
        DeclareLaunchArgument("rviz", default_value="true", description="start RViz with rviz/gs4_slam.rviz"),
    ]
    passed = {a.name: LaunchConfiguration(a.name) for a in arguments}
    replay = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(PathJoinSubstitution([share, "launch", "dataset_replay.launch.py"])),
        launch_arguments={"dataset": "tum", **passed}.items(),
    )
    return LaunchDescription([*arguments, replay])
