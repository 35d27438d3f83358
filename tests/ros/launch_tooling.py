"""The real ROS 2 launch tooling (launch, launch_ros, ros2cli) over the project's pip ROS 2 stack.

Those packages are pure Python but not on the package registries; ../shared/vendor holds their
sources (its README lists them). They are installed with pip into a throwaway prefix that is
layered over the project's venv with PYTHONPATH: the venv itself is never changed. The prefix is
cached under runs/launch_tooling/<key>, where the key covers the tarball's bytes, this recipe and
the interpreter, so a changed tarball, recipe or Python gets a fresh prefix; it is built in a
private folder and renamed into place, so concurrent test runs never see a half-built one.

``launch_ros.actions`` imports ``composition_interfaces`` (an interface package that is not on
the registries) only for its composable-node actions, which the project does not use; the prefix
gets a stand-in module with just the names those imports touch (:data:`STAND_IN`).
"""

import dataclasses
import hashlib
import os
import pathlib
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
from typing import Optional

from tests.ros.ros_harness import REPO_ROOT

TARBALL = pathlib.Path(os.environ.get(
    'TQDM_ROS_LAUNCH_TOOLING',
    REPO_ROOT.parent / 'shared' / 'vendor' / 'ros2-launch-tooling-src.tar.gz'))
CACHE_ROOT = REPO_ROOT / 'runs' / 'launch_tooling'
# Source folders inside the tarball, in install order (the vendor README's list).
PACKAGES = (
    'rosidl_runtime_py', 'launch/launch', 'launch/launch_xml', 'launch/launch_yaml',
    'launch_ros/launch_ros', 'ros2cli/ros2cli', 'ros2cli/ros2pkg', 'ros2cli/ros2run',
    'ros2cli/ros2node', 'ros2cli/ros2topic', 'ros2cli/ros2service', 'ros2cli/ros2param',
    'ros2cli/ros2lifecycle', 'launch_ros/ros2launch')
# Their registry dependencies, installed by requirements.txt.
DEPENDENCIES = ('osrf_pycommon', 'psutil', 'argcomplete', 'lark')
STAND_IN = '''"""Stand-in for composition_interfaces.srv (tests only, not the real package).

launch_ros.actions names these service types in annotations when it is imported; only the
composable-node actions use them, and the tqdm_ros tests start no composable node.
"""


class LoadNode:
    class Request:
        pass

    class Response:
        pass


class UnloadNode(LoadNode):
    pass


class ListNodes(LoadNode):
    pass
'''


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


def missing_dependencies() -> list:
    """Registry dependencies of the tooling that the project's venv lacks."""
    import importlib.util

    return [name for name in DEPENDENCIES if importlib.util.find_spec(name) is None]


def _cache_key() -> str:
    digest = hashlib.sha256(TARBALL.read_bytes())
    for part in (*PACKAGES, STAND_IN, sys.version, sys.executable):
        digest.update(part.encode())
    return digest.hexdigest()[:16]


def install_launch_tooling(cache_root: pathlib.Path = CACHE_ROOT) -> LaunchTooling:
    """Return the cached prefix for the tarball, installing it first if needed.

    Raises:
        FileNotFoundError: the tarball is absent.
        RuntimeError: a dependency is missing from the venv, or pip failed (its output attached).
    """
    if not TARBALL.is_file():
        raise FileNotFoundError(f'{TARBALL} is absent')
    missing = missing_dependencies()
    if missing:
        raise RuntimeError(f'the launch tooling needs {", ".join(missing)} in the venv; run '
                           'bash scripts/setup.sh (requirements.txt lists them)')
    final = cache_root / _cache_key()
    if (final / 'complete').is_file():
        return LaunchTooling(final)
    cache_root.mkdir(parents=True, exist_ok=True)
    building = pathlib.Path(tempfile.mkdtemp(prefix='.partial-', dir=cache_root))
    try:
        with tempfile.TemporaryDirectory() as sources:
            with tarfile.open(TARBALL) as archive:
                archive.extractall(sources, filter='data')
            installed = subprocess.run(
                [sys.executable, '-m', 'pip', 'install', '--quiet', '--no-deps',
                 '--no-build-isolation', '--no-index', '--no-cache-dir', '--prefix',
                 str(building), *(str(pathlib.Path(sources) / p) for p in PACKAGES)],
                capture_output=True, text=True, timeout=600)
        if installed.returncode != 0:
            raise RuntimeError(f'pip could not install the launch tooling:\n{installed.stdout}\n'
                               f'{installed.stderr}')
        stand_in = LaunchTooling(building).site_packages / 'composition_interfaces'
        stand_in.mkdir()
        (stand_in / '__init__.py').write_text('"""Stand-in package, see srv.py."""\n')
        (stand_in / 'srv.py').write_text(STAND_IN)
        (building / 'complete').write_text(f'{TARBALL}\n')
        try:
            building.rename(final)
        except OSError:  # another test run finished the same prefix first
            if not (final / 'complete').is_file():
                raise
    finally:
        shutil.rmtree(building, ignore_errors=True)
    return LaunchTooling(final)


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
