"""Static checks of launch/*.launch.py and rviz/gs4_slam.rviz (``launch`` is not installable here).

The launch files are read with ``ast``, never executed: every gs4_slam executable
they start is a node module CMake installs (gs4_slam/ros/<name>_node.py with a
main), every file they find in the package share exists in the repository, every
argument has a description, included launch files declare what they are passed,
and parameters they set are parameters of the node. The RViz file shows the topics
the nodes publish.
"""
from __future__ import annotations

import ast
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
LAUNCH_FILES = sorted((REPO / "launch").glob("*.launch.py"))
#: Packages of a ROS 2 distribution the launch files may start executables from.
DISTRO_EXECUTABLES = {("rviz2", "rviz2"), ("tf2_ros", "static_transform_publisher")}
#: Arguments per launch file (the ~15 a user can keep in mind).
MAX_ARGUMENTS = 15


def _call_name(node: ast.AST) -> str:
    func = node.func if isinstance(node, ast.Call) else None
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return ""


def _keyword(call: ast.Call, name: str) -> ast.AST | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def _literal(node: ast.AST | None):
    return node.value if isinstance(node, ast.Constant) else None


@dataclass
class LaunchFile:
    """What a launch file declares, starts, includes and finds in the gs4_slam share folder."""

    path: Path
    tree: ast.Module
    aliases: dict[str, str] = field(default_factory=dict)  # name -> "share" (FindPackageShare('gs4_slam')) / call

    @classmethod
    def read(cls, path: Path) -> LaunchFile:
        launch = cls(path, ast.parse(path.read_text(), str(path)))
        for node in ast.walk(launch.tree):
            if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
                value = node.value
                if _call_name(value) == "FindPackageShare" and _literal(value.args[0]) == "gs4_slam":
                    launch.aliases[node.targets[0].id] = "share"
                elif isinstance(value, ast.Name):
                    launch.aliases[node.targets[0].id] = value.id
        return launch

    def calls(self, name: str) -> list[ast.Call]:
        return [n for n in ast.walk(self.tree) if isinstance(n, ast.Call)
                and (_call_name(n) == name or self.aliases.get(_call_name(n)) == name)]

    def declared(self) -> dict[str, ast.Call]:
        return {_literal(c.args[0]): c for c in self.calls("DeclareLaunchArgument")}

    def share_paths(self) -> list[str]:
        """Files named as PathJoinSubstitution([FindPackageShare('gs4_slam'), 'dir', 'file'])."""
        out = []
        for call in self.calls("PathJoinSubstitution"):
            parts = call.args[0].elts
            head = parts[0]
            is_share = (isinstance(head, ast.Name) and self.aliases.get(head.id) == "share") or (
                _call_name(head) == "FindPackageShare" and _literal(head.args[0]) == "gs4_slam")
            if is_share:
                out.append("/".join(_literal(p) for p in parts[1:]))
        return out

    def nodes(self) -> list[ast.Call]:
        return self.calls("Node")

    def launch_configurations(self) -> set[str]:
        return {_literal(c.args[0]) for c in self.calls("LaunchConfiguration") if _literal(c.args[0]) is not None}


@pytest.fixture(scope="module")
def launch_files() -> dict[str, LaunchFile]:
    assert LAUNCH_FILES, "no launch files"
    return {p.name: LaunchFile.read(p) for p in LAUNCH_FILES}


def test_the_issue_s_launch_files_exist():
    names = {p.name for p in LAUNCH_FILES}
    assert {"scannet_replay.launch.py", "tum_replay.launch.py", "demo.launch.py", "realsense.launch.py"} <= names


def test_each_file_defines_generate_launch_description(launch_files):
    for name, launch in launch_files.items():
        functions = {n.name for n in launch.tree.body if isinstance(n, ast.FunctionDef)}
        assert "generate_launch_description" in functions, name


