"""The one-command demo: CamVid frames through the segmentation node, scored, with pictures.

``bash scripts/demo.sh`` (set-up, network-safe environment, then this module) does:

1. make a bag from the CamVid frames shipped in ``data/camvid_sample`` (camera, ground truth,
   class table);
2. start ``segmentation_node`` with the model shipped in the package (``checkpoint: default``,
   tqdm-small-rn trained on CamVid, see ``tqdm_core/weights/MODEL_CARD.md``) or ``--checkpoint``;
3. replay the bag through it (`tqdm_ros.bag.evaluate.evaluate_live`, replay rate chosen from
   the node's speed unless given), recording its labels and confidence;
4. score the outputs against the ground truth and write the report and pictures
   (`tqdm_core.evaluation`, the same report as ``tqdm-bag evaluate`` and ``training.evaluate``).

Everything lands in one folder, printed at the end; it appears only when the demo succeeded.
"""
from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass
import datetime
import os
import pathlib
import signal
import subprocess
import sys
import time

from tqdm_core.default_model import DEFAULT

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
SAMPLE_FRAMES = REPO_ROOT / 'data' / 'camvid_sample'
NODE_PARAMS = REPO_ROOT / 'config' / 'segment.yaml'
# The sample frames are 40 video frames (1.3 s) apart in the 30 Hz CamVid sequence 0016E5.
BAG_RATE_HZ = 0.75
CAMERA_TOPIC = '/camera/image_raw'
NODE_OUTPUT_NAMESPACE = '/camera/segmentation'


@dataclass(frozen=True)
class DemoConfig:
    """What the demo runs.

    Attributes:
        output: folder to create for the bags, the node log, the report and the pictures.
        checkpoint: model file for the node, or 'default' (the model shipped in the package).
        num_frames: use only the first N sample frames; None: all.
        rate: replay speed factor; None: chosen from the node's time on a warm-up frame.
        scale: the node's input resize factor (0.5 runs the model at half resolution); None: the
            checkpoint's recommended scale.
        node_timeout_s: longest wait for the node to load its model, for each answer and for
            it to exit after SIGINT (a loaded machine slows all three).
    """

    output: pathlib.Path
    checkpoint: str = 'default'
    num_frames: int | None = None
    rate: float | None = None
    scale: float | None = None
    node_timeout_s: float = 300.0


def check_network_safety() -> None:
    """Refuse to start ROS processes without the loopback-only settings of scripts/ros_env.sh.

    Raises:
        RuntimeError: the settings are missing.
    """
    profile = os.environ.get('FASTDDS_DEFAULT_PROFILES_FILE', '')
    if os.environ.get('ROS_AUTOMATIC_DISCOVERY_RANGE') != 'LOCALHOST' or not os.path.isfile(
            profile):
        raise RuntimeError(
            'the network-safe ROS environment is not set (ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST '
            'and the loopback Fast DDS profile); run `bash scripts/demo.sh`, or '
            '`source scripts/ros_env.sh` before `python -m tqdm_ros.demo`')


def node_command(config: DemoConfig) -> list[str]:
    """Command line of the segmentation node for the demo."""
    # The node runs in the repository: a checkpoint path given relative to the caller's folder
    # becomes absolute. The node's spelling: input_scale 0 means the checkpoint's scale.
    checkpoint = (config.checkpoint if config.checkpoint == DEFAULT
                  else os.path.abspath(config.checkpoint))
    parameters = [f'checkpoint:={checkpoint}', f'input_topics:=[{CAMERA_TOPIC}]',
                  f'input_scale:={float(config.scale or 0.0)}']
    return [sys.executable, '-m', 'tqdm_ros.segmentation_node', '--ros-args',
            '--params-file', str(NODE_PARAMS)] + [
                item for parameter in parameters for item in ('-p', parameter)]


def _wait_for_node(context, process: subprocess.Popen, log: pathlib.Path,
                   timeout_s: float) -> None:
    """Wait until the node publishes its labels; fail at once if its process ends."""
    import rclpy
    probe = rclpy.create_node('tqdm_demo_probe', context=context)
    try:
        deadline = time.monotonic() + timeout_s
        while probe.count_publishers(f'{NODE_OUTPUT_NAMESPACE}/labels') == 0:
            if process.poll() is not None:
                raise RuntimeError(f'the segmentation node exited with code {process.returncode}'
                                   f' while starting:\n{_tail(log)}')
            if time.monotonic() > deadline:
                raise TimeoutError(f'the segmentation node was not ready within {timeout_s:g} s:'
                                   f'\n{_tail(log)}')
            time.sleep(0.2)
    finally:
        probe.destroy_node()


