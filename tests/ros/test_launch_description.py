"""launch/segment.launch.py evaluated by the launch system, without starting a process.

The launch description is visited action by action in a LaunchContext, as ``ros2 launch`` does,
but a process action (the node, RViz) is recorded with the environment it would start in instead
of being executed. The package's share folder is the checkout (config/ is where the launch file
looks). tests/ros/test_ros2_launch.py runs the launch file for real.
"""

import importlib.util
import os
import pathlib
import shutil
import sys
import tempfile

import pytest

from tests.ros.launch_tooling import install_launch_tooling, TARBALL
from tests.ros.ros_harness import REPO_ROOT
from tqdm_ros.launch_arguments import LaunchArgumentError

LAUNCH_FILE = REPO_ROOT / 'launch' / 'segment.launch.py'
SHIPPED_PROFILE = str(REPO_ROOT / 'config' / 'fastdds_localhost.xml')


@pytest.fixture(scope='module')
def launch_file():
    """The launch file's module, with the launch tooling importable and the checkout as share."""
    if not TARBALL.is_file():
        pytest.skip(f'the vendored launch tooling {TARBALL} is absent (see '
                    'tests/ros/launch_tooling.py); set TQDM_ROS_LAUNCH_TOOLING to its path')
    sys.path.insert(0, str(install_launch_tooling().site_packages))
    spec = importlib.util.spec_from_file_location('segment_launch', LAUNCH_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.get_package_share_directory = lambda package: str(REPO_ROOT)
    yield module
    sys.path.remove(str(install_launch_tooling().site_packages))


@pytest.fixture
def environment(monkeypatch):
    """A known DDS environment, restored afterwards (the launch context edits os.environ)."""
    saved = dict(os.environ)
    monkeypatch.setenv('ROS_DISTRO', 'kilted')
    monkeypatch.setenv('FASTDDS_DEFAULT_PROFILES_FILE', '/integrator/profile.xml')
    monkeypatch.delenv('ROS_AUTOMATIC_DISCOVERY_RANGE', raising=False)
    yield
    os.environ.clear()
    os.environ.update(saved)


def evaluate(description) -> list:
    """Visit every entity of a launch description; return (process action, its environment).

    Raises:
        LaunchArgumentError: what the launch file raises for a bad argument.
    """
    from launch import LaunchContext
    from launch.actions import ExecuteProcess

    started = []

    def visit(entity, context):
        if isinstance(entity, ExecuteProcess):
            started.append((entity, dict(os.environ)))
            return
        for sub_entity in entity.visit(context) or []:
            visit(sub_entity, context)

    visit(description, LaunchContext())
    return started


def including(launch_file, arguments: dict, after: list):
    """A parent launch description: include segment.launch.py with ``arguments``, then
    ``after`` (actions of the parent)."""
    from launch import LaunchDescription, LaunchDescriptionSource
    from launch.actions import IncludeLaunchDescription

    return LaunchDescription([
        IncludeLaunchDescription(
            LaunchDescriptionSource(launch_file.generate_launch_description()),
            launch_arguments=arguments.items()),
        *after,
    ])


def launched(launch_file, **arguments) -> dict:
    """Evaluate the launch file with ``arguments``: 'node' or 'rviz2' -> (action, environment)."""
    from launch_ros.actions import LifecycleNode

    return {'node' if isinstance(action, LifecycleNode) else 'rviz2': (action, env)
            for action, env in evaluate(including(launch_file, arguments, []))}


@pytest.mark.parametrize('arguments, node_sees', [
    ({'local_only': 'true'}, {'ROS_AUTOMATIC_DISCOVERY_RANGE': 'LOCALHOST',
                              'FASTDDS_DEFAULT_PROFILES_FILE': SHIPPED_PROFILE}),
    ({'fastdds_profile': 'none'}, {'ROS_AUTOMATIC_DISCOVERY_RANGE': None,
                                   'FASTDDS_DEFAULT_PROFILES_FILE': None}),
])
def test_dds_settings_reach_this_launch_files_processes_only(launch_file, environment,
                                                             arguments, node_sees):
    """A parent that includes the launch file keeps its own DDS settings for what it starts
    afterwards; the node (and RViz) get the launch file's."""
    from launch.actions import OpaqueFunction

    seen_after = {}
    parent = including(launch_file, {**arguments, 'rviz': 'true'}, [
        OpaqueFunction(function=lambda context: seen_after.update(os.environ))])
    started = evaluate(parent)
    assert len(started) == 2  # the node and RViz
    for action, env in started:
        assert {name: env.get(name) for name in node_sees} == node_sees, action
    assert seen_after.get('ROS_AUTOMATIC_DISCOVERY_RANGE') is None
    assert seen_after['FASTDDS_DEFAULT_PROFILES_FILE'] == '/integrator/profile.xml'
    remove_rviz_folder(rviz_config_file(started[1][0]))


@pytest.mark.parametrize('name, value, message', [
    ('precision', 'fp64',
     "parameter 'precision' must be one of 'auto', 'fp32', 'bf16', 'fp16', got 'fp64'"),
    ('device', 'gpu', "parameter 'device' must be 'cpu', 'cuda' or 'cuda:<index>', got 'gpu'"),
    ('precision', 'fp16', "parameter 'precision' must be 'fp32' or 'bf16' on the CPU"),
])
def test_bad_inference_argument_ends_the_launch_before_any_process(launch_file, environment,
                                                                   name, value, message):
    """The node's own validation, over the params file's device (cpu) for fp16."""
    with pytest.raises(LaunchArgumentError) as error:
        launched(launch_file, **{name: value})
    assert str(error.value).startswith(f'launch arguments ({name}:={value}) with ')
    assert message in str(error.value)


def test_good_inference_arguments_reach_the_node(launch_file, environment):
    processes = launched(launch_file, device='cuda:1', precision='fp16')
    assert set(processes) == {'node'}


def remove_rviz_folder(config_file: str) -> None:
    """Remove the launch's per-launch RViz folder (only that: never a folder of the checkout)."""
    folder = pathlib.Path(config_file).parent
    assert folder.parent == pathlib.Path(tempfile.gettempdir()), config_file
    assert folder.name.startswith('tqdm_ros_rviz_'), config_file
    shutil.rmtree(folder)


def rviz_config_file(action) -> str:
    from launch import LaunchContext
    from launch.utilities import perform_substitutions

    texts = [perform_substitutions(LaunchContext(), part) for part in action.cmd[1:]]
    return texts[texts.index('-d') + 1]


def rviz_topics(launch_file, **arguments) -> list:
    import yaml

    action, _ = launched(launch_file, rviz='true', **arguments)['rviz2']
    path = rviz_config_file(action)
    try:
        with open(path) as file:
            displays = yaml.safe_load(file)['Visualization Manager']['Displays']
    finally:
        remove_rviz_folder(path)
    return [display['Topic']['Value'] for display in displays]


def test_rviz_shows_the_first_camera_in_the_node_namespace(launch_file, environment):
    assert rviz_topics(launch_file, camera_topics='front/image_raw,/rear/image_raw',
                       namespace='robot') == [
        '/robot/front/image_raw', '/robot/front/segmentation/overlay',
        '/robot/front/segmentation/color_mask', '/robot/front/segmentation/confidence_mono8']
    assert rviz_topics(launch_file, camera_topics="['/rear/image_raw']",
                       input_transport='compressed') == [
        '/rear/image_raw/compressed', '/rear/segmentation/overlay',
        '/rear/segmentation/color_mask', '/rear/segmentation/confidence_mono8']


def test_rviz_shows_the_params_file_camera_by_default(launch_file, environment):
    assert rviz_topics(launch_file) == [
        '/camera/image_raw', '/camera/segmentation/overlay', '/camera/segmentation/color_mask',
        '/camera/segmentation/confidence_mono8']
