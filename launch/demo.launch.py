"""The demo: a synthetic semantic room (no dataset needed) through dataset_player -> slam_node, with RViz.

    ros2 launch gs4_slam demo.launch.py
    ros2 launch gs4_slam demo.launch.py seed:=5 frames:=200 rviz:=false

The room is rendered in memory by the player (config/demo.yaml); path:= plays a
folder written by `gs4-slam generate` instead. Save the map with
``ros2 service call /slam_node/save_map gs4_slam/srv/SaveMap "{path: map.ply}"``.
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.substitutions import FindPackageShare


def generate_launch_description() -> LaunchDescription:
    share = FindPackageShare("gs4_slam")
    arguments = [
        DeclareLaunchArgument("seed", default_value="1000", description="synthetic room (fixes room, path and noise)"),
        DeclareLaunchArgument("frames", default_value="60", description="frames of the synthetic room"),
        DeclareLaunchArgument("path", default_value="",
                              description="folder written by `gs4-slam generate` ('': render the room in memory)"),
        DeclareLaunchArgument("params_file", default_value=PathJoinSubstitution([share, "config", "demo.yaml"]),
                              description="parameter file of both nodes (sections dataset_player and slam_node)"),
        DeclareLaunchArgument("rate", default_value="0.3",
                              description="real-time factor of the player (0.3: about the CPU pipeline's speed)"),
        DeclareLaunchArgument("loop", default_value="false", description="play the room again at its end"),
        DeclareLaunchArgument("output_dir", default_value="output/demo",
                              description="folder slam_node's ~/save_map writes into"),
        DeclareLaunchArgument("rviz", default_value="true", description="start RViz with rviz/gs4_slam.rviz"),
    ]
    passed = {a.name: LaunchConfiguration(a.name) for a in arguments}
    replay = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(PathJoinSubstitution([share, "launch", "dataset_replay.launch.py"])),
        launch_arguments={"dataset": "synthetic", **passed}.items(),
    )
    return LaunchDescription([*arguments, replay])
