"""launch/segment.launch.py: run it where launch_ros exists; everywhere, check what it names.

launch_ros is not on pip, so the static checks read the file with ``ast`` (no substitute launch
system): the executable is a console script of this package, the files it references ship in
config/, the parameters it sets are declared by the node, every LaunchConfiguration it reads is a
declared argument.
"""

import ast
import fnmatch
import importlib
import threading

import pytest

from tests.ros.ros_harness import (
    fastdds_shm_files, remove_unused_fastdds_files, REPO_ROOT, reserved_domain, RosClient)
from tqdm_ros.class_table_publisher import LATCHED_QOS
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
    argument_parameters = module_constant(TREE, 'ARGUMENT_PARAMETERS')
    declared_arguments = {c.args[0].value for c in calls(TREE, 'DeclareLaunchArgument')}
    for argument, parameter in argument_parameters.items():
        assert parameter in SPECS_BY_NAME, parameter
        assert argument in declared_arguments, argument


def test_every_launch_configuration_read_is_a_declared_argument():
    declared = {c.args[0].value for c in calls(TREE, 'DeclareLaunchArgument')}
    read = {c.args[0].value for c in calls(TREE, 'LaunchConfiguration')
            if isinstance(c.args[0], ast.Constant)}
    read |= set(module_constant(TREE, 'ARGUMENT_PARAMETERS'))
    assert read <= declared, read - declared
    assert {'camera_topics', 'params_file', 'model', 'checkpoint', 'device',
            'namespace'} <= declared


def test_launch_description_starts_the_node(tmp_path):
    """Runs the launch file with the real launch API, where ROS 2 is installed with launch_ros."""
    launch = pytest.importorskip('launch')
    pytest.importorskip('launch_ros')
    from ament_index_python.packages import get_package_share_directory, PackageNotFoundError
    from launch.actions import IncludeLaunchDescription
    from launch.launch_description_sources import PythonLaunchDescriptionSource
    from std_msgs.msg import String
    from tqdm_core import create_model, save_checkpoint

    try:
        get_package_share_directory('tqdm_ros')
    except PackageNotFoundError:
        pytest.skip('tqdm_ros is not installed in the ament index (build it with colcon)')
    checkpoint = save_checkpoint(create_model('tqdm-tiny-rn', pretrained=None, seed=0),
                                 tmp_path / 'tiny.pt')
    shm_before = fastdds_shm_files()
    with reserved_domain():
        service = launch.LaunchService()
        service.include_launch_description(IncludeLaunchDescription(
            PythonLaunchDescriptionSource(str(LAUNCH_FILE)), launch_arguments={
                'checkpoint': str(checkpoint), 'model': 'tqdm-tiny-rn',
                'camera_topics': '/launch_test/image', 'namespace': 'launch_test'}.items()))
        runner = threading.Thread(target=service.run, daemon=True)
        runner.start()
        client = RosClient(name='launch_test_client')
        try:
            table = client.subscribe(String, '/launch_test/segmentation/class_table', LATCHED_QOS)
            table.wait_for(lambda m: True, 120.0, 'class table from the launched node')
        finally:
            client.close()
            service.shutdown()
            runner.join(30.0)
    remove_unused_fastdds_files(shm_before)
