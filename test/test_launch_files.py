"""Launch files (README, ROS 2: launch). ``launch``/``launch_ros`` are not pip-installable: when they import,
the descriptions are loaded; in every case the files are parsed and their executables, params
file, remaps and arguments are checked against setup.py, config/ and the nodes' sources."""
from __future__ import annotations

import ast
import fnmatch
import importlib.util
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
LAUNCH = {"camera": REPO / "launch" / "camera.launch.py", "replay": REPO / "launch" / "replay.launch.py"}
# issue #5: camera.launch.py takes exactly these arguments
CAMERA_ARGUMENTS = {"camera_topic", "params_file", "namespace", "start_camera", "video_device", "video_file", "backend"}
REPLAY_ARGUMENTS = {"bag", "camera_topic", "params_file", "namespace", "backend", "rate", "record", "output_bag"}


def _name(node: ast.AST) -> str:
    return node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else ""


def _calls(tree: ast.AST, name: str) -> list[ast.Call]:
    return [n for n in ast.walk(tree) if isinstance(n, ast.Call) and _name(n.func) == name]


def _keyword(call: ast.Call, key: str) -> ast.AST | None:
    return next((k.value for k in call.keywords if k.arg == key), None)


def _launch_configuration(node: ast.AST | None) -> str | None:
    """'x' for LaunchConfiguration("x"), else None."""
    if isinstance(node, ast.Call) and _name(node.func) == "LaunchConfiguration":
        return ast.literal_eval(node.args[0])
    return None


def _module_strings(tree: ast.Module) -> dict[str, str]:
    """Module-level NAME = "constant" assignments."""
    return {target.id: node.value.value for node in tree.body if isinstance(node, ast.Assign)
            for target in node.targets if isinstance(target, ast.Name) and isinstance(node.value, ast.Constant)}


def _string(node: ast.AST, names: dict[str, str]) -> str:
    """A string literal or f-string over module constants."""
    if isinstance(node, ast.JoinedStr):
        return "".join(_string(part.value if isinstance(part, ast.FormattedValue) else part, names)
                       for part in node.values)
    if isinstance(node, ast.Name):
        return names[node.id]
    return ast.literal_eval(node)


def _setup() -> tuple[dict[str, str], list[str], str]:
    """setup.py: console script name -> 'module:function', data_files globs and listed files, package name."""
    tree = ast.parse((REPO / "setup.py").read_text())
    names = _module_strings(tree)
    (entry_points,) = [_keyword(call, "entry_points") for call in _calls(tree, "setup")]
    scripts_node = next(v for k, v in zip(entry_points.keys, entry_points.values) if ast.literal_eval(k) == "console_scripts")
    pairs = (_string(entry, names).split("=") for entry in scripts_node.elts)
    scripts = {name.strip(): target.strip() for name, target in pairs}
    (data_files,) = [_keyword(call, "data_files") for call in _calls(tree, "setup")]
    listed = [_string(node, names) for entry in data_files.elts for node in ast.walk(entry.elts[1])
              if isinstance(node, ast.Constant) and isinstance(node.value, str)]
    globs = [_string(call.args[0], names) for call in _calls(tree, "glob")] + listed
    return scripts, globs, names["PACKAGE"]


def _declared(tree: ast.AST) -> dict[str, ast.AST | None]:
    return {ast.literal_eval(call.args[0]): _keyword(call, "default_value") for call in _calls(tree, "DeclareLaunchArgument")}


def _nodes(tree: ast.AST) -> dict[str, ast.Call]:
    return {ast.literal_eval(_keyword(call, "executable")): call for call in _calls(tree, "Node")}


def _remaps(call: ast.Call) -> dict[str, str | None]:
    return {ast.literal_eval(pair.elts[0]): _launch_configuration(pair.elts[1]) for pair in _keyword(call, "remappings").elts}


@pytest.mark.parametrize("which", ["camera", "replay"])
def test_nodes_are_installed_executables_with_image_remapped(which: str) -> None:
    tree = ast.parse(LAUNCH[which].read_text())
    scripts, globs, package = _setup()
    assert any(fnmatch.fnmatch(f"launch/{LAUNCH[which].name}", pattern) for pattern in globs)
    package_xml = ET.parse(REPO / "package.xml").getroot().findtext("name")
    nodes = _nodes(tree)
    for executable, call in nodes.items():
        assert ast.literal_eval(_keyword(call, "package")) == package == package_xml
        module, function = scripts[executable].split(":")  # KeyError: not a console script
        source = REPO / (module.replace(".", "/") + ".py")
        assert function in {n.name for n in ast.parse(source.read_text()).body if isinstance(n, ast.FunctionDef)}
        assert _launch_configuration(_keyword(call, "namespace")) == "namespace"
    perception = nodes["perception_node"]
    assert _remaps(perception) == {"image": "camera_topic"}
    params_file, overrides = _keyword(perception, "parameters").elts
    assert _launch_configuration(params_file) == "params_file"
    assert {ast.literal_eval(k): _launch_configuration(v) for k, v in zip(overrides.keys, overrides.values)} == {
        "backend": "backend"}


