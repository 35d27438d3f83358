"""Benchmark: where the segmentation node's resident memory goes.

Two measurements, each in fresh processes:

- the node: the console script in a child process (autostart off, loopback Fast DDS), driven
  through configure and activate, then fed CamVid frames; its ``/proc/<pid>/status`` after each
  step (resident total, anonymous = private heap, file = library pages shared with other
  processes and reclaimable, shmem = the Fast DDS shared-memory segment);
- the same steps in a bare interpreter, one import at a time: rclpy, torch, open_clip (the
  model code's dependencies), the default model, inference; anonymous and file pages after each.

    source scripts/ros_env.sh
    python -m tqdm_ros.bench_memory --frames 20
"""

import argparse
import json
import pathlib
import subprocess
import sys
import threading
import time

from tqdm_ros.bench_node import network_safe_environment

NAMESPACE = '/memory_bench'
TOPIC = f'{NAMESPACE}/camera/image_raw'
SAMPLE = pathlib.Path(__file__).resolve().parents[1] / 'data' / 'camvid_sample' / 'val'
STATUS_FIELDS = ('VmRSS', 'RssAnon', 'RssFile', 'RssShmem', 'VmHWM')
TIMEOUT_S = 300.0
# The stages in a bare interpreter: what each one imports or runs, as Python source.
IMPORT_STAGES = (
    ('rclpy', 'import rclpy'),
    ('torch', 'import torch'),
    ('open_clip (torchvision, timm, torch._dynamo)', 'import open_clip'),
    ('tqdm_core + default model loaded', 'import tqdm_core\n'
     'predictor = tqdm_core.load_predictor("default")'),
    ('20 frames of 480x360', 'import cv2, glob\n'
     f'frame = cv2.imread(sorted(glob.glob("{SAMPLE}/*.png"))[0])\n'
     'for _ in range(20):\n    predictor.predict(frame, channel_order="bgr")'),
)


def process_memory_mb(pid: int) -> dict:
    """The memory fields of ``/proc/<pid>/status`` in MiB."""
    values = {}
    for line in pathlib.Path(f'/proc/{pid}/status').read_text().splitlines():
        name, _, value = line.partition(':')
        if name in STATUS_FIELDS:
            values[name] = int(value.split()[0]) / 1024
    return values


def measure_imports() -> list:
    """Anonymous and file-backed resident MiB after each of :data:`IMPORT_STAGES`."""
    script = ['import json, pathlib',
              'def memory():',
              '    fields = dict(line.split(":", 1) for line in '
              'pathlib.Path("/proc/self/status").read_text().splitlines())',
              '    return {k: int(fields[k].split()[0]) / 1024 for k in ("RssAnon", "RssFile")}',
              'print(json.dumps(["start", memory()]), flush=True)']
    for name, source in IMPORT_STAGES:
        script += [source, f'print(json.dumps([{name!r}, memory()]), flush=True)']
    done = subprocess.run([sys.executable, '-c', '\n'.join(script)], capture_output=True,
                          text=True, timeout=TIMEOUT_S, check=True)
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith('[')]


def measure_node(frames: int) -> list:
    """(stage, memory) of a node process through configure, activate and ``frames`` frames."""
    import cv2
    from lifecycle_msgs.msg import Transition
    from lifecycle_msgs.srv import ChangeState
    import rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    from tqdm_ros.image_conversion import numpy_to_image
    from tqdm_ros.spinning_node import spinning_node

    images = [cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB)
              for p in sorted(SAMPLE.glob('*.png'))]
    node = subprocess.Popen([
        sys.executable, '-m', 'tqdm_ros.segmentation_node', '--ros-args', '-p',
        'autostart:=false', '-p', "input_topics:=['camera/image_raw']", '-p',
        'input_qos:=reliable', '-r', f'__ns:={NAMESPACE}'])
    context = rclpy.Context()
    rclpy.init(context=context)
    try:
        with spinning_node('memory_bench', context=context) as client:
            answered = threading.Event()
            reliable = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE)
            client.create_subscription(Image, f'{NAMESPACE}/camera/segmentation/labels',
                                       lambda _: answered.set(), reliable)
            publisher = client.create_publisher(Image, TOPIC, reliable)
            stages = []
            try:
                change_state = client.create_client(
                    ChangeState, f'{NAMESPACE}/segmentation_node/change_state')
                if not change_state.wait_for_service(timeout_sec=TIMEOUT_S):
                    raise RuntimeError('the node did not come up')
                time.sleep(1.0)
                stages.append(('started (unconfigured)', process_memory_mb(node.pid)))
                for name, transition in (
                        ('configured (model loaded)', Transition.TRANSITION_CONFIGURE),
                        ('active', Transition.TRANSITION_ACTIVATE)):
                    request = ChangeState.Request()
                    request.transition.id = transition
                    future = change_state.call_async(request)
                    deadline = time.monotonic() + TIMEOUT_S
                    while not future.done() and time.monotonic() < deadline:
                        time.sleep(0.05)
                    if not future.done() or not future.result().success:
                        raise RuntimeError(f'transition to {name} failed')
                    time.sleep(1.0)
                    stages.append((name, process_memory_mb(node.pid)))
                for index in range(frames):
                    answered.clear()
                    message = numpy_to_image(images[index % len(images)], 'rgb8')
                    message.header.stamp.sec = index + 1
                    for _ in range(int(TIMEOUT_S)):  # the first frames may go before matching
                        publisher.publish(message)
                        if answered.wait(1.0):
                            break
                    else:
                        raise RuntimeError('no labels from the node')
                time.sleep(1.0)
                stages.append((f'after {frames} frames of 480x360', process_memory_mb(node.pid)))
            finally:
                node.terminate()
                node.wait(60.0)
    finally:
        rclpy.shutdown(context=context)
    return stages


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--frames', type=int, default=20, help='frames sent to the node')
    parser.add_argument('--output', type=pathlib.Path, help='also write the numbers as JSON')
    args = parser.parse_args(argv)
    network_safe_environment()
    node = measure_node(args.frames)
    imports = measure_imports()
    print('\nnode process (MiB)')
    print(f"{'stage':<34}" + ''.join(f'{field:>10}' for field in STATUS_FIELDS))
    for stage, memory in node:
        print(f'{stage:<34}' + ''.join(f'{memory[field]:>10.0f}' for field in STATUS_FIELDS))
    print('\nbare interpreter, one step at a time (MiB, increase over the previous step)')
    print(f"{'step':<48}{'anon':>8}{'+anon':>8}{'file':>8}{'+file':>8}")
    previous = imports[0][1]
    for stage, memory in imports:
        print(f"{stage:<48}{memory['RssAnon']:>8.0f}"
              f"{memory['RssAnon'] - previous['RssAnon']:>8.0f}{memory['RssFile']:>8.0f}"
              f"{memory['RssFile'] - previous['RssFile']:>8.0f}")
        previous = memory
    if args.output is not None:
        args.output.write_text(json.dumps({'node': node, 'imports': imports}, indent=1))


if __name__ == '__main__':
    main()
