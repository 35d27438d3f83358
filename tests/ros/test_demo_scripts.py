"""scripts/setup.sh and scripts/demo.sh, the README's main command, in a copy of the checkout.

The copy holds the scripts and stand-ins for the venv's ``python`` and ``pip`` that only write down
how they were called, so nothing is installed and no ROS process starts.
"""

import os
import pathlib
import shutil
import subprocess

from tests.ros.ros_harness import REPO_ROOT

# Writes down its arguments and working folder, one call a line.
RECORDER = '#!/bin/sh\necho "$PWD|$*" >> "$(dirname "$0")/calls.log"\n'


def calls(checkout: pathlib.Path, tool: str) -> list[str]:
    log = checkout / '.venv' / 'bin' / 'calls.log'
    return [line for line in log.read_text().splitlines() if f'/{tool} ' in line] if (
        log.exists()) else []


def run(script: pathlib.Path, *args: str, cwd: pathlib.Path) -> subprocess.CompletedProcess:
    done = subprocess.run(['bash', str(script), *args], cwd=cwd, capture_output=True,
                          text=True, timeout=60,
                          env={'PATH': os.environ['PATH'], 'HOME': str(cwd)})
    assert done.returncode == 0, done.stderr
    return done


def make_checkout(root: pathlib.Path) -> pathlib.Path:
    """Scripts, the files the set-up reads, a package folder and a recording venv."""
    (root / 'scripts').mkdir(parents=True)
    for name in ('setup.sh', 'demo.sh', 'ros_env.sh'):
        shutil.copy(REPO_ROOT / 'scripts' / name, root / 'scripts')
    (root / 'config').mkdir()
    shutil.copy(REPO_ROOT / 'config' / 'fastdds_localhost.xml', root / 'config')
    for name in ('requirements.txt', 'setup.py', 'setup.cfg'):
        shutil.copy(REPO_ROOT / name, root)
    (root / 'tqdm_ros').mkdir()
    (root / 'tqdm_ros' / '__init__.py').touch()
    (root / '.venv' / 'bin').mkdir(parents=True)
    for tool in ('python', 'pip'):
        (root / '.venv' / 'bin' / tool).write_text(RECORDER.replace('echo "', f'echo "/{tool} '))
        (root / '.venv' / 'bin' / tool).chmod(0o755)
    return root


def test_a_second_set_up_only_checks_though_runs_appeared(tmp_path):
    """README: a second run only checks. A run folder (runs/, git-ignored) or data appearing
    after the first demo does not change what is installed, so pip is not called again; a new
    package folder or new requirements do."""
    checkout = make_checkout(tmp_path / 'checkout')
    setup = checkout / 'scripts' / 'setup.sh'
    run(setup, cwd=checkout)
    assert len(calls(checkout, 'pip')) == 2  # requirements, then the package (editable)
    (checkout / 'runs' / 'demo' / '20250101-000000').mkdir(parents=True)
    (checkout / 'outputs').mkdir()
    run(setup, cwd=checkout)
    assert len(calls(checkout, 'pip')) == 2, 'the set-up re-installed for a run folder'
    (checkout / 'tqdm_extra').mkdir()
    (checkout / 'tqdm_extra' / '__init__.py').touch()
    run(setup, cwd=checkout)
    assert len(calls(checkout, 'pip')) == 4, 'a new package folder must be mapped by a reinstall'
    with open(checkout / 'requirements.txt', 'a') as requirements:
        requirements.write('tomli==2.0.1\n')
    run(setup, cwd=checkout)
    assert len(calls(checkout, 'pip')) == 6


def test_demo_runs_in_the_folder_it_was_called_from(tmp_path):
    """`-o myout` given in another folder means that folder's myout, not the repository's: the
    set-up runs in the checkout, the demo in the caller's folder."""
    checkout = make_checkout(tmp_path / 'checkout')
    elsewhere = tmp_path / 'elsewhere'
    elsewhere.mkdir()
    run(checkout / 'scripts' / 'demo.sh', '-o', 'myout', cwd=elsewhere)
    assert [call.split('|')[0] for call in calls(checkout, 'pip')] == [f'/pip {checkout}'] * 2
    (demo,) = calls(checkout, 'python')
    assert demo == f'/python {elsewhere}|-m tqdm_ros.demo -o myout'