def _tail(log: pathlib.Path, lines: int = 20) -> str:
    text = log.read_text(errors='replace') if log.exists() else ''
    return '\n'.join(text.splitlines()[-lines:])


@dataclass(frozen=True)
class NodeExit:
    """How the segmentation node's process ended.

    Attributes:
        returncode: its exit code; negative: minus the number of the signal that ended it.
        stop: what the demo did: 'SIGINT' (asked it to shut down), 'SIGKILL' (it had not
            ended within the grace time after SIGINT) or 'none' (it had ended by itself).
    """

    returncode: int
    stop: str

    @property
    def clean(self) -> bool:
        """True when the node shut down on request with exit code 0."""
        return self.stop == 'SIGINT' and self.returncode == 0

    def describe(self) -> str:
        """One sentence for node.log and, unless clean, the summary's warnings."""
        if self.stop == 'SIGKILL':
            return 'the segmentation node did not stop after SIGINT and was killed (SIGKILL)'
        if self.clean:
            return 'the segmentation node shut down on SIGINT with exit code 0'
        if self.returncode < 0:
            try:
                name = signal.Signals(-self.returncode).name
            except ValueError:
                name = str(-self.returncode)
            how = f'was ended by signal {name}'
        else:
            how = f'exited with code {self.returncode}'
        when = 'after SIGINT' if self.stop == 'SIGINT' else 'before the demo stopped it'
        return f'the segmentation node {how} {when}'


def _stop(process: subprocess.Popen, log: pathlib.Path, grace_s: float = 30.0) -> NodeExit:
    """SIGINT (the node shuts down cleanly), SIGKILL if it hangs; say how it ended in the log."""
    if process.poll() is not None:
        ended = NodeExit(returncode=process.returncode, stop='none')
    else:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(grace_s)
            ended = NodeExit(returncode=process.returncode, stop='SIGINT')
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
            ended = NodeExit(returncode=process.returncode, stop='SIGKILL')
    with open(log, 'a') as log_file:
        log_file.write(f'[demo] {ended.describe()}\n')
    return ended


def with_node_exit(report, ended: NodeExit):
    """The report with how the node ended in its run record, and a warning unless clean."""
    notes = report.notes if ended.clean else (*report.notes, f'{ended.describe()}; see node.log')
    return dataclasses.replace(
        report, notes=notes,
        run={**report.run, 'node_exit': {'returncode': ended.returncode, 'stop': ended.stop}})


def run_demo(config: DemoConfig) -> pathlib.Path:
    """Run the demo into ``config.output`` (which must not exist); return the folder.

    Raises:
        RuntimeError, TimeoutError: the node failed to start or to answer.
        FileExistsError: the output folder exists.
    """
    import rclpy
    from domain_coordinator import domain_id

    from tqdm_core.default_model import resolve_checkpoint
    from tqdm_core.evaluation import format_summary, ModelInfo, write_report_files

    from tqdm_ros.bag.bag_reader import staged_bag_path
    from tqdm_ros.bag.evaluate import evaluate_live, EvaluationConfig
    from tqdm_ros.bag.live_source import LiveConfig
    from tqdm_ros.bag.make_bag import find_frames, make_bag, MakeBagConfig

    check_network_safety()
    checkpoint = resolve_checkpoint(config.checkpoint).absolute()
    if not checkpoint.is_file():
        raise FileNotFoundError(f"checkpoint '{checkpoint}' does not exist")
    model = ModelInfo(name=checkpoint.stem, source=str(checkpoint), trained=True)
    with staged_bag_path(config.output) as staging, domain_id() as domain:
        staging.mkdir()
        made = make_bag(find_frames(SAMPLE_FRAMES), staging / 'camvid_sample_bag',
                        config=MakeBagConfig(image_topic=CAMERA_TOPIC, rate_hz=BAG_RATE_HZ),
                        limit=config.num_frames, progress=True)
        bag = made.path
        log = staging / 'node.log'
        env = dict(os.environ, ROS_DOMAIN_ID=str(domain), PYTHONUNBUFFERED='1',
                   PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT),
                                                            os.environ.get('PYTHONPATH')])))
        print(f'starting the segmentation node (log: {config.output / "node.log"})', flush=True)
        with open(log, 'w') as log_file:
            process = subprocess.Popen(node_command(config), env=env, cwd=REPO_ROOT,
                                       stdout=log_file, stderr=subprocess.STDOUT)
        context = rclpy.Context()
        rclpy.init(context=context, domain_id=domain)
        try:
            _wait_for_node(context, process, log, config.node_timeout_s)
            report = evaluate_live(
                bag, context=context, model=model, progress=True,
                config=EvaluationConfig(frame_files=made.frame_files),
                record_to=staging / 'node_outputs_bag',
                live=LiveConfig(rate=config.rate, output_namespace=NODE_OUTPUT_NAMESPACE,
                                warmup_timeout_s=config.node_timeout_s,
                                settle_timeout_s=config.node_timeout_s))
        except BaseException:
            print(f'demo failed; the node log ended with:\n{_tail(log)}', file=sys.stderr)
            raise
        finally:
            ended = _stop(process, log, grace_s=config.node_timeout_s)
            rclpy.shutdown(context=context)
        # The report names the bag where it will be, not where it is staged.
        report = with_node_exit(dataclasses.replace(report, source=str(config.output / bag.name)),
                                ended)
        write_report_files(report, staging)
    print(format_summary(report))
    return config.output


