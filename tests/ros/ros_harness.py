"""Cross-process ROS test helpers: reserved domain, node processes, test client, /dev/shm hygiene.

Every process started here inherits the test process environment, which tests/conftest.py made
network-safe (localhost discovery, loopback-only Fast DDS profile), plus the reserved
ROS_DOMAIN_ID. Every wait is bounded.
"""

import contextlib
import os
import pathlib
import signal
import subprocess
import sys
import threading
import time
from typing import Callable, Optional

import numpy as np
import rclpy
from rclpy.executors import SingleThreadedExecutor
from sensor_msgs.msg import Image

from tqdm_ros.image_conversion import numpy_to_image

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
CONSOLE_SCRIPT = pathlib.Path(sys.executable).with_name('segmentation_node')
SLOW_NODE_SCRIPT = pathlib.Path(__file__).with_name('slow_segmentation_node.py')
SHM_DIR = pathlib.Path('/dev/shm')


@contextlib.contextmanager
def reserved_domain():
    """Reserve a ROS_DOMAIN_ID no other test process uses, and export it to child processes."""
    from domain_coordinator import domain_id

    previous = os.environ.get('ROS_DOMAIN_ID')
    with domain_id() as reserved:
        os.environ['ROS_DOMAIN_ID'] = str(reserved)
        try:
            yield reserved
        finally:
            if previous is None:
                os.environ.pop('ROS_DOMAIN_ID', None)
            else:
                os.environ['ROS_DOMAIN_ID'] = previous


def fastdds_shm_files() -> set:
    """Names of the Fast DDS shared-memory files (segments, ports, their locks) in /dev/shm."""
    return {p.name for p in SHM_DIR.glob('*fastdds_*')}


def _files_in_use() -> set:
    """Names of /dev/shm files some process has mapped or open."""
    in_use = set()
    for proc in pathlib.Path('/proc').iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            for line in (proc / 'maps').read_text().splitlines():
                if '/dev/shm/' in line:
                    in_use.add(line.rsplit('/', 1)[-1])
            for fd in (proc / 'fd').iterdir():
                with contextlib.suppress(OSError):
                    target = os.readlink(fd)
                    if target.startswith('/dev/shm/'):
                        in_use.add(target.rsplit('/', 1)[-1])
    return in_use


def remove_unused_fastdds_files(before: set) -> None:
    """Delete Fast DDS files created since ``before`` that no running process uses any more.

    Files of other engineers' live processes stay: only files nobody maps or holds open go.
    """
    in_use = _files_in_use()
    for name in fastdds_shm_files() - before - in_use:
        with contextlib.suppress(FileNotFoundError):
            (SHM_DIR / name).unlink()


class NodeProcess:
    """A node in a child process, its output collected in the background.

    Args:
        command: the command line.
        extra_env: variables added to the inherited environment.
    """

    def __init__(self, command: list, *, extra_env: Optional[dict] = None) -> None:
        # The repository's code, also when the editable install predates a package.
        python_path = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get('PYTHONPATH')]))
        # PYTHONFAULTHANDLER: a node that dies of a signal (a segfault in a native library) prints every
        # thread's Python stack into its output, which the failing test shows.
        env = dict(os.environ, PYTHONUNBUFFERED='1', PYTHONFAULTHANDLER='1', PYTHONPATH=python_path,
                   **(extra_env or {}))
        self.command = command
        self._process = subprocess.Popen(
            command, env=env, cwd=REPO_ROOT, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True)
        self._lines: list = []
        self._interrupted = False
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self._process.stdout:
            self._lines.append(line)

    @property
    def output(self) -> str:
        return ''.join(self._lines)

    @property
    def returncode(self) -> Optional[int]:
        return self._process.poll()

    def wait(self, timeout: float) -> int:
        """Wait for the process to end by itself; returns its exit code."""
        code = self._process.wait(timeout)
        self._reader.join(5.0)
        return code

    def interrupt(self) -> None:
        """Send SIGINT (the node shuts down cleanly) once, without waiting.

        Once only: a second SIGINT reaching a process that is already finalising the
        interpreter (Python has restored the default handler) would kill it with -2.
        """
        if self._process.poll() is None and not self._interrupted:
            self._interrupted = True
            self._process.send_signal(signal.SIGINT)

    def stop(self, timeout: float = 60.0) -> int:
        """SIGINT, then SIGKILL after ``timeout``; returns the exit code."""
        if self._process.poll() is None:
            self.interrupt()
            try:
                self._process.wait(timeout)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(10.0)
        self._reader.join(5.0)
        return self._process.returncode


