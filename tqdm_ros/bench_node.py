"""Benchmark: end-to-end latency of the segmentation node against the Predictor alone.

Starts the node in a child process (the console script's code, loopback Fast DDS), publishes
frames one at a time and times publish -> labels received, then runs the Predictor in this
process on the same frames. The node's overhead per frame (decoding, copies, serialisation,
transport of the image and the labels, scheduling) is the mean end-to-end time minus the mean
model time inside the node over the same frames: the node reports its model time as a running
total, so over exactly the timed frames a mean is what can be taken, not a median. End-to-end
and Predictor times are also given as medians (p50) and p95.

    source scripts/ros_env.sh
    python -m tqdm_ros.bench_node                       # tqdm-tiny-rn, 1024x512 and 2048x1024
    python -m tqdm_ros.bench_node --checkpoint model.pt --frames 20 --all-outputs
    python -m tqdm_ros.bench_node --output runs/bench_node.json   # figures + machine as JSON
"""

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

from tqdm_ros.launch_arguments import loopback_environment

OVERHEAD_GOAL_MS = 10.0  # at 1024x512, issue 5
NAMESPACE = '/bench'
TOPIC = f'{NAMESPACE}/camera/image'
OUTPUTS = f'{NAMESPACE}/camera/segmentation'
READY_TIMEOUT_S = 300.0
FRAME_TIMEOUT_S = 120.0


def parse_size(text: str) -> tuple[int, int]:
    """Parse ``WIDTHxHEIGHT`` into (height, width)."""
    try:
        width, height = (int(v) for v in text.lower().split('x'))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f'size {text!r} is not WIDTHxHEIGHT, e.g. 1024x512') from None
    return height, width


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n')[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument('--checkpoint', help='tqdm checkpoint; default: a random-weight '
                        'checkpoint of --preset written to a temporary folder')
    parser.add_argument('--preset', default='tqdm-tiny-rn',
                        help='preset used when no checkpoint is given')
    parser.add_argument('--sizes', nargs='+', type=parse_size,
                        default=[(512, 1024), (1024, 2048)], metavar='WxH')
    parser.add_argument('--frames', type=int, default=10, help='timed frames per size')
    parser.add_argument('--warmup', type=int, default=2, help='untimed frames per size')
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--precision', default='fp32', choices=('fp32', 'bf16', 'fp16'))
    parser.add_argument('--all-outputs', action='store_true',
                        help='also subscribe to confidence, colour mask and overlay')
    parser.add_argument('--output', type=pathlib.Path,
                        help='also write the figures, the settings and the machine (CPU, flags, '
                        "kernel environment, the node's torch threads) as JSON")
    return parser


def network_safe_environment() -> dict:
    """Localhost discovery and the shipped loopback Fast DDS profile for this process and every
    process it starts, on any distro and whatever the environment set: a benchmark sends nothing
    off this machine (:func:`tqdm_ros.launch_arguments.loopback_environment`).

    Returns:
        The variables set.
    """
    profile = pathlib.Path(__file__).resolve().parents[1] / 'config' / 'fastdds_localhost.xml'
    if not profile.is_file():
        raise RuntimeError(
            f'the loopback Fast DDS profile {profile} is missing; reinstall the package')
    environment = loopback_environment(str(profile))
    os.environ.update(environment)
    return environment


def node_torch_threads() -> int:
    """torch's intra-op thread count in the node's process.

    The node never sets it, so it is torch's default for the node's interpreter, environment
    (``OMP_NUM_THREADS``) and CPU affinity; a child started like the node reports it.
    """
    done = subprocess.run([sys.executable, '-c', 'import torch; print(torch.get_num_threads())'],
                          capture_output=True, text=True, timeout=300, check=True)
    return int(done.stdout.split()[-1])


def percentiles_ms(seconds: list) -> tuple[float, float]:
    p50, p95 = np.percentile(np.asarray(seconds) * 1e3, (50, 95))
    return float(p50), float(p95)


class LabelWaiter:
    """Signals the arrival of the labels of one stamp."""

    def __init__(self) -> None:
        self._arrived = threading.Condition()
        self._stamps: set = set()

    def __call__(self, msg) -> None:
        with self._arrived:
            self._stamps.add((msg.header.stamp.sec, msg.header.stamp.nanosec))
            self._arrived.notify_all()

    def wait(self, stamp: tuple, timeout: float) -> bool:
        with self._arrived:
            return self._arrived.wait_for(lambda: stamp in self._stamps, timeout)


