"""``tqdm-bag``: make, replay, record, inspect and evaluate rosbag2 bags for segmentation.

Examples::

    tqdm-bag make data/camvid_sample -o runs/camvid_bag --rate 10 --storage mcap
    tqdm-bag info runs/camvid_bag
    tqdm-bag replay runs/camvid_bag --rate 2 --remap /camera/image_raw:=/cam0/image_raw
    tqdm-bag record -o runs/outputs_bag --topics /segmentation/labels --idle-timeout 3
    tqdm-bag evaluate runs/camvid_bag -o runs/eval_offline --checkpoint default
    tqdm-bag evaluate runs/camvid_bag -o runs/eval_live --mode live --rate auto
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import pathlib
import signal
import sys

import numpy as np

from tqdm_ros.bag.bag_reader import BagError, BagSummary, summarize_bag
from tqdm_ros.bag.make_bag import class_table_by_name_or_file, find_frames, make_bag
from tqdm_ros.bag.make_bag import MakeBagConfig, STORAGES

_DEFAULTS = MakeBagConfig()


def frame_count(text: str) -> int:
    """Argument type of frame counts (``--limit``, the demo's ``--frames``): a number >= 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got '{text}'")
    return value


def _add_make(subparsers) -> None:
    parser = subparsers.add_parser(
        'make', help='build a bag from an image folder and optional ground-truth labels',
        description='Build a rosbag2 bag with a camera topic (rgb8), a ground-truth label topic '
                    '(mono8, same stamps) and a latched JSON class table.')
    parser.add_argument('source', type=pathlib.Path,
                        help='CamVid root (<split>/ + <split>annot/), Cityscapes root '
                             '(leftImg8bit/ + gtFine/) or an image folder')
    parser.add_argument('-o', '--output', type=pathlib.Path, required=True,
                        help='bag directory to create (must not exist)')
    parser.add_argument('--labels', type=pathlib.Path,
                        help='label folder matched to the images by file stem (folders layout)')
    parser.add_argument('--layout', default='auto',
                        choices=('auto', 'camvid', 'cityscapes', 'folders'))
    parser.add_argument('--split', default='val', help='dataset split (camvid, cityscapes)')
    parser.add_argument('--classes', default=None,
                        help='class table of a label folder: cityscapes19, camvid11 or a JSON '
                             'file (default cityscapes19; dataset layouts use their own)')
    parser.add_argument('--rate', type=float, default=_DEFAULTS.rate_hz, help='frames per second')
    parser.add_argument('--storage', default=_DEFAULTS.storage, choices=sorted(STORAGES))
    parser.add_argument('--frame-id', default=_DEFAULTS.frame_id)
    parser.add_argument('--image-topic', default=_DEFAULTS.image_topic)
    parser.add_argument('--label-topic', default=_DEFAULTS.label_topic)
    parser.add_argument('--class-table-topic', default=_DEFAULTS.class_table_topic)
    parser.add_argument('--limit', type=frame_count, help='write only the first N frames')
    parser.add_argument('--start-time', type=float,
                        help='stamp of the first frame, seconds since the epoch (default: now)')
    parser.add_argument('--jitter-ms', type=float, default=_DEFAULTS.stamp_jitter_ms,
                        help='standard deviation of the stamp jitter')
    parser.add_argument('--delay-ms', type=float, default=_DEFAULTS.transport_delay_ms,
                        help='log time minus header stamp')
    parser.add_argument('--seed', type=int, default=_DEFAULTS.seed, help='seed of the jitter')
    parser.add_argument('--compressed', choices=('jpeg', 'png'),
                        help='write the frames as sensor_msgs/CompressedImage on '
                             '<image topic>/compressed (png is lossless)')
    parser.add_argument('--jpeg-quality', type=int, default=_DEFAULTS.jpeg_quality,
                        help='JPEG quality 1..100 with --compressed jpeg')


def _add_replay(subparsers) -> None:
    parser = subparsers.add_parser(
        'replay', help='play a bag into ROS like ros2 bag play',
        description='Publish the recorded bytes of a bag on their original schedule.')
    parser.add_argument('bag', type=pathlib.Path)
    parser.add_argument('-r', '--rate', type=float, default=1.0, help='playback speed factor')
    parser.add_argument('-l', '--loop', action='store_true', help='play until Ctrl-C')
    parser.add_argument('--start-offset', type=float, default=0.0,
                        help='seconds to skip from the start of the bag')
    parser.add_argument('--topics', nargs='+', default=(), help='play only these topics')
    parser.add_argument('--remap', nargs='+', default=(), metavar='FROM:=TO',
                        help='publish recorded topic FROM as TO')
    parser.add_argument('--clock-hz', type=float, default=40.0,
                        help='rate of /clock with the bag time (0: no /clock)')
    parser.add_argument('--wait-for-subscribers', type=float, default=0.0, metavar='SECONDS',
                        help='wait up to this long for a subscriber on every non-latched topic')


def _add_record(subparsers) -> None:
    parser = subparsers.add_parser(
        'record', help='record topics into a bag',
        description='Record topics as raw CDR bytes into a new bag; the bag appears at the '
                    'output path only once it is complete.')
    parser.add_argument('-o', '--output', type=pathlib.Path, required=True)
    parser.add_argument('--topics', nargs='+', required=True)
    parser.add_argument('--storage', default='sqlite3', choices=sorted(STORAGES))
    parser.add_argument('--duration', type=float, help='seconds to record after subscribing')
    parser.add_argument('--max-messages', type=int, help='stop after N messages in total')
    parser.add_argument('--idle-timeout', type=float,
                        help='stop after this many seconds without a message')
    parser.add_argument('--discovery-timeout', type=float, default=10.0,
                        help='fail if a topic has no publisher after this many seconds')
    parser.add_argument('--use-sim-time', action='store_true',
                        help='log messages with /clock time')


class _DeprecatedInputScale(argparse.Action):
    """``--input-scale`` (0: the checkpoint's scale), the old name of ``--scale``."""

    def __call__(self, parser, namespace, value, option_string=None):
        print('tqdm-bag evaluate: --input-scale is deprecated, use --scale (and leave it out for '
              "the checkpoint's recommended scale)", file=sys.stderr)
        namespace.scale = value or None


def _rate(text: str) -> float | None:
    if text == 'auto':
        return None
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"rate must be a number or 'auto', got '{text}'") from None