def stop_all(processes: dict) -> dict:
    """Stop processes in parallel (a torch process takes seconds to exit); name -> exit code."""
    for process in processes.values():
        process.interrupt()
    return {name: process.stop() for name, process in processes.items()}


def node_command(*ros_args: str, script: Optional[pathlib.Path] = None) -> list:
    """Command line of the console script (or of a wrapper script) with ROS arguments."""
    program = [sys.executable, str(script)] if script else [str(CONSOLE_SCRIPT)]
    return program + ['--ros-args', *ros_args]


class MessageLog:
    """Messages of one subscription in arrival order, with the wall-clock time each was published.

    The publication time is the DDS source timestamp the publisher's writer stamped (system clock, as
    ``time.time()``): unlike the arrival time, it does not depend on when this process gets to run."""

    def __init__(self) -> None:
        self.messages: list = []
        self.published: list = []
        self._changed = threading.Condition()

    def __call__(self, msg, info) -> None:
        with self._changed:
            self.messages.append(msg)
            self.published.append(info['source_timestamp'] / 1e9)
            self._changed.notify_all()

    def wait_for(self, predicate: Callable, timeout: float, what: str):
        """First message satisfying ``predicate``; AssertionError after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for msg in self.messages:
                    if predicate(msg):
                        return msg
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f'no {what} within {timeout:.0f} s '
                                         f'({len(self.messages)} other messages)')
                self._changed.wait(remaining)


class RosClient:
    """The test side: its own context, node and executor thread on the reserved domain."""

    def __init__(self, *, name: str) -> None:
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=int(os.environ['ROS_DOMAIN_ID']))
        self.node = rclpy.create_node(name, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._spinner = threading.Thread(target=self.executor.spin, daemon=True)
        self._spinner.start()

    def subscribe(self, msg_type, topic: str, qos=10) -> MessageLog:
        log = MessageLog()
        self.node.create_subscription(msg_type, topic, log, qos)
        return log

    def call(self, service_type, name: str, request, timeout: float = 30.0):
        """Call a service once it is available; AssertionError on timeout."""
        client = self.node.create_client(service_type, name)
        try:
            assert client.wait_for_service(timeout_sec=timeout), f'service {name} not available'
            future = client.call_async(request)
            done = threading.Event()
            future.add_done_callback(lambda _: done.set())
            assert done.wait(timeout), f'no answer from {name} within {timeout:.0f} s'
            return future.result()
        finally:
            self.node.destroy_client(client)

    def wait_until(self, condition: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f'{what}: not reached within {timeout:.0f} s')
            time.sleep(0.05)

    def close(self) -> None:
        self.executor.shutdown()
        self._spinner.join(10.0)
        self.node.destroy_node()
        rclpy.shutdown(context=self.context)


def image_message(array: np.ndarray, encoding: str, *, stamp_ns: int, frame_id: str) -> Image:
    """Build an image message with a given stamp (nanoseconds) and frame_id."""
    msg = numpy_to_image(array, encoding)
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
    msg.header.frame_id = frame_id
    return msg


def stamp_ns(msg) -> int:
    return msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec


def status_values(diagnostics_log: MessageLog, name: str) -> Optional[dict]:
    """Key/values of the latest diagnostic status called ``name``, or None."""
    for array in reversed(diagnostics_log.messages):
        for status in array.status:
            if status.name == name:
                return {kv.key: kv.value for kv in status.values}
    return None


def publish_until(publisher, msg, condition: Callable[[], bool], *, timeout: float, what: str,
                  period: float = 0.5) -> None:
    """Publish ``msg`` every ``period`` seconds until ``condition()`` holds.

    Repeating covers the time discovery takes to match both ends; AssertionError on timeout.
    """
    deadline = time.monotonic() + timeout
    while True:
        publisher.publish(msg)
        next_publish = time.monotonic() + period
        while time.monotonic() < next_publish:
            if condition():
                return
            time.sleep(0.02)
        if time.monotonic() > deadline:
            raise AssertionError(f'{what}: not reached within {timeout:.0f} s')
