"""scripts/ros_env.sh: POSIX sh, nothing written into the checkout, live shared memory kept.

Sourcing it runs Fast DDS's own ``shm clean``, which removes only the shared-memory files whose
lock no live process holds: the files of a running participant survive however old they are,
those of a killed one go.
"""

import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

import pytest

from tests.ros.ros_harness import (
    fastdds_shm_files, remove_unused_fastdds_files, REPO_ROOT, reserved_domain, SHM_DIR)

SCRIPT = REPO_ROOT / 'scripts' / 'ros_env.sh'
PROFILE = REPO_ROOT / 'config' / 'fastdds_localhost.xml'
# Lives until its standard input closes, then shuts down cleanly (no signal: how a process
# handles SIGINT under load is not what these tests are about).
PARTICIPANT = '''
import sys
import rclpy
from std_msgs.msg import String
rclpy.init()
node = rclpy.create_node('shm_probe')
publisher = node.create_publisher(String, 'shm_probe', 1)
print('ready', flush=True)
sys.stdin.read()
node.destroy_node()
rclpy.shutdown()
'''


def sourced_environment(shell: str, checkout: pathlib.Path, *, cwd: pathlib.Path,
                        env: dict) -> dict:
    """Variables after ``. scripts/ros_env.sh`` in ``shell``, as name -> value."""
    done = subprocess.run(
        [shell, '-c', f'. "{checkout}/scripts/ros_env.sh" && env -0'], cwd=cwd, env=env,
        capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return dict(item.split('=', 1) for item in done.stdout.split('\0') if '=' in item)


@pytest.fixture
def checkout(tmp_path) -> pathlib.Path:
    """A copy of the files ros_env.sh reads, so nothing it writes can hide in the repository."""
    (tmp_path / 'scripts').mkdir()
    (tmp_path / 'config').mkdir()
    shutil.copy(SCRIPT, tmp_path / 'scripts')
    shutil.copy(PROFILE, tmp_path / 'config')
    return tmp_path


def base_environment(home: pathlib.Path) -> dict:
    return {'PATH': os.environ['PATH'], 'HOME': str(home)}


@pytest.mark.parametrize('shell', ['sh', 'bash'])
def test_sourced_from_the_checkout_sets_the_network_safe_variables(shell, checkout, tmp_path):
    variables = sourced_environment(shell, checkout, cwd=checkout,
                                    env=base_environment(tmp_path / 'home'))
    assert variables['ROS_AUTOMATIC_DISCOVERY_RANGE'] == 'LOCALHOST'
    assert variables['FASTDDS_DEFAULT_PROFILES_FILE'] == str(
        checkout / 'config' / 'fastdds_localhost.xml')
    assert variables['AMENT_PREFIX_PATH'] == str(checkout / '.venv')
    assert 'ROS_LOG_DIR' not in variables  # ROS's own ~/.ros/log
    assert sorted(p.name for p in checkout.iterdir()) == ['config', 'scripts']


def test_bash_finds_the_checkout_from_anywhere_and_sh_says_how(checkout, tmp_path):
    elsewhere = tmp_path / 'elsewhere'
    elsewhere.mkdir()
    environment = base_environment(tmp_path / 'home')
    variables = sourced_environment('bash', checkout, cwd=elsewhere, env=environment)
    assert variables['FASTDDS_DEFAULT_PROFILES_FILE'].startswith(str(checkout))
    variables = sourced_environment('sh', checkout, cwd=elsewhere,
                                    env={**environment, 'TQDM_ROS_ROOT': str(checkout)})
    assert variables['FASTDDS_DEFAULT_PROFILES_FILE'].startswith(str(checkout))
    refused = subprocess.run(['sh', '-c', f'. "{checkout}/scripts/ros_env.sh"'], cwd=elsewhere,
                             env=environment, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 1
    assert 'source this file from the tqdm_ros repository root, or set TQDM_ROS_ROOT' in (
        refused.stderr)


def test_without_home_the_ros_log_goes_to_a_temporary_folder(checkout):
    variables = sourced_environment('sh', checkout, cwd=checkout,
                                    env={'PATH': os.environ['PATH']})
    assert variables['ROS_LOG_DIR'].startswith('/tmp/ros_log_')


def fastdds_files_owned_by(pid: int) -> set:
    """The Fast DDS segments and ports a process owns, and their lock files.

    An owner keeps a lock file (``<name>_el`` or ``<name>_sl``) open for each; the process also
    maps other participants' ports to send to them, which it does not own.
    """
    owned = set()
    for descriptor in pathlib.Path(f'/proc/{pid}/fd').iterdir():
        target = os.readlink(descriptor)
        name = target.rsplit('/', 1)[-1]
        if target.startswith('/dev/shm/fastdds_') and name.endswith(('_el', '_sl')):
            owned |= {name, name[:-3]}
    return owned


def start_participant() -> subprocess.Popen:
    process = subprocess.Popen([sys.executable, '-c', PARTICIPANT], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == 'ready'
    return process


def test_shared_memory_of_a_live_participant_survives_and_a_dead_ones_goes():
    """Before the fix, files older than an hour were deleted even while in use."""
    shm_before = fastdds_shm_files()
    with reserved_domain():
        live, dead = start_participant(), start_participant()
        try:
            live_files = fastdds_files_owned_by(live.pid)
            dead_files = fastdds_files_owned_by(dead.pid)
            assert live_files and dead_files
            two_hours_ago = time.time() - 7200
            for name in live_files | dead_files:
                os.utime(SHM_DIR / name, (two_hours_ago, two_hours_ago))
            dead.send_signal(signal.SIGKILL)  # dies without cleaning up
            dead.wait(10)
            sourced = subprocess.run(['bash', '-c', f'. "{SCRIPT}"'], cwd=REPO_ROOT,
                                     capture_output=True, text=True, timeout=60)
            assert sourced.returncode == 0, sourced.stderr
            left = fastdds_shm_files()
            assert live_files <= left, f'in-use files removed: {live_files - left}'
            assert not dead_files & left, f'zombie files kept: {dead_files & left}'
        finally:
            live.stdin.close()
            live.wait(60)
    remove_unused_fastdds_files(shm_before)


LOOPBACK_VARIABLES = ('ROS_AUTOMATIC_DISCOVERY_RANGE', 'ROS_LOCALHOST_ONLY',
                      'FASTDDS_DEFAULT_PROFILES_FILE', 'FASTRTPS_DEFAULT_PROFILES_FILE')


def test_benchmarks_force_the_network_safe_settings_on_every_distro(monkeypatch, tmp_path):
    """The node and memory benchmarks start ROS processes: whatever the environment says
    (discovery over the subnet, another DDS profile), the processes they start run on loopback
    only, on Humble (ROS_LOCALHOST_ONLY, Fast DDS 2 reads FASTRTPS_DEFAULT_PROFILES_FILE),
    Jazzy (Fast DDS 2 too) and Kilted (FASTDDS_DEFAULT_PROFILES_FILE). Before, only the Kilted
    variables were set."""
    from tqdm_ros import bench_memory
    from tqdm_ros.bench_node import network_safe_environment

    foreign = tmp_path / 'multicast.xml'
    foreign.write_text('<dds/>')
    for name, value in zip(LOOPBACK_VARIABLES, ('SUBNET', '0', str(foreign), str(foreign))):
        monkeypatch.setenv(name, value)  # also restores them after the test
    assert bench_memory.network_safe_environment is network_safe_environment
    network_safe_environment()
    child = subprocess.run(  # started as the benchmarks start the node: inheriting the environment
        [sys.executable, '-c', 'import json, os, sys; '
         'print(json.dumps({name: os.environ.get(name) for name in sys.argv[1:]}))',
         *LOOPBACK_VARIABLES], capture_output=True, text=True, timeout=60, check=True)
    assert json.loads(child.stdout) == {
        'ROS_AUTOMATIC_DISCOVERY_RANGE': 'LOCALHOST', 'ROS_LOCALHOST_ONLY': '1',
        'FASTDDS_DEFAULT_PROFILES_FILE': str(PROFILE),
        'FASTRTPS_DEFAULT_PROFILES_FILE': str(PROFILE)}