def _add_evaluate(subparsers) -> None:
    parser = subparsers.add_parser(
        'evaluate', help='score segmentations of a bag against its ground truth',
        description='offline: run a model on every frame of the bag. live: replay the bag '
                    'through a running segmentation node and score its outputs. Writes '
                    'report.json, summary.md and pictures into a new folder.')
    parser.add_argument('bag', type=pathlib.Path)
    parser.add_argument('-o', '--output', type=pathlib.Path, required=True,
                        help='report folder to create (must not exist)')
    parser.add_argument('--mode', choices=('offline', 'live'), default='offline')
    model = parser.add_argument_group(
        'offline model', "a checkpoint, a preset with random weights, or both (then the "
        "checkpoint must hold that preset); the other options default to the Predictor's")
    model.add_argument('--checkpoint',
                       help="trained model file, or 'default' (the model shipped in the package)")
    model.add_argument('--preset', help='model preset; alone: built with random weights (pipeline '
                                        'check only)')
    model.add_argument('--device', help="'cpu', 'cuda' or 'cuda:N'")
    model.add_argument('--precision', help='autocast precision, e.g. fp32 or bf16')
    model.add_argument('--inference-mode', help='whole or slide')
    model.add_argument('--window', type=int, help='sliding-window size in pixels')
    model.add_argument('--stride', type=int, help='sliding-window stride in pixels')
    model.add_argument('--scale', type=float,
                       help="resize factor of the model input (default: the checkpoint's "
                            'recommended scale, else 1); scores stay at full resolution')
    model.add_argument('--input-scale', type=float, action=_DeprecatedInputScale,
                       help=argparse.SUPPRESS)
    model.add_argument('--runtime', help='torch or onnxruntime')
    model.add_argument('--flip', action='store_true', default=None,
                       help='also run each frame mirrored and average the scores (2x time)')
    topics = parser.add_argument_group('bag topics')
    topics.add_argument('--image-topic', default=_DEFAULTS.image_topic)
    topics.add_argument('--label-topic', default=_DEFAULTS.label_topic)
    topics.add_argument('--class-table-topic', default=_DEFAULTS.class_table_topic)
    topics.add_argument('--gt-classes',
                        help='class table of the labels when the bag has no class-table topic: '
                             'cityscapes19, camvid11 or a JSON file')
    parser.add_argument('--limit', type=frame_count, help='score only the first N frames')
    parser.add_argument('--num-overlays', type=int, default=4,
                        help='frames in overlays.png (0: none)')
    live = parser.add_argument_group('live')
    live.add_argument('--rate', type=_rate, default=1.0,
                      help="replay speed factor, or 'auto' to match the node's speed")
    live.add_argument('--camera-topic', help="the node's input topic (default: --image-topic)")
    live.add_argument('--output-namespace',
                      help="the node's outputs (default: <camera namespace>/segmentation)")
    live.add_argument('--discovery-timeout', type=float, default=30.0)
    live.add_argument('--warmup-timeout', type=float, default=300.0)
    live.add_argument('--settle-timeout', type=float, default=10.0,
                      help='seconds to wait for outputs after the last frame')
    live.add_argument('--record-outputs', action='store_true',
                      help="also record the node's labels and confidence into "
                           '<output>/node_outputs_bag')