def test_gs4_slam_executables_are_installed_node_modules(launch_files):
    """CMake installs lib/gs4_slam/<name> for each gs4_slam/ros/<name>.py ending in _node that has main()."""
    started = set()
    for name, launch in launch_files.items():
        for call in launch.nodes():
            package, executable = _literal(_keyword(call, "package")), _literal(_keyword(call, "executable"))
            assert package and executable, f"{name}: Node without literal package/executable"
            started.add((package, executable))
            if package != "gs4_slam":
                assert (package, executable) in DISTRO_EXECUTABLES, f"{name}: unexpected {package}/{executable}"
                continue
            module = REPO / "gs4_slam" / "ros" / f"{executable}.py"
            assert executable.endswith("_node") and module.is_file(), f"{name}: {executable} is not installed"
            functions = {n.name for n in ast.parse(module.read_text()).body if isinstance(n, ast.FunctionDef)}
            assert "main" in functions, f"{module} has no main()"
    assert {("gs4_slam", "slam_node"), ("gs4_slam", "dataset_player_node")} <= started


def test_share_files_named_exist(launch_files):
    for name, launch in launch_files.items():
        for relative in launch.share_paths():
            assert (REPO / relative).is_file(), f"{name} names {relative}, which is not in the repository"
    named = {p for launch in launch_files.values() for p in launch.share_paths()}
    assert "rviz/gs4_slam.rviz" in named
    for params in ("config/tum_replay.yaml", "config/scannet_replay.yaml", "config/demo.yaml",
                   "config/realsense.yaml"):
        assert params in named


def test_every_argument_has_a_description_and_is_used(launch_files):
    for name, launch in launch_files.items():
        declared = launch.declared()
        assert None not in declared, f"{name}: an argument name is not a literal"
        assert 0 < len(declared) <= MAX_ARGUMENTS, f"{name}: {len(declared)} arguments"
        for argument, call in declared.items():
            description = _literal(_keyword(call, "description"))
            assert isinstance(description, str) and description.strip(), f"{name}: {argument} has no description"
            assert _keyword(call, "default_value") is not None, f"{name}: {argument} has no default"
        undeclared = launch.launch_configurations() - set(declared)
        assert not undeclared, f"{name}: LaunchConfiguration of undeclared {sorted(undeclared)}"


def test_included_gs4_slam_launch_files_declare_what_they_are_passed(launch_files):
    for name, launch in launch_files.items():
        for call in launch.calls("IncludeLaunchDescription"):
            included = [p for p in launch.share_paths() if p.startswith("launch/")]
            if not included:
                continue  # another package's launch file (realsense2_camera)
            target = launch_files[Path(included[0]).name]
            arguments = _keyword(call, "launch_arguments").func.value  # {...}.items()
            passed = {_literal(k) for k in arguments.keys if k is not None}
            if any(k is None for k in arguments.keys):  # **{a.name: ...}: every own argument is passed on
                passed |= set(launch.declared())
            missing = passed - set(target.declared())
            assert not missing, f"{name} passes {sorted(missing)} to {target.path.name}, which does not declare them"


def _node_parameter_names(call: ast.Call) -> set[str]:
    names: set[str] = set()
    for item in _keyword(call, "parameters").elts:
        if isinstance(item, ast.Dict):
            names |= {_literal(k) for k in item.keys}
    return names


def test_parameters_set_in_launch_files_are_node_parameters(launch_files):
    from gs4_slam import config as config_io
    from gs4_slam.ros.playback import PlayerConfig

    player_names = set(config_io.flatten(config_io.to_dict(PlayerConfig())))
    for name, launch in launch_files.items():
        for call in launch.nodes():
            executable = _literal(_keyword(call, "executable"))
            if executable == "dataset_player_node":
                assert _node_parameter_names(call) <= player_names, name
            elif executable == "slam_node":
                assert _node_parameter_names(call) <= {"output_dir"}, name  # the rest comes from the files


def test_realsense_launch_asks_the_driver_for_aligned_synchronised_640x480_at_30hz(launch_files):
    text = launch_files["realsense.launch.py"].path.read_text()
    for setting in ('"align_depth.enable": "true"', '"enable_sync": "true"', '"640x480x30"', "rs_launch.py",
                    "realsense2_camera"):
        assert setting in text
    remapped = {_literal(pair.elts[0]) for call in launch_files["realsense.launch.py"].nodes()
                for pair in getattr(_keyword(call, "remappings"), "elts", [])}
    assert remapped == {"camera/color/image_raw", "camera/aligned_depth_to_color/image_raw",
                        "camera/color/camera_info"}