def _scale(text: str | float) -> float:
    """--scale checked before anything starts, with the Predictor's own range."""
    from tqdm_core.inference.options import InvalidOption, check_option

    try:
        value = float(text)
        check_option('scale', value)
    except (ValueError, InvalidOption) as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return value


def _frames(text: str) -> int:
    """--frames checked before anything starts, as ``tqdm-bag make`` checks --limit."""
    from tqdm_ros.bag.cli import frame_count

    return frame_count(text)


def _rate(text: str) -> float:
    """--rate checked before anything starts, with the live evaluation's own check."""
    from tqdm_ros.bag.live_source import LiveConfig

    try:
        value = float(text)
        LiveConfig(rate=value)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return value


class _DeprecatedInputScale(argparse.Action):
    """``--input-scale`` (0: the checkpoint's scale), the old name of ``--scale``."""

    def __call__(self, parser, namespace, value, option_string=None):
        print('demo: --input-scale is deprecated, use --scale (and leave it out for the '
              "checkpoint's recommended scale)", file=sys.stderr)
        try:
            namespace.scale = _scale(value) if value else None
        except argparse.ArgumentTypeError as error:
            parser.error(f'argument --input-scale: {error}')


def main(argv: list[str] | None = None) -> int:
    """``python -m tqdm_ros.demo``; exit code 0 on success, 1 on failure."""
    parser = argparse.ArgumentParser(prog='python -m tqdm_ros.demo', description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('-o', '--output', type=pathlib.Path,
                        help='folder to create, relative to the working folder '
                             '(default: runs/demo/<date-time> there)')
    parser.add_argument('--checkpoint', default='default',
                        help="model file for the node (default: 'default', the shipped model)")
    parser.add_argument('--frames', type=_frames, help='use only the first N sample frames')
    parser.add_argument('--rate', type=_rate,
                        help="replay speed factor (default: matched to the node's speed)")
    parser.add_argument('--scale', type=_scale,
                        help="the node's input resize factor, e.g. 0.5 for speed on a CPU "
                             "(default: the checkpoint's recommended scale)")
    parser.add_argument('--input-scale', type=float, dest='scale', action=_DeprecatedInputScale,
                        help=argparse.SUPPRESS)
    parser.add_argument('--node-timeout', type=float, default=300.0)
    args = parser.parse_args(argv)
    stamp = datetime.datetime.now().strftime('%Y%m%d-%H%M%S')
    # Absolute, so the report and the final message say where the folder is.
    output = (args.output or pathlib.Path('runs', 'demo', stamp)).absolute()
    config = DemoConfig(output=output,
                        checkpoint=args.checkpoint, num_frames=args.frames, rate=args.rate,
                        scale=args.scale, node_timeout_s=args.node_timeout)
    try:
        folder = run_demo(config)
    except (FileExistsError, FileNotFoundError, RuntimeError, TimeoutError, ValueError) as err:
        print(f'demo: error: {err}', file=sys.stderr)
        return 1
    print(f'\nreport and pictures in {folder}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
