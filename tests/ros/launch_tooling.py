"""The real ROS 2 launch tooling (launch, launch_ros, ros2cli) over the project's pip ROS 2 stack.

Those packages are pure Python but not on the package registries; ../shared/vendor holds their
sources (its README lists them). They are installed by scripts/install_ros2_launch.sh, the
README's pip-only recipe, so the tests run what a user runs: pip into a prefix that is layered over
the project's venv with PYTHONPATH (the venv itself is never changed), with a stand-in for
composition_interfaces. The prefix is cached outside the checkout, under
$XDG_CACHE_HOME/tqdm_ros/ros2_launch_tooling/<key> (~/.cache without XDG_CACHE_HOME), where the
key covers the tarball's bytes, the script and the interpreter, so a changed tarball, recipe or
Python gets a fresh prefix; the script builds it aside and renames it into place, so concurrent
test runs never see a half-built one.
"""

import dataclasses
import hashlib
import os
import pathlib
import subprocess
import sys
import sysconfig
import tempfile
from typing import Optional

from tests.ros.ros_harness import REPO_ROOT

TARBALL = pathlib.Path(os.environ.get(
    'TQDM_ROS_LAUNCH_TOOLING',
    REPO_ROOT.parent / 'shared' / 'vendor' / 'ros2-launch-tooling-src.tar.gz'))
INSTALL_SCRIPT = REPO_ROOT / 'scripts' / 'install_ros2_launch.sh'


def cache_root() -> pathlib.Path:
    """Where installed prefixes are kept between test runs (outside the checkout)."""
    if os.environ.get('XDG_CACHE_HOME'):
        base = pathlib.Path(os.environ['XDG_CACHE_HOME'])
    elif os.environ.get('HOME'):
        base = pathlib.Path(os.environ['HOME']) / '.cache'
    else:  # CI containers without HOME
        base = pathlib.Path(tempfile.gettempdir()) / f'cache_{os.getuid()}'
    return base / 'tqdm_ros' / 'ros2_launch_tooling'


@dataclasses.dataclass(frozen=True)
class LaunchTooling:
    """An installed prefix: its ``ros2`` script and its Python package folder."""

    prefix: pathlib.Path

    @property
    def site_packages(self) -> pathlib.Path:
        return pathlib.Path(sysconfig.get_path(
            'purelib', vars={'base': str(self.prefix), 'platbase': str(self.prefix)}))

    @property
    def ros2(self) -> list:
        """Command line of the ``ros2`` CLI, run by the project's interpreter."""
        return [sys.executable, str(self.prefix / 'bin' / 'ros2')]


def _cache_key() -> str:
    digest = hashlib.sha256(TARBALL.read_bytes())
    digest.update(INSTALL_SCRIPT.read_bytes())
    for part in (sys.version, sys.executable):
        digest.update(part.encode())
    return digest.hexdigest()[:16]


def install_launch_tooling(root: Optional[pathlib.Path] = None) -> LaunchTooling:
    """Return the cached prefix for the tarball, installing it first with the README's script.

    Raises:
        FileNotFoundError: the tarball is absent.
        RuntimeError: the script failed (a dependency missing from the venv, pip failed, ...);
            its output is attached.
    """
    if not TARBALL.is_file():
        raise FileNotFoundError(f'{TARBALL} is absent')
    prefix = (root or cache_root()) / _cache_key()
    installed = subprocess.run(
        ['bash', str(INSTALL_SCRIPT), str(TARBALL), str(prefix)],
        env={**os.environ, 'PYTHON': sys.executable}, capture_output=True, text=True,
        timeout=600)
    if installed.returncode != 0:
        raise RuntimeError(f'{INSTALL_SCRIPT.name} could not install the launch tooling:\n'
                           f'{installed.stdout}\n{installed.stderr}')
    return LaunchTooling(prefix)


def ros2_environment(tooling: LaunchTooling, install_space: pathlib.Path, *,
                     extra: Optional[dict] = None) -> dict:
    """Environment for ``ros2`` commands: the test's (network-safe) one plus the tooling and the
    colcon install space, as sourcing the workspace's setup script would give."""
    installed = pathlib.Path(sysconfig.get_path(
        'purelib', vars={'base': str(install_space), 'platbase': str(install_space)}))
    python_path = [str(tooling.site_packages), str(installed)]
    ament_prefixes = [str(install_space), str(tooling.prefix)]
    for name, values in (('PYTHONPATH', python_path), ('AMENT_PREFIX_PATH', ament_prefixes)):
        if os.environ.get(name):
            values.append(os.environ[name])
    return {**os.environ, 'PYTHONPATH': os.pathsep.join(python_path),
            'AMENT_PREFIX_PATH': os.pathsep.join(ament_prefixes), 'PYTHONUNBUFFERED': '1',
            **(extra or {})}
