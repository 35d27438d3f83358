"""``ros2 launch tqdm_ros segment.launch.py`` for real: the ROS 2 launch system and CLI.

The vendored launch tooling is installed by scripts/install_ros2_launch.sh, the README's pip-only
recipe (tests/ros/launch_tooling.py), into a cached prefix (a rerun is a no-op, a folder the
script did not make is refused), and the package is colcon-built into a workspace, as a user of a
ROS 2 install has them. One launch of the shipped default model serves the checks of a running
node: it reaches the active state, answers a frame with labels carrying its header, inherits the
environment's DDS settings, ``ros2 param dump`` lists every parameter, and ``ros2 param set``
refuses a parameter that needs a reconfigure. Two more launches cover the DDS arguments:
``local_only:=true`` with two cameras given as a comma list (each answered), and
``fastdds_profile:=none``. Bad launch arguments end the launch with a message that names them.

Every process runs with the test's network-safe environment (tests/conftest.py) and a reserved
ROS_DOMAIN_ID; the ros2 CLI runs with --no-daemon so no daemon outlives the test.
"""

import contextlib
import dataclasses
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time
from typing import Optional

from diagnostic_msgs.msg import DiagnosticArray
import numpy as np
import psutil
import pytest
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
import yaml

from tests.ros.launch_tooling import (
    install_launch_tooling, INSTALL_SCRIPT, ros2_environment, TARBALL)
from tests.ros.ros_harness import (
    fastdds_shm_files, image_message, MessageLog, publish_until, remove_unused_fastdds_files,
    REPO_ROOT, reserved_domain, RosClient, stamp_ns, status_values)
from tqdm_ros.image_conversion import image_to_numpy
from tqdm_ros.parameters import PARAMETER_SPECS

NAMESPACE = '/ros2_launch'
NODE = f'{NAMESPACE}/segmentation_node'
CAMERA = f'{NAMESPACE}/camera/image_raw'
READY_TIMEOUT_S = 120.0
COMMAND_TIMEOUT_S = 60.0
# No ros2 daemon (it would outlive the test); wait up to 10 s for the node to be discovered.
NODE_CLI_OPTIONS = ('--no-daemon', '--timeout', '10')
RELIABLE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
FRAME = np.random.default_rng(3).integers(0, 256, (48, 64, 3), dtype=np.uint8)


@pytest.fixture(scope='module')
def tooling():
    if not TARBALL.is_file():
        pytest.skip(f'the vendored launch tooling {TARBALL} is absent (see '
                    'tests/ros/launch_tooling.py); set TQDM_ROS_LAUNCH_TOOLING to its path')
    return install_launch_tooling()


def run_install_script(prefix: pathlib.Path) -> subprocess.CompletedProcess:
    return subprocess.run(['bash', str(INSTALL_SCRIPT), str(TARBALL), str(prefix)],
                          env={**os.environ, 'PYTHON': sys.executable}, capture_output=True,
                          text=True, timeout=COMMAND_TIMEOUT_S)


def test_install_script_reruns_as_a_no_op_and_spares_foreign_folders(tooling, tmp_path):
    stamp = tooling.prefix / '.ros2_launch_tooling'
    before = stamp.stat().st_mtime_ns
    again = run_install_script(tooling.prefix)
    assert again.returncode == 0, again.stderr
    assert 'already installed' in again.stdout
    assert stamp.stat().st_mtime_ns == before
    foreign = tmp_path / 'foreign'
    foreign.mkdir()
    (foreign / 'keep.txt').write_text('mine')
    refused = run_install_script(foreign)
    assert refused.returncode == 1
    assert 'was not made by this script' in refused.stderr
    assert [p.name for p in foreign.iterdir()] == ['keep.txt']


@pytest.fixture(scope='module')
def ros2_env(tooling, colcon_install_space, tmp_path_factory):
    """The ros2 commands' environment on a reserved domain, with a loopback profile of its own.

    The profile is a copy of the shipped one at another path: a node that reports this path
    inherited the environment's DDS settings instead of the launch file imposing its own.
    """
    profile = tmp_path_factory.mktemp('dds') / 'inherited_profile.xml'
    shutil.copy(REPO_ROOT / 'config' / 'fastdds_localhost.xml', profile)
    shm_before = fastdds_shm_files()
    with reserved_domain():
        yield ros2_environment(tooling, colcon_install_space, extra={
            'FASTDDS_DEFAULT_PROFILES_FILE': str(profile)})
    remove_unused_fastdds_files(shm_before)