def time_frames(publisher, waiter: LabelWaiter, predictor, frames: list, messages: list, *,
                first_stamp: int) -> tuple[list, list]:
    """Time each frame through the node (publish -> labels) and through the Predictor alone.

    The two alternate frame by frame, so that load from other processes on the machine weighs
    on both alike.

    Returns:
        (node seconds, Predictor seconds), one value per frame.
    """
    node_s, predictor_s = [], []
    for index, (frame, msg) in enumerate(zip(frames, messages)):
        stamp = (first_stamp + index, 0)
        msg.header.stamp.sec, msg.header.stamp.nanosec = stamp
        started = time.perf_counter()
        publisher.publish(msg)
        if not waiter.wait(stamp, FRAME_TIMEOUT_S):
            raise RuntimeError(f'no labels within {FRAME_TIMEOUT_S:.0f} s; is the node alive?')
        node_done = time.perf_counter()
        # From a worker thread, like the node: on an oversubscribed CPU, torch called from the
        # main thread can be several times slower, which would flatter the node.
        worker = threading.Thread(target=predictor.predict, args=(frame,))
        worker.start()
        worker.join()
        node_s.append(node_done - started)
        predictor_s.append(time.perf_counter() - node_done)
    return node_s, predictor_s


def wait_until_connected(publisher, waiter: LabelWaiter, message, process, stamp: int) -> None:
    """Publish a frame until its labels come back: discovery done, model loaded."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    message.header.stamp.sec, message.header.stamp.nanosec = stamp, 0
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f'the node exited with code {process.returncode}')
        publisher.publish(message)
        if waiter.wait((stamp, 0), 1.0):
            return
    raise RuntimeError(f'the node did not answer within {READY_TIMEOUT_S:.0f} s')


class DiagnosticsWatcher:
    """Keeps the latest values of the benchmarked camera's diagnostic status."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._reports = 0
        self.values: dict = {}

    def __call__(self, array) -> None:
        for status in array.status:
            if status.name == f'{NAMESPACE}/segmentation_node: {TOPIC}':
                with self._changed:
                    self.values = {kv.key: kv.value for kv in status.values}
                    self._reports += 1
                    self._changed.notify_all()

    def fresh_values(self, timeout: float = 30.0) -> dict:
        """Values of a report started after this call (the second one from now)."""
        with self._changed:
            target = self._reports + 2
            if not self._changed.wait_for(lambda: self._reports >= target, timeout):
                raise RuntimeError('no diagnostics from the node')
            return self.values


def main(argv=None) -> None:
    args = build_parser().parse_args(argv)
    network_safe_environment()
    from diagnostic_msgs.msg import DiagnosticArray
    import rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image
    import torch
    from tqdm_core import create_model, Predictor, save_checkpoint

    from tqdm_ros.image_conversion import numpy_to_image
    from tqdm_ros.spinning_node import spinning_node

    workdir = tempfile.TemporaryDirectory(prefix='tqdm_bench_')
    checkpoint = args.checkpoint or str(save_checkpoint(
        create_model(args.preset, pretrained=None, seed=0),
        pathlib.Path(workdir.name) / 'model.pt'))
    node_command = [
        sys.executable, '-m', 'tqdm_ros.segmentation_node', '--ros-args',
        '-p', f'checkpoint:={checkpoint}', '-p', f'device:={args.device}',
        '-p', f'precision:={args.precision}', '-p', "input_topics:=['camera/image']",
        '-p', 'input_qos:=reliable', '-p', 'diagnostics_period_s:=0.2', '-r',
        f'__ns:={NAMESPACE}']
    context = rclpy.Context()
    rclpy.init(context=context)
    try:
        with spinning_node('segmentation_bench', context=context) as client:
            reliable = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE)
            waiter, diagnostics = LabelWaiter(), DiagnosticsWatcher()
            client.create_subscription(Image, f'{OUTPUTS}/labels', waiter, reliable)
            client.create_subscription(DiagnosticArray, '/diagnostics', diagnostics, 10)
            if args.all_outputs:
                for name in ('confidence', 'confidence_mono8', 'color_mask', 'overlay'):
                    client.create_subscription(Image, f'{OUTPUTS}/{name}', lambda _: None,
                                               reliable)
            publisher = client.create_publisher(Image, TOPIC, reliable)
            predictor = Predictor.from_checkpoint(checkpoint, device=args.device,
                                                  precision=args.precision)
            rng = np.random.default_rng(0)
            rows = []
            for size_index, (height, width) in enumerate(args.sizes):
                frames = [rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
                          for _ in range(args.warmup + args.frames)]
                messages = [numpy_to_image(f, 'rgb8') for f in frames]
                # A fresh node per size: its diagnostics windows then hold this size only.
                node = subprocess.Popen(node_command)
                try:
                    first_stamp = 1000 * (size_index + 1)
                    wait_until_connected(publisher, waiter, messages[0], node, first_stamp - 1)
                    time_frames(publisher, waiter, predictor, frames[:args.warmup],
                                messages[:args.warmup], first_stamp=first_stamp)
                    before = diagnostics.fresh_values()
                    node_s, predictor_s = time_frames(
                        publisher, waiter, predictor, frames[args.warmup:], messages[args.warmup:],
                        first_stamp=first_stamp + args.warmup)
                    after = diagnostics.fresh_values()
                finally:
                    node.terminate()
                    node.wait(60.0)
                if int(after['processed']) - int(before['processed']) != args.frames:
                    raise RuntimeError('the node processed frames the benchmark did not send')
                # Mean model time inside the node over exactly the timed frames.
                inference_s = (float(after['inference_total_s'])
                               - float(before['inference_total_s'])) / args.frames
                rows.append(size_row(height, width, node_s, predictor_s, inference_s,
                                     float(after['overhead_p50_ms'])))
    finally:
        rclpy.shutdown(context=context)
        workdir.cleanup()
    node_threads = node_torch_threads()
    print_summary(rows, predictor.describe(), args, node_threads)
    if args.output is not None:
        write_report(args.output, rows, predictor.describe(), args, node_threads,
                     torch.get_num_threads())


