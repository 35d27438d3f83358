"""launch/segment.launch.py, read with ``ast``: what it names exists.

These checks need no launch installation: the executable is a console script of this package,
the files it references ship in config/, the parameters its arguments set are declared by the
node, every argument it reads is declared. tests/ros/test_ros2_launch.py runs it for real.
"""

import ast
import fnmatch
import importlib

from tests.ros.ros_harness import REPO_ROOT
from tqdm_ros.launch_arguments import ARGUMENT_PARAMETERS, INFERENCE_ARGUMENTS
from tqdm_ros.parameters import SPECS_BY_NAME

LAUNCH_FILE = REPO_ROOT / 'launch' / 'segment.launch.py'
TREE = ast.parse(LAUNCH_FILE.read_text())


def module_constant(tree: ast.Module, name: str):
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == name for t in node.targets):
            return ast.literal_eval(node.value)
    raise AssertionError(f'{name} is not a module-level constant')


def calls(tree: ast.AST, function: str) -> list:
    return [node for node in ast.walk(tree) if isinstance(node, ast.Call) and function in (
        getattr(node.func, 'id', None), getattr(node.func, 'attr', None))]


def keyword(call: ast.Call, name: str):
    for item in call.keywords:
        if item.arg == name:
            return item.value
    return None


def setup_py_call() -> ast.Call:
    return calls(ast.parse((REPO_ROOT / 'setup.py').read_text()), 'setup')[0]


def string_constants(tree: ast.AST) -> set:
    return {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(
        n.value, str)}


def test_executables_are_console_scripts_of_the_package():
    entry_points = ast.literal_eval(keyword(setup_py_call(), 'entry_points'))
    scripts = dict(line.replace(' ', '').split('=') for line in entry_points['console_scripts'])
    package = module_constant(TREE, 'PACKAGE')
    nodes = [c for c in calls(TREE, 'LifecycleNode') + calls(TREE, 'Node')
             if keyword(c, 'executable') is not None]
    ours = [c for c in nodes if isinstance(keyword(c, 'package'), ast.Name)]
    assert package == 'tqdm_ros' and len(ours) == 1
    executable = keyword(ours[0], 'executable').value
    module, function = scripts[executable].split(':')
    assert callable(getattr(importlib.import_module(module), function))
    others = {keyword(c, 'package').value for c in nodes if c not in ours}
    assert others == {'rviz2'}


def test_referenced_config_files_exist_and_are_installed():
    setup_globs = [s for s in string_constants(setup_py_call()) if s.startswith('config/')]
    referenced = [a.value for c in calls(TREE, 'join') for a in c.args
                  if isinstance(a, ast.Constant) and a.value.endswith(('.yaml', '.rviz', '.xml'))]
    assert sorted(referenced) == ['fastdds_localhost.xml', 'segment.rviz', 'segment.yaml']
    for name in referenced:
        assert (REPO_ROOT / 'config' / name).is_file(), name
        assert any(fnmatch.fnmatch(f'config/{name}', g) for g in setup_globs), name
    assert any(fnmatch.fnmatch('launch/segment.launch.py', s)
               for s in string_constants(setup_py_call()))


def test_parameters_set_by_arguments_are_declared_by_the_node():
    declared_arguments = {c.args[0].value for c in calls(TREE, 'DeclareLaunchArgument')}
    for argument, parameter in ARGUMENT_PARAMETERS.items():
        assert parameter in SPECS_BY_NAME, parameter
        assert argument in declared_arguments, argument


def test_every_launch_configuration_read_is_a_declared_argument():
    declared = {c.args[0].value for c in calls(TREE, 'DeclareLaunchArgument')}
    read = {c.args[0].value for c in calls(TREE, 'LaunchConfiguration') + calls(TREE, 'argument')
            if isinstance(c.args[0], ast.Constant)}
    read |= set(ARGUMENT_PARAMETERS)
    assert read <= declared, read - declared
    assert {'camera_topics', 'input_transport', 'params_file', 'preset', 'checkpoint', 'device',
            'namespace', 'local_only', 'fastdds_profile'} <= declared


def test_inference_arguments_are_the_arguments_that_set_inference_options():
    """The launch checks these with the node's validation; the others it checks itself."""
    assert set(INFERENCE_ARGUMENTS) == {argument for argument, parameter in
                                        ARGUMENT_PARAMETERS.items()
                                        if SPECS_BY_NAME[parameter].option is not None}