def build_parser() -> argparse.ArgumentParser:
    """Build the ``tqdm-bag`` argument parser with its five subcommands."""
    parser = argparse.ArgumentParser(prog='tqdm-bag', description=__doc__.split('\n')[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    subparsers = parser.add_subparsers(dest='command', required=True)
    _add_make(subparsers)
    _add_replay(subparsers)
    _add_record(subparsers)
    _add_evaluate(subparsers)
    info = subparsers.add_parser('info', help='summarize a bag')
    info.add_argument('bag', type=pathlib.Path)
    return parser


def _megabytes(num_bytes: int) -> str:
    return f'{num_bytes / 1e6:.1f} MB'


def _clock_time(stamp_ns: int) -> str:
    moment = datetime.datetime.fromtimestamp(stamp_ns * 1e-9, tz=datetime.timezone.utc)
    return moment.isoformat(timespec='milliseconds')


def format_summary(summary: BagSummary) -> str:
    """One screen describing a bag: storage, span and a line per topic."""
    lines = [
        f'bag       {summary.path}',
        f'storage   {summary.storage}, {_megabytes(summary.size_bytes)}',
        f'start     {_clock_time(summary.start_ns)}',
        f'end       {_clock_time(summary.end_ns)}',
        f'duration  {summary.duration_s:.3f} s',
        f'messages  {summary.message_count}',
        'topics:',
    ]
    width = max([len(t.name) for t in summary.topics] + [5])
    for topic in summary.topics:
        rate = ''
        if topic.message_count > 1 and summary.duration_s > 0:
            rate = f'{(topic.message_count - 1) / summary.duration_s:7.2f} Hz'
        latched = '  latched' if topic.latched else ''
        lines.append(f'  {topic.name:<{width}}  {topic.msgtype:<24} {topic.message_count:6d} msgs'
                     f'  {rate}{latched}')
    return '\n'.join(lines)


def _run_make(args: argparse.Namespace) -> None:
    table = class_table_by_name_or_file(args.classes) if args.classes else None
    frames = find_frames(args.source, labels=args.labels, layout=args.layout, split=args.split,
                         class_table=table)
    config = MakeBagConfig(
        image_topic=args.image_topic, label_topic=args.label_topic,
        class_table_topic=args.class_table_topic, frame_id=args.frame_id, rate_hz=args.rate,
        start_time_ns=None if args.start_time is None else int(round(args.start_time * 1e9)),
        stamp_jitter_ms=args.jitter_ms, transport_delay_ms=args.delay_ms, storage=args.storage,
        seed=args.seed, compression=args.compressed, jpeg_quality=args.jpeg_quality)
    result = make_bag(frames, args.output, config=config, limit=args.limit, progress=True)
    width, height = result.image_size
    labels = (f'with ground truth ({result.class_table.name}, '
              f'{result.class_table.num_classes} classes)' if result.has_labels
              else 'without ground truth')
    print(f'made {result.num_frames} frames of {width}x{height} {result.compression or "rgb8"} '
          f'on {result.camera_topic} from the {frames.layout} layout, {labels}, at '
          f'{args.rate:g} Hz')
    print(format_summary(summarize_bag(result.path)))


@contextlib.contextmanager
def _ros_context():
    """Yield an rclpy context without rclpy's signal handlers, so Ctrl-C stops cleanly."""
    import rclpy
    from rclpy.signals import SignalHandlerOptions
    context = rclpy.Context()
    rclpy.init(context=context, signal_handler_options=SignalHandlerOptions.NO)
    try:
        yield context
    finally:
        rclpy.shutdown(context=context)


def _run_stoppable(make_job, method: str):
    """Run a player or recorder in its own ROS context; Ctrl-C stops it; it is always closed."""
    with _ros_context() as context:
        job = make_job(context)
        try:
            _stop_on_signals(job.stop)
            return getattr(job, method)(progress=True)
        finally:
            job.close()


def _stop_on_signals(stop) -> None:
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop())


def _run_replay(args: argparse.Namespace) -> None:
    from tqdm_ros.bag.replay import BagPlayer, parse_remap, ReplayConfig
    config = ReplayConfig(rate=args.rate, loop=args.loop, start_offset_s=args.start_offset,
                          topics=tuple(args.topics), remap=parse_remap(list(args.remap)),
                          clock_hz=args.clock_hz,
                          wait_for_subscribers_s=args.wait_for_subscribers)
    summary = _run_stoppable(
        lambda context: BagPlayer(args.bag, config=config, context=context), 'play')
    status = 'stopped' if summary.stopped else 'finished'
    print(f'replay {status}: {sum(summary.messages.values())} messages in '
          f'{summary.wall_s:.2f} s wall time ({summary.loops} full passes, rate {args.rate:g})')
    for topic, count in sorted(summary.messages.items()):
        print(f'  {topic}  {count} msgs')
    if summary.lateness_ms.size:
        p50, p95 = np.percentile(summary.lateness_ms, [50, 95])
        print(f'schedule lateness  p50 {p50:.2f} ms  p95 {p95:.2f} ms  '
              f'max {summary.lateness_ms.max():.2f} ms')
    if summary.unmatched_topics:
        print(f"no subscriber on: {', '.join(summary.unmatched_topics)}")


def _run_record(args: argparse.Namespace) -> None:
    from tqdm_ros.bag.record import RecordConfig, Recorder
    config = RecordConfig(topics=tuple(args.topics), storage=args.storage,
                          duration_s=args.duration, max_messages=args.max_messages,
                          idle_timeout_s=args.idle_timeout,
                          discovery_timeout_s=args.discovery_timeout,
                          use_sim_time=args.use_sim_time)
    summary = _run_stoppable(
        lambda context: Recorder(args.output, config=config, context=context), 'run')
    print(f'recorded {sum(summary.messages.values())} messages in {summary.duration_s:.2f} s '
          f'(stopped by {summary.stop_reason})')
    print(format_summary(summarize_bag(summary.path)))


# tqdm-bag evaluate's spelling of the tqdm_core.InferenceOptions fields it sets.
OPTION_FLAGS = {'device': '--device', 'precision': '--precision', 'mode': '--inference-mode',
                'window': '--window', 'stride': '--stride', 'scale': '--scale',
                'runtime': '--runtime', 'flip': '--flip'}


def _offline_predictor(args: argparse.Namespace):
    """Build the Predictor of ``--checkpoint`` and/or ``--preset``; return it and its origin."""
    import tqdm_core
    from tqdm_core.default_model import resolve_checkpoint
    from tqdm_core.evaluation import ModelInfo

    if args.checkpoint is None and args.preset is None:
        raise ValueError('offline evaluation needs a model: pass --checkpoint model.pt (trained; '
                         "'default': the shipped model) or --preset NAME (random weights, to "
                         'check the pipeline)')
    given = {option: getattr(args, flag[2:].replace('-', '_'))
             for option, flag in OPTION_FLAGS.items()}
    try:
        options = tqdm_core.InferenceOptions(
            **{option: value for option, value in given.items() if value is not None})
        predictor = tqdm_core.load_predictor(args.checkpoint, preset=args.preset,
                                             options=options)
    except tqdm_core.InvalidOption as err:
        raise ValueError(err.describe(OPTION_FLAGS)) from None
    except tqdm_core.CheckpointError as err:
        raise ValueError(str(err)) from None
    if args.checkpoint is None:
        return predictor, ModelInfo(name=args.preset, trained=False,
                                    source=f'preset {args.preset} with random weights')
    return predictor, ModelInfo(name=predictor.model.preset, trained=True,
                                source=str(resolve_checkpoint(args.checkpoint)))


def _run_evaluate(args: argparse.Namespace) -> None:
    from tqdm_core.evaluation import format_summary, write_report_files

    from tqdm_ros.bag.bag_reader import staged_bag_path
    from tqdm_ros.bag.evaluate import EvaluationConfig, evaluate_live, evaluate_offline
    from tqdm_ros.bag.live_source import LiveConfig

    config = EvaluationConfig(
        image_topic=args.image_topic, label_topic=args.label_topic,
        class_table_topic=args.class_table_topic, limit=args.limit,
        num_overlays=args.num_overlays,
        ground_truth_classes=(class_table_by_name_or_file(args.gt_classes)
                              if args.gt_classes else None))
    if args.mode == 'live' and (args.checkpoint or args.preset):
        raise ValueError('--checkpoint and --preset choose the model of offline evaluation; '
                         'live evaluation scores the model the running node has loaded')
    if args.output.exists():
        raise FileExistsError(f"'{args.output}' exists; remove it or choose another output path")
    if args.mode == 'offline':
        predictor, model = _offline_predictor(args)
        report = evaluate_offline(args.bag, predictor, model=model, config=config, progress=True)
        with staged_bag_path(args.output) as staging:
            staging.mkdir()
            write_report_files(report, staging)
    else:
        live = LiveConfig(rate=args.rate, camera_topic=args.camera_topic,
                          output_namespace=args.output_namespace,
                          discovery_timeout_s=args.discovery_timeout,
                          warmup_timeout_s=args.warmup_timeout,
                          settle_timeout_s=args.settle_timeout)
        with _ros_context() as context, staged_bag_path(args.output) as staging:
            staging.mkdir()
            report = evaluate_live(
                args.bag, context=context, config=config, live=live, progress=True,
                record_to=staging / 'node_outputs_bag' if args.record_outputs else None)
            write_report_files(report, staging)
    print(format_summary(report))
    print(f'report and pictures in {args.output}')


def main(argv: list[str] | None = None) -> int:
    """Run ``tqdm-bag``; return the process exit code (0 ok, 1 bad input, 130 interrupted)."""
    args = build_parser().parse_args(argv)
    commands = {'make': _run_make, 'replay': _run_replay, 'record': _run_record,
                'evaluate': _run_evaluate,
                'info': lambda a: print(format_summary(summarize_bag(a.bag)))}
    try:
        commands[args.command](args)
    except (BagError, FileExistsError, FileNotFoundError, KeyError, TimeoutError,
            ValueError) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f'tqdm-bag {args.command}: error: {message}', file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f'tqdm-bag {args.command}: interrupted, nothing written', file=sys.stderr)
        return 130
    return 0


if __name__ == '__main__':
    sys.exit(main())
