"""ROS parameters declared from the config dataclasses: names, defaults, descriptions, ranges, errors."""
from __future__ import annotations

from pathlib import Path

import pytest

from gs4_slam import config as config_io

pytestmark = pytest.mark.ros

REPO = Path(__file__).resolve().parents[1]
NODE_YAML = REPO / "config" / "slam_node.yaml"


@pytest.fixture(scope="module")
def params():
    return pytest.importorskip("gs4_slam.ros.params", exc_type=ImportError)


@pytest.fixture
def make_node(params):
    """A node (own rclpy context) with the node's and the pipeline's parameters declared."""
    import rclpy

    made = []

    def make(*ros_args: str, declare: bool = True):
        context = rclpy.Context()
        rclpy.init(args=["--ros-args", *ros_args], context=context)
        node = rclpy.create_node("slam_node", context=context)
        made.append((node, context))
        if declare:
            node_specs = params.node_specs()
            params.declare(node, node_specs)
            config_file = node.get_parameter("config_file").value
            slam_specs = params.slam_specs(config_file or None)
            params.declare(node, slam_specs)
            return node, node_specs, slam_specs
        return node

    yield make
    for node, context in made:
        node.destroy_node()
        rclpy.try_shutdown(context=context)


def test_every_slam_config_field_is_declared_with_its_default(make_node, params):
    from gs4_slam.slam import SlamConfig, load_slam_config

    node, _, slam_specs = make_node()
    expected = config_io.flatten(config_io.to_dict(load_slam_config()))  # dataclass defaults + config/slam.yaml
    assert set(expected) == {s.name for s in slam_specs}
    for name, default in expected.items():
        value = node.get_parameter(name).value
        assert (list(value) if isinstance(default, tuple) else value) == (
            list(default) if isinstance(default, tuple) else default
        ), name
        descriptor = node.describe_parameter(name)
        assert descriptor.description.strip(), f"{name} has no description"
        assert descriptor.read_only, f"{name} should be read-only (the pipeline is built at start-up)"
    assert params.build(SlamConfig, slam_specs, params.values(node, slam_specs)) == load_slam_config()


def test_descriptions_come_from_the_dataclasses(make_node):
    node, _, _ = make_node()
    described = node.describe_parameter("tracking.keyframes.translation_m").description
    assert "moved this far" in described
    assert "background mapping thread" in node.describe_parameter("mapping.threaded").description.lower()
    assert "stamp difference" in node.describe_parameter("sync_slop_s").description


def test_node_parameters_have_defaults_ranges_and_dynamic_ones(make_node, params):
    node, node_specs, _ = make_node()
    defaults = config_io.flatten(config_io.to_dict(params.NodeConfig()))
    assert {s.name for s in node_specs} == set(defaults)
    for name, default in defaults.items():
        value = node.get_parameter(name).value
        assert (list(value) if isinstance(default, tuple) else value) == (
            list(default) if isinstance(default, tuple) else default
        ), name
        assert node.describe_parameter(name).description.strip(), name
    rate = node.describe_parameter("render_rate_hz")
    assert (rate.floating_point_range[0].from_value, rate.floating_point_range[0].to_value) == (0.0, 100.0)
    assert node.describe_parameter("queue_size").integer_range[0].from_value == 1
    assert not node.describe_parameter("render_rate_hz").read_only
    assert node.describe_parameter("output_dir").read_only
    assert params.build(params.NodeConfig, node_specs, params.values(node, node_specs)) == params.NodeConfig()


def test_every_range_names_a_real_parameter_and_every_field_is_documented(params):
    names = {s.name for s in params.node_specs()} | {s.name for s in params.slam_specs()}
    assert set(params.RANGES) <= names
    undocumented = [s.name for s in params.slam_specs() if s.description == s.name.replace("_", " ")]
    assert not undocumented, f"config fields without a description: {undocumented}"
    assert set(params.DYNAMIC_NODE_PARAMETERS) <= names
    node_names = {s.name for s in params.node_specs()}
    assert not node_names & {s.name for s in params.slam_specs()}, "node and pipeline parameters must not clash"