@pytest.mark.parametrize("which", ["camera", "replay"])
def test_default_params_file_is_installed_and_holds_the_node_parameters(which: str) -> None:
    tree = ast.parse(LAUNCH[which].read_text())
    default = _declared(tree)["params_file"]
    assert isinstance(default, ast.Call) and _name(default.func) == "PathJoinSubstitution"
    share, *parts = default.args[0].elts
    _scripts, globs, package = _setup()
    assert _name(share.func) == "FindPackageShare" and ast.literal_eval(share.args[0]) == package
    relative = "/".join(ast.literal_eval(part) for part in parts)
    assert (REPO / relative).is_file()
    assert any(fnmatch.fnmatch(relative, pattern) for pattern in globs)  # installed to share/<package>/config
    parameters = yaml.safe_load((REPO / relative).read_text())["/**"]["ros__parameters"]
    assert "backend" in parameters  # the launch override is a real parameter
    pytest.importorskip("rclpy", reason="ROS 2 wheels (rclpy) not installed")
    from jointperception.ros.node_parts import PARAMETERS

    assert set(parameters) == set(PARAMETERS)
    backend_default = ast.literal_eval(_declared(tree)["backend"])
    assert backend_default == parameters["backend"] == PARAMETERS["backend"][0]


def test_camera_launch_arguments_and_camera_source() -> None:
    tree = ast.parse(LAUNCH["camera"].read_text())
    assert set(_declared(tree)) == CAMERA_ARGUMENTS
    camera = _nodes(tree)["camera_source"]
    source_tree = ast.parse((REPO / "jointperception" / "ros" / "camera_source.py").read_text())
    published = {ast.literal_eval(call.args[1]) for call in _calls(source_tree, "create_publisher")
                 if isinstance(call.args[1], ast.Constant)}  # image_raw/compressed is resolved at run time
    declared = {ast.literal_eval(call.args[0]) for call in _calls(source_tree, "declare_parameter")}
    assert _remaps(camera) == {"image_raw": "camera_topic"} and "image_raw" in published
    (parameters,) = _keyword(camera, "parameters").elts
    assert {ast.literal_eval(key) for key in parameters.keys} <= declared
    condition = _keyword(camera, "condition")
    assert _name(condition.func) == "IfCondition" and _launch_configuration(condition.args[0]) == "start_camera"


def test_replay_launch_plays_the_bag_and_records_the_outputs() -> None:
    tree = ast.parse(LAUNCH["replay"].read_text())
    declared = _declared(tree)
    assert set(declared) == REPLAY_ARGUMENTS
    assert declared["bag"] is None  # required
    def word(node: ast.AST) -> str:  # "text", "$(name)" for LaunchConfiguration("name"), lists joined
        if isinstance(node, ast.Name):  # a list of substitutions assigned in the file
            node = next(n.value for n in ast.walk(tree) if isinstance(n, ast.Assign)
                        and any(isinstance(t, ast.Name) and t.id == node.id for t in n.targets))
        if isinstance(node, ast.List):
            return "".join(word(part) for part in node.elts)
        name = _launch_configuration(node)
        return f"$({name})" if name else node.value if isinstance(node, ast.Constant) else ast.dump(node)

    commands = [[word(e) for e in _keyword(call, "cmd").elts] for call in _calls(tree, "ExecuteProcess")]
    play = next(c for c in commands if c[:3] == ["ros2", "bag", "play"])
    assert play[3] == "$(bag)" and play[play.index("--topics") + 1] == "$(camera_topic)"
    assert play[play.index("--topics") + 2] == "$(camera_topic)/compressed"  # bags of CompressedImage
    record = next(c for c in commands if c[:3] == ["ros2", "bag", "record"])
    assert record[record.index("-o") + 1] == "$(output_bag)" and record[record.index("-s") + 1] == "mcap"
    assert record[record.index("--topics") + 1] == "$(camera_topic)"
    assert record[record.index("--topics") + 2] == "$(camera_topic)/compressed"


@pytest.mark.parametrize("which", ["camera", "replay"])
def test_launch_description_loads_when_launch_ros_is_installed(which: str) -> None:
    if importlib.util.find_spec("launch_ros") is None:
        pytest.skip("launch_ros is not installed (it comes with a ROS 2 install); checked by parsing above")
    from launch.actions import DeclareLaunchArgument
    from launch.launch_description import LaunchDescription

    spec = importlib.util.spec_from_file_location(f"{which}_launch", LAUNCH[which])
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    description = module.generate_launch_description()
    assert isinstance(description, LaunchDescription)
    names = {e.name for e in description.entities if isinstance(e, DeclareLaunchArgument)}
    assert names == (CAMERA_ARGUMENTS if which == "camera" else REPLAY_ARGUMENTS)