def size_row(height: int, width: int, node_s: list, predictor_s: list, inference_s: float,
             in_node_p50_ms: float) -> dict:
    """The figures of one image size; times in ms, the per-frame ones in seconds.

    Args:
        node_s, predictor_s: end-to-end and Predictor seconds per timed frame.
        inference_s: the node's mean model time over the timed frames.
        in_node_p50_ms: the node's own p50 of reception -> publication minus model time, over
            every frame it processed (the connection and warm-up frames too).
    """
    end_to_end_mean_ms = float(np.mean(node_s)) * 1e3
    return {
        'width': width, 'height': height,
        'end_to_end_ms': dict(zip(('p50', 'p95'), percentiles_ms(node_s)),
                              mean=end_to_end_mean_ms),
        'predictor_ms': dict(zip(('p50', 'p95'), percentiles_ms(predictor_s)),
                             mean=float(np.mean(predictor_s)) * 1e3),
        'node_model_mean_ms': inference_s * 1e3,
        'overhead_ms': end_to_end_mean_ms - inference_s * 1e3,
        'in_node_overhead_p50_ms': in_node_p50_ms,
        'end_to_end_s': list(node_s), 'predictor_s': list(predictor_s),
    }


def write_report(path: pathlib.Path, rows: list, description: dict, args, node_threads: int,
                 benchmark_threads: int) -> None:
    """The figures with the settings, the model and the machine, as JSON at ``path``."""
    from training.bench import machine_info

    report = {
        'machine': machine_info(node_threads),
        'node_torch_threads': node_threads,
        'benchmark_torch_threads': benchmark_threads,
        'settings': {'checkpoint': args.checkpoint, 'preset': args.preset, 'device': args.device,
                     'precision': args.precision, 'frames': args.frames, 'warmup': args.warmup,
                     'all_outputs': args.all_outputs},
        'benchmark_predictor': description,  # the in-process Predictor (Predictor.describe)
        'overhead': 'mean end to end - mean model time inside the node, over the timed frames',
        'overhead_goal_ms': OVERHEAD_GOAL_MS,
        'sizes': rows,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=1))
    print(f'JSON written to {path}')


def print_summary(rows: list, description: dict, args, node_threads: int) -> None:
    print(f"\nmodel {description['preset']} ({description['parameters'] / 1e6:.1f} M "
          f"parameters), {args.device}, {args.precision}, {node_threads} torch threads in the "
          f"node, {args.frames} frames per size, outputs: "
          f"{'all' if args.all_outputs else 'labels'}")
    print('end to end: publish -> labels received.  Predictor: alone on the same frames.\n'
          'overhead: mean end to end - mean model time inside the node, same frames (transport '
          'of image and labels, decoding, serialisation); in node: p50 of reception -> '
          'publication - model time, over every frame the node processed.')
    print(f"{'size':>10} | {'end to end p50':>14} {'p95':>8} | {'Predictor p50':>13} {'p95':>8} "
          f"| {'overhead':>8} | {'in node':>7}")
    for row in rows:
        e2e, predictor = row['end_to_end_ms'], row['predictor_ms']
        size = f"{row['width']}x{row['height']}"
        print(f"{size:>10} | {e2e['p50']:>12.1f}ms {e2e['p95']:>6.1f}ms | "
              f"{predictor['p50']:>11.1f}ms {predictor['p95']:>6.1f}ms | "
              f"{row['overhead_ms']:>6.1f}ms | {row['in_node_overhead_p50_ms']:>5.1f}ms")
    for row in rows:
        if (row['height'], row['width']) == (512, 1024):
            verdict = 'met' if row['overhead_ms'] <= OVERHEAD_GOAL_MS else 'NOT met'
            print(f'goal: overhead <= {OVERHEAD_GOAL_MS:.0f} ms per frame at 1024x512: '
                  f"{verdict} ({row['overhead_ms']:.1f} ms)")


if __name__ == '__main__':
    main()