def test_params_file_and_command_line_override(make_node, params):
    from gs4_slam.slam import SlamConfig

    node, node_specs, slam_specs = make_node(
        "--params-file", str(NODE_YAML),
        "-p", "working_width:=160", "-p", "working_height:=128",
        "-p", "tracking.solver.iterations:=[2, 4]", "-p", "queue_size:=5",
    )
    config = params.build(SlamConfig, slam_specs, params.values(node, slam_specs))
    assert (config.working_width, config.working_height) == (160, 128)
    assert config.tracking.solver.iterations == (2, 4)
    node_config = params.build(params.NodeConfig, node_specs, params.values(node, node_specs))
    assert node_config.queue_size == 5 and node_config.output_dir == "output/ros"


def test_config_file_sets_the_defaults(make_node, params, tmp_path):
    custom = tmp_path / "slam.yaml"
    base = REPO / "config" / "slam.yaml"
    custom.write_text(f"inherit_from: {base}\nworking_width: 160\nmapping:\n  threaded: false\n")
    node, _, _ = make_node("-p", f"config_file:={custom}")
    assert node.get_parameter("working_width").value == 160
    assert node.get_parameter("mapping.threaded").value is False
    assert node.get_parameter("working_height").value == 240


@pytest.mark.parametrize(
    "override,names",
    [
        ("working_width:=100", ["working_width", "step"]),
        ("tracking.keyframes.min_overlap:=1.5", ["tracking.keyframes.min_overlap", "out of range"]),
        ("device:=tpu", ["device", "tpu"]),
        ("sync_slop_s:=1", ["sync_slop_s", "DOUBLE"]),
        ("mapping.queue_size:=many", ["mapping.queue_size", "INTEGER"]),
        ("render_width:=64", ["render_width", "render_height"]),
        ("virtual_camera.position:=[1.0, 2.0]", ["virtual_camera.position", "3 values"]),
    ],
)
def test_invalid_values_are_refused_naming_the_parameter(make_node, params, override, names):
    from gs4_slam.slam import SlamConfig

    node = make_node("-p", override, declare=False)
    with pytest.raises(params.ParameterError) as error:
        node_specs = params.node_specs()
        params.declare(node, node_specs)
        slam_specs = params.slam_specs()
        params.declare(node, slam_specs)
        params.build(params.NodeConfig, node_specs, params.values(node, node_specs))
        params.build(SlamConfig, slam_specs, params.values(node, slam_specs))
    for name in names:
        assert name in str(error.value)


def test_unknown_names_are_reported(make_node, params):
    node, _, _ = make_node("-p", "trackng.keyframes.translation_m:=0.3")
    assert params.unknown_overrides(node) == ["trackng.keyframes.translation_m"]


def test_read_only_parameters_cannot_change_at_run_time(make_node):
    from rclpy.parameter import Parameter

    node, _, _ = make_node()
    refused = node.set_parameters([Parameter("working_width", value=640)])[0]
    assert not refused.successful and "read-only" in refused.reason
    accepted = node.set_parameters([Parameter("render_rate_hz", value=5.0)])[0]
    assert accepted.successful and node.get_parameter("render_rate_hz").value == 5.0


def test_the_node_validates_run_time_changes(tmp_path):
    """Dynamic node settings change while running; an inconsistent change is refused with the reason."""
    import rclpy
    from rclpy.parameter import Parameter

    from gs4_slam.ros.slam_node import SlamNode

    context = rclpy.Context()
    rclpy.init(args=["--ros-args", "-p", f"output_dir:={tmp_path}", "-p", "predictor.use_baseline:=true",
                     "-p", "working_width:=160", "-p", "working_height:=128"], context=context)
    node = SlamNode(context=context)
    try:
        assert node.set_parameters([Parameter("render_rate_hz", value=5.0)])[0].successful
        assert node.settings.render_rate_hz == 5.0
        refused = node.set_parameters([Parameter("render_width", value=64)])[0]
        assert not refused.successful and "render_height" in refused.reason
        assert node.settings.render_width == 0
        size = [Parameter("render_width", value=64), Parameter("render_height", value=48)]
        both = node.set_parameters_atomically(size)
        assert both.successful and (node.settings.render_width, node.settings.render_height) == (64, 48)
        pose = [Parameter("virtual_camera.position", value=[1.0, 2.0])]
        assert not node.set_parameters(pose)[0].successful
        assert not node.set_parameters([Parameter("queue_size", value=5)])[0].successful  # read-only
    finally:
        node.close()
        node.destroy_node()
        rclpy.try_shutdown(context=context)
