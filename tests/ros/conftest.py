"""Fixtures shared by the ROS tests: a reserved ROS domain, a colcon-built install space of this package."""

import os
import pathlib
import shutil
import subprocess
import sys

import pytest

from tests.ros.ros_harness import (
    fastdds_shm_files, remove_unused_fastdds_files, REPO_ROOT, reserved_domain)


@pytest.fixture(scope='module')
def ros_domain():
    """Reserve a ROS_DOMAIN_ID for the module; remove the Fast DDS files it leaves after."""
    shm_before = fastdds_shm_files()
    with reserved_domain() as domain:
        yield domain
    remove_unused_fastdds_files(shm_before)


PACKAGE_FILES = ('package.xml', 'setup.py', 'setup.cfg', 'README.md', 'resource', 'launch',
                 'config', 'tqdm_core', 'tqdm_ros', 'training')


@pytest.fixture(scope='session')
def colcon_install_space(tmp_path_factory) -> pathlib.Path:
    """Build a copy of the package with a real ``colcon build`` (ament_python), as in a ROS 2
    workspace; return ``install/tqdm_ros``."""
    workspace = tmp_path_factory.mktemp('colcon_ws')
    source = workspace / 'src' / 'tqdm_ros'
    for name in PACKAGE_FILES:
        origin = REPO_ROOT / name
        if origin.is_dir():
            shutil.copytree(origin, source / name,
                            ignore=shutil.ignore_patterns('__pycache__', '*.egg-info'))
        else:
            source.mkdir(parents=True, exist_ok=True)
            shutil.copy2(origin, source / name)
    build = subprocess.run(
        [sys.executable, '-m', 'colcon', 'build', '--base-paths', 'src'], cwd=workspace,
        capture_output=True, text=True, timeout=600,
        env={**os.environ, 'COLCON_HOME': str(workspace / '.colcon')})
    assert build.returncode == 0, (f'colcon build failed (colcon is in requirements.txt):\n'
                                   f'{build.stdout}\n{build.stderr}')
    assert 'Summary: 1 package finished' in build.stdout
    return workspace / 'install' / 'tqdm_ros'