def ros2(tooling, env, *arguments: str, timeout: float = COMMAND_TIMEOUT_S):
    return subprocess.run([*tooling.ros2, *arguments], env=env, capture_output=True, text=True,
                          timeout=timeout)


class Launch:
    """A running ``ros2 launch`` with its output collected."""

    def __init__(self, tooling, env, *arguments: str, log: pathlib.Path,
                 cwd: Optional[pathlib.Path] = None) -> None:
        self.log = log
        self._file = log.open('w')
        # Ctrl-C must reach the launch as in a terminal: a test run started as a background job
        # of a non-interactive shell inherits SIGINT ignored, and the launch would never stop.
        self.process = subprocess.Popen(
            [*tooling.ros2, 'launch', 'tqdm_ros', 'segment.launch.py', *arguments], env=env,
            cwd=cwd, stdout=self._file, stderr=subprocess.STDOUT,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))

    @property
    def output(self) -> str:
        if not self._file.closed:  # after stop() too: a failed stop reports the output
            self._file.flush()
        return self.log.read_text()

    def node_process(self) -> psutil.Process:
        for child in psutil.Process(self.process.pid).children(recursive=True):
            if any('segmentation_node' in part for part in child.cmdline()):
                return child
        raise AssertionError(f'no segmentation_node under the launch:\n{self.output}')

    def stop(self, timeout: float = 60.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(2)  # SIGINT, as Ctrl-C
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                for child in psutil.Process(self.process.pid).children(recursive=True):
                    child.kill()
                self.process.kill()
                self.process.wait(10.0)
        self._file.close()
        return self.process.returncode


@dataclasses.dataclass
class Launched:
    launch: Launch
    client: RosClient
    diagnostics: MessageLog


@pytest.fixture(scope='module')
def launched(tooling, ros2_env, tmp_path_factory):
    """The default model launched on one camera, given as the README's YAML list form."""
    with launched_once(tooling, ros2_env, f"camera_topics:=['{CAMERA}']",
                       f'namespace:={NAMESPACE.strip("/")}',
                       log=tmp_path_factory.mktemp('launch') / 'launch.log',
                       client_name='ros2_launch_test_client') as launched:
        yield launched


def wait_until_running(launched: Launched, node: str = NODE) -> dict:
    """Wait until ``node`` reports the active state on /diagnostics; return its model status."""
    def active():
        assert launched.launch.process.poll() is None, (
            f'ros2 launch ended:\n{launched.launch.output}')
        values = status_values(launched.diagnostics, f'{node}: model')
        return values is not None and values['state'] in ('warming up', 'running')

    launched.client.wait_until(active, READY_TIMEOUT_S, f'the launched node {node} active')
    return status_values(launched.diagnostics, f'{node}: model')


@contextlib.contextmanager
def launched_once(tooling, env, *arguments: str, log: pathlib.Path,
                  cwd: Optional[pathlib.Path] = None, client_name: str = 'ros2_launch_test_once'):
    """A launch with a ROS client beside it, stopped with Ctrl-C (exit 0) at the end."""
    launch = Launch(tooling, env, *arguments, log=log, cwd=cwd)
    client = RosClient(name=client_name)
    diagnostics = client.subscribe(DiagnosticArray, '/diagnostics', 50)
    try:
        yield Launched(launch, client, diagnostics)
    finally:
        client.close()
        code = launch.stop()
        assert code == 0, f'ros2 launch exited with {code}:\n{launch.output}'


def test_launched_node_becomes_active_and_answers_a_frame(launched):
    model = wait_until_running(launched)
    assert model['preset'] == 'tqdm-small-rn'
    client = launched.client
    labels = client.subscribe(Image, f'{NAMESPACE}/camera/segmentation/labels',
                                          RELIABLE)
    publisher = client.node.create_publisher(Image, CAMERA, RELIABLE)
    frame_stamp = 1_700_000_000_000_000_777
    msg = image_message(FRAME, 'rgb8', stamp_ns=frame_stamp, frame_id='launch_camera')
    deadline = time.monotonic() + 30.0
    while not labels.messages and time.monotonic() < deadline:
        publisher.publish(msg)
        time.sleep(0.5)
    out = labels.wait_for(lambda m: stamp_ns(m) == frame_stamp, 1.0, 'labels of the frame')
    assert out.header.frame_id == 'launch_camera'
    assert image_to_numpy(out).shape == FRAME.shape[:2]


def test_launched_node_inherits_the_environment_dds_settings(launched, ros2_env):
    wait_until_running(launched)
    environment = launched.launch.node_process().environ()
    assert environment['FASTDDS_DEFAULT_PROFILES_FILE'] == ros2_env[
        'FASTDDS_DEFAULT_PROFILES_FILE']
    assert environment['ROS_AUTOMATIC_DISCOVERY_RANGE'] == 'LOCALHOST'  # the test's own setting


def test_param_dump_lists_every_parameter(launched, tooling, ros2_env):
    wait_until_running(launched)
    dumped = ros2(tooling, ros2_env, 'param', 'dump', NODE, *NODE_CLI_OPTIONS)
    assert dumped.returncode == 0, dumped.stderr
    values = yaml.safe_load(dumped.stdout)[NODE]['ros__parameters']
    for spec in PARAMETER_SPECS:
        assert spec.name in values, f'{spec.name} missing from ros2 param dump:\n{dumped.stdout}'
    assert values['probability_classes'] == []
    assert values['input_topics'] == [CAMERA]


def test_param_set_refuses_invalid_values_and_what_needs_a_reconfigure(launched, tooling,
                                                                       ros2_env):
    wait_until_running(launched)

    def param_set(name: str, value: str) -> str:
        done = ros2(tooling, ros2_env, 'param', 'set', NODE, name, value, *NODE_CLI_OPTIONS)
        return done.stdout + done.stderr

    assert ("Setting parameter failed: parameter 'device' must be 'cpu', 'cuda' or "
            "'cuda:<index>', got 'gpu'") in param_set('device', 'gpu')
    refused = param_set('inference_mode', 'slide')
    assert ("Setting parameter failed: 'inference_mode' takes effect only at configure, and the "
            'node is configured') in refused
    assert f'ros2 lifecycle set {NODE} deactivate, then cleanup' in refused
    assert 'Set parameter successful' in param_set('overlay_alpha', '0.3')
    assert 'Set parameter successful' in param_set('max_rate_hz', '5.0')  # applied at run time
    got = ros2(tooling, ros2_env, 'param', 'get', NODE, 'inference_mode', *NODE_CLI_OPTIONS)
    assert 'String value is: whole' in got.stdout, got.stdout + got.stderr


def test_local_only_launch_with_a_comma_list_answers_each_camera(tooling, ros2_env,
                                                                  colcon_install_space, tmp_path):
    node = '/local_only_launch/segmentation_node'
    cameras = ('/a', '/b')
    with launched_once(tooling, ros2_env, 'local_only:=true',
                       f'camera_topics:={",".join(c + "/image_raw" for c in cameras)}',
                       'namespace:=local_only_launch', log=tmp_path / 'launch.log') as launched:
        wait_until_running(launched, node)
        environment = launched.launch.node_process().environ()
        # local_only loads the installed package's loopback profile instead of the inherited one.
        assert environment['FASTDDS_DEFAULT_PROFILES_FILE'] == str(
            colcon_install_space / 'share' / 'tqdm_ros' / 'config' / 'fastdds_localhost.xml')
        assert environment['ROS_AUTOMATIC_DISCOVERY_RANGE'] == 'LOCALHOST'
        client = launched.client
        for index, camera in enumerate(cameras):
            labels = client.subscribe(Image, f'{camera}/segmentation/labels', RELIABLE)
            publisher = client.node.create_publisher(Image, f'{camera}/image_raw', RELIABLE)
            frame_stamp = 1_700_000_000_000_000_000 + index
            msg = image_message(FRAME, 'rgb8', stamp_ns=frame_stamp, frame_id=camera[1:])
            publish_until(publisher, msg,
                          lambda: any(stamp_ns(m) == frame_stamp for m in labels.messages),
                          timeout=30.0, what=f'labels of a frame on {camera}/image_raw')
            answer = next(m for m in labels.messages if stamp_ns(m) == frame_stamp)
            assert answer.header.frame_id == camera[1:]


def test_fastdds_profile_none_removes_the_environment_profile(tooling, ros2_env, tmp_path):
    """The launched node gets no profile variable, though the test's environment sets one.

    Network safety without the variable: Fast DDS falls back to DEFAULT_FASTDDS_PROFILES.xml in
    the working folder, so the launch runs in a folder holding the loopback profile under that
    name, and the test checks that the node's DDS ports are bound to 127.0.0.1 only.
    """
    node = '/no_profile_launch/segmentation_node'
    assert ros2_env['FASTDDS_DEFAULT_PROFILES_FILE']  # what the launch must remove
    working_folder = tmp_path / 'working_folder'
    working_folder.mkdir()
    shutil.copy(REPO_ROOT / 'config' / 'fastdds_localhost.xml',
                working_folder / 'DEFAULT_FASTDDS_PROFILES.xml')
    with launched_once(tooling, ros2_env, 'fastdds_profile:=none',
                       "camera_topics:=['/no_profile/image_raw']", 'namespace:=no_profile_launch',
                       log=tmp_path / 'launch.log', cwd=working_folder) as launched:
        wait_until_running(launched, node)
        process = launched.launch.node_process()
        environment = process.environ()
        assert 'FASTDDS_DEFAULT_PROFILES_FILE' not in environment
        assert 'FASTRTPS_DEFAULT_PROFILES_FILE' not in environment
        assert environment['ROS_AUTOMATIC_DISCOVERY_RANGE'] == 'LOCALHOST'
        # The RTPS ports of the reserved domain (RTPS spec 9.6.1.1): 7400 + 250 * domain + 0..249,
        # below the ephemeral range for the reserved domains 1-100, so only DDS sockets count.
        first_port = 7400 + 250 * int(ros2_env['ROS_DOMAIN_ID'])
        dds_addresses = {c.laddr.ip for c in process.net_connections(kind='udp')
                         if first_port <= c.laddr.port < first_port + 250}
        assert dds_addresses == {'127.0.0.1'}


@pytest.mark.parametrize('argument, message', [
    ('autostart:=maybe', "launch argument autostart must be 'true' or 'false', got 'maybe'"),
    ('local_only:=yes', "launch argument local_only must be 'true' or 'false', got 'yes'"),
    ('fastdds_profile:=/nowhere/profile.xml',
     "launch argument fastdds_profile: '/nowhere/profile.xml' is not a file"),
    ("camera_topics:=['/a/image', 3]", 'launch argument camera_topics must list topic names'),
])
def test_bad_launch_argument_ends_the_launch_with_its_name(tooling, ros2_env, argument,
                                                           message):
    ended = ros2(tooling, ros2_env, 'launch', 'tqdm_ros', 'segment.launch.py', argument)
    assert ended.returncode != 0
    assert message in ended.stdout + ended.stderr, ended.stdout + ended.stderr
    assert 'process started' not in ended.stdout  # refused before any process starts


def test_invalid_topic_name_is_reported_by_the_node(tooling, ros2_env):
    ended = ros2(tooling, ros2_env, 'launch', 'tqdm_ros', 'segment.launch.py',
                 "camera_topics:=['/camera/image raw']", 'namespace:=bad_topic',
                 timeout=READY_TIMEOUT_S)
    output = ended.stdout + ended.stderr
    assert "parameter 'input_topics'" in output and '/camera/image raw' in output, output
    assert 'exit code 2' in output, output


def test_show_args_lists_the_dds_options(tooling, ros2_env):
    shown = ros2(tooling, ros2_env, 'launch', 'tqdm_ros', 'segment.launch.py', '--show-args')
    assert shown.returncode == 0, shown.stderr
    for argument in ('camera_topics', 'input_transport', 'local_only', 'fastdds_profile'):
        assert f"'{argument}':" in shown.stdout
