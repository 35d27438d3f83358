"""A real colcon build (ament_python) of this package into an install space, as in a workspace.

The workspace gets a copy of the package sources; the checks are what ``ros2 run``, ``ros2 launch``
and ``get_package_share_directory`` rely on: the ament index marker, launch/ and config/ under
share/tqdm_ros, the executables under lib/tqdm_ros, the shipped model in the installed package, and
the installed node script running from the install space.
"""

import os
import subprocess
import sys
import sysconfig

EXECUTABLES = ('segmentation_node', 'tqdm-bag', 'tqdm_train', 'tqdm_evaluate', 'tqdm_plot_log')


def site_packages(prefix):
    relative = os.path.relpath(sysconfig.get_path('purelib'), sysconfig.get_path('data'))
    return prefix / relative


def test_ament_index_and_share_files(colcon_install_space):
    assert (colcon_install_space / 'share/ament_index/resource_index/packages/tqdm_ros').is_file()
    share = colcon_install_space / 'share' / 'tqdm_ros'
    for name in ('package.xml', 'launch/segment.launch.py', 'config/segment.yaml',
                 'config/fastdds_localhost.xml', 'config/segment.rviz'):
        assert (share / name).is_file(), f'{name} is not installed under share/tqdm_ros'
    found = subprocess.run(
        [sys.executable, '-c', 'from ament_index_python.packages import '
         "get_package_share_directory as g; print(g('tqdm_ros'))"],
        capture_output=True, text=True, timeout=60,
        env={**os.environ, 'AMENT_PREFIX_PATH': str(colcon_install_space)})
    assert found.returncode == 0, found.stderr
    assert found.stdout.strip() == str(share)


def test_executables_are_where_ros2_run_looks(colcon_install_space):
    for name in EXECUTABLES:
        script = colcon_install_space / 'lib' / 'tqdm_ros' / name
        assert script.is_file() and os.access(script, os.X_OK), f'{script} missing'


def test_installed_package_carries_the_default_model_and_runs(colcon_install_space):
    installed = site_packages(colcon_install_space)
    assert (installed / 'tqdm_core/weights/tqdm_small_rn_camvid_fullres.pt').stat().st_size > 10_000_000
    assert (installed / 'tqdm_core/weights/MODEL_CARD.md').is_file()
    # Run from outside the repository with only the install space on the path: nothing comes
    # from the source tree.
    environment = {**os.environ, 'PYTHONPATH': str(installed)}
    where = subprocess.run(
        [sys.executable, '-c', 'import tqdm_core.default_model as d, tqdm_ros; '
         'print(tqdm_ros.__file__); print(d.default_checkpoint())'],
        cwd=colcon_install_space, capture_output=True, text=True, timeout=120, env=environment)
    assert where.returncode == 0, where.stderr
    package_file, checkpoint = where.stdout.split()
    assert package_file.startswith(str(installed)) and checkpoint.startswith(str(installed))
    helped = subprocess.run(
        [sys.executable, str(colcon_install_space / 'lib/tqdm_ros/segmentation_node'), '--help'],
        cwd=colcon_install_space, capture_output=True, text=True, timeout=120, env=environment)
    assert helped.returncode == 0, helped.stderr
    assert helped.stdout.startswith('usage: segmentation_node')