# ---------------------------------------------------------------------- parameter files


def _sections(path: Path) -> dict[str, dict]:
    data = yaml.safe_load(path.read_text())
    return {key.split("/")[-1]: value["ros__parameters"] for key, value in data.items()}


@pytest.mark.parametrize("name", ["demo.yaml", "tum_replay.yaml", "scannet_replay.yaml", "replica_replay.yaml"])
def test_replay_parameter_files_are_valid_for_the_player(name):
    from gs4_slam import config as config_io
    from gs4_slam.ros.playback import PlayerConfig

    sections = _sections(REPO / "config" / name)
    assert set(sections) == {"dataset_player", "slam_node"}
    config_io.from_dict(PlayerConfig, sections["dataset_player"])  # strict: unknown keys and bad types fail


@pytest.mark.parametrize("name", ["demo.yaml", "tum_replay.yaml", "scannet_replay.yaml", "replica_replay.yaml",
                                  "realsense.yaml"])
def test_parameter_files_are_valid_for_slam_node(name):
    pytest.importorskip("rcl_interfaces")
    from gs4_slam import config as config_io
    from gs4_slam.ros.params import NodeConfig

    section = config_io.flatten(_sections(REPO / "config" / name)["slam_node"])
    node_keys = set(config_io.flatten(config_io.to_dict(NodeConfig())))
    assert set(section) <= node_keys, f"{name}: {sorted(set(section) - node_keys)}"
    config_io.from_dict(NodeConfig, config_io.unflatten(section))


# ---------------------------------------------------------------------- RViz


def _published_topics(module: Path, private_prefix: str) -> set[str]:
    """String constants of create_publisher calls in a module (``~/x`` becomes ``/<node>/x``)."""
    tree = ast.parse(module.read_text())
    constants = {t.id: _literal(n.value) for n in ast.walk(tree) if isinstance(n, ast.Assign)
                 for t in n.targets if isinstance(t, ast.Name) and isinstance(_literal(n.value), str)}
    topics = set()
    for call in (n for n in ast.walk(tree) if isinstance(n, ast.Call) and _call_name(n) == "create_publisher"):
        arg = call.args[1]
        topic = _literal(arg) if isinstance(arg, ast.Constant) else constants.get(getattr(arg, "id", ""))
        if topic:
            topics.add(topic.replace("~/", private_prefix) if topic.startswith("~/") else "/" + topic.lstrip("/"))
    return topics


def test_rviz_config_shows_the_map_path_poses_and_images():
    config = yaml.safe_load((REPO / "rviz" / "gs4_slam.rviz").read_text())
    displays = config["Visualization Manager"]["Displays"]
    by_class: dict[str, list[dict]] = {}
    for display in displays:
        by_class.setdefault(display["Class"].split("/")[-1], []).append(display)
    node_topics = _published_topics(REPO / "gs4_slam" / "ros" / "publishers.py", "/slam_node/")
    player_topics = _published_topics(REPO / "gs4_slam" / "ros" / "dataset_player_node.py", "/dataset_player/")
    for display in displays:
        if "Topic" in display:
            topic = display["Topic"]["Value"]
            assert topic in node_topics | player_topics, f"RViz shows {topic}, which no node publishes"
    clouds = by_class["PointCloud2"]
    assert {d["Topic"]["Value"] for d in clouds} == {"/slam_node/map_cloud"}
    assert {d["Color Transformer"] for d in clouds} == {"RGB8", "Intensity"}
    assert any(d.get("Channel Name") == "label" for d in clouds)
    assert [d["Topic"]["Value"] for d in by_class["Path"]] == ["/slam_node/path"]
    assert "/slam_node/pose" in {d["Topic"]["Value"] for d in by_class["Pose"]}
    images = {d["Topic"]["Value"] for d in by_class["Image"]}
    assert {"/slam_node/render/color", "/slam_node/render/depth", "/slam_node/render/semantic"} <= images
    for display in clouds + by_class["Path"]:  # latched by the node: RViz must ask for the last message
        assert display["Topic"]["Durability Policy"] == "Transient Local"
    assert config["Visualization Manager"]["Global Options"]["Fixed Frame"] in ("map", "world")
