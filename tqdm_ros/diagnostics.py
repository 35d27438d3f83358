"""Health of the segmentation node, reported as diagnostic_msgs/DiagnosticArray on /diagnostics.

``diagnostic_updater`` is not on pip, so the array is built here. One status for the model (state,
model, device, precision, load error, resident memory) and one per camera (rates, latency
percentiles, frames dropped by the one-slot buffer, frames lost before the callback, bad inputs),
so "the topic never appears" always has an answer on /diagnostics: still loading, still
warming up, no images arriving, or images rejected and why.
"""

from collections import deque
from dataclasses import dataclass, field
import threading
import time
from typing import Callable, Optional

from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
import numpy as np

from tqdm_ros.memory import resident_memory_mb

# Node states shown in the model status.
STATE_UNCONFIGURED = 'unconfigured'
STATE_LOADING = 'loading model'
STATE_INACTIVE = 'inactive'
STATE_WARMING_UP = 'warming up'
STATE_RUNNING = 'running'
STATE_FAILED = 'failed'
STATE_FINALIZED = 'finalized'

# An active camera silent for this long is reported as a warning.
SILENCE_WARNING_S = 5.0


class RateMeter:
    """Events per second over a sliding time window.

    Args:
        window_s: length of the window in seconds.
    """

    def __init__(self, *, window_s: float = 5.0) -> None:
        self._window_s = window_s
        self._times: deque = deque()

    def tick(self, now: float) -> None:
        """Record one event at monotonic time ``now`` (seconds)."""
        self._times.append(now)
        self._trim(now)

    def rate(self, now: float) -> float:
        """Events per second in the window ending at ``now``."""
        self._trim(now)
        return len(self._times) / self._window_s

    def _trim(self, now: float) -> None:
        while self._times and self._times[0] < now - self._window_s:
            self._times.popleft()


class LatencyWindow:
    """The most recent durations, for percentiles.

    Args:
        size: number of durations kept.
    """

    def __init__(self, *, size: int = 256) -> None:
        self._values: deque = deque(maxlen=size)

    def add(self, seconds: float) -> None:
        self._values.append(seconds)

    def percentiles_ms(self) -> Optional[tuple[float, float]]:
        """(p50, p95) in milliseconds, or None before the first value."""
        if not self._values:
            return None
        p50, p95 = np.percentile(np.asarray(self._values), (50, 95))
        return float(p50) * 1e3, float(p95) * 1e3


@dataclass
class CameraHealth:
    """Counters of one camera since the node was configured."""

    topic: str
    received: int = 0
    processed: int = 0
    dropped: int = 0
    lost: int = 0
    bad_inputs: int = 0
    inference_errors: int = 0
    color_masks_computed: int = 0
    overlays_computed: int = 0
    inference_total_s: float = 0.0
    last_problem: str = ''
    last_received: Optional[float] = None
    reported_bad_inputs: int = 0
    reported_inference_errors: int = 0
    input_rate: RateMeter = field(default_factory=RateMeter)
    output_rate: RateMeter = field(default_factory=RateMeter)
    latency: LatencyWindow = field(default_factory=LatencyWindow)
    inference: LatencyWindow = field(default_factory=LatencyWindow)
    overhead: LatencyWindow = field(default_factory=LatencyWindow)


class HealthMonitor:
    """Thread-safe counters fed by the callbacks and the worker, turned into diagnostics.

    Args:
        node_name: prefix of every status name.
        clock: monotonic clock in seconds (injectable for tests).
        memory_mb: resident memory of the process in MiB (injectable for tests).
    """

    def __init__(self, *, node_name: str, clock: Callable[[], float] = time.monotonic,
                 memory_mb: Callable[[], float] = resident_memory_mb) -> None:
        self._node_name = node_name
        self._clock = clock
        self._memory_mb = memory_mb
        self._lock = threading.Lock()
        self._state = STATE_UNCONFIGURED
        self._state_detail = ''
        self._model_info: dict[str, str] = {}
        self._cameras: list[CameraHealth] = []

    def set_state(self, state: str, detail: str = '') -> None:
        with self._lock:
            self._state, self._state_detail = state, detail

    @property
    def state(self) -> str:
        with self._lock:
            return self._state

    def set_model_info(self, info: dict[str, str]) -> None:
        """Model, device, precision, ... shown in the model status."""
        with self._lock:
            self._model_info = dict(info)

    def update_model_info(self, info: dict[str, str]) -> None:
        """Change some entries of the model status (a parameter set at run time)."""
        with self._lock:
            self._model_info.update(info)

    def reset_cameras(self, topics: tuple[str, ...]) -> None:
        with self._lock:
            self._cameras = [CameraHealth(topic=t) for t in topics]

    def on_received(self, index: int) -> None:
        now = self._clock()
        with self._lock:
            camera = self._cameras[index]
            camera.received += 1
            camera.last_received = now
            camera.input_rate.tick(now)

    def on_dropped(self, index: int) -> None:
        with self._lock:
            self._cameras[index].dropped += 1

    def on_lost(self, index: int, count: int) -> None:
        """Count frames the publisher sent that never reached the callback (input_loss)."""
        with self._lock:
            self._cameras[index].lost += count

    def on_bad_input(self, index: int, reason: str) -> int:
        """Count a rejected frame; returns the camera's total of rejected frames."""
        with self._lock:
            camera = self._cameras[index]
            camera.bad_inputs += 1
            camera.last_problem = reason
            return camera.bad_inputs

    def on_inference_error(self, index: int, reason: str) -> None:
        with self._lock:
            camera = self._cameras[index]
            camera.inference_errors += 1
            camera.last_problem = reason

    def on_processed(self, index: int, *, latency_s: float, inference_s: float) -> None:
        """Count a published frame: latency from reception to publication, model time.

        The difference of the two, per frame, is the node's own overhead (decoding, copies,
        colouring, serialisation), reported as ``overhead_p50_ms`` and ``overhead_p95_ms``.
        """
        now = self._clock()
        with self._lock:
            camera = self._cameras[index]
            camera.processed += 1
            camera.output_rate.tick(now)
            camera.latency.add(latency_s)
            camera.inference.add(inference_s)
            camera.inference_total_s += inference_s
            camera.overhead.add(latency_s - inference_s)
            if self._state == STATE_WARMING_UP:
                self._state, self._state_detail = STATE_RUNNING, ''

    def on_visualization(self, index: int, *, color_mask: bool, overlay: bool) -> None:
        with self._lock:
            camera = self._cameras[index]
            camera.color_masks_computed += int(color_mask)
            camera.overlays_computed += int(overlay)

    def report(self, stamp: Time) -> DiagnosticArray:
        """Build the DiagnosticArray: model status first, then one status per camera."""
        now = self._clock()
        with self._lock:
            statuses = [self._model_status()]
            statuses += [self._camera_status(c, now) for c in self._cameras]
        array = DiagnosticArray()
        array.header.stamp = stamp
        array.status = statuses
        return array

    def _model_status(self) -> DiagnosticStatus:
        level = {
            STATE_RUNNING: DiagnosticStatus.OK, STATE_INACTIVE: DiagnosticStatus.OK,
            STATE_UNCONFIGURED: DiagnosticStatus.OK, STATE_FINALIZED: DiagnosticStatus.OK,
            STATE_FAILED: DiagnosticStatus.ERROR,
        }.get(self._state, DiagnosticStatus.WARN)
        message = self._state + (f': {self._state_detail}' if self._state_detail else '')
        values = {'state': self._state, **self._model_info,
                  'memory_rss_mb': f'{self._memory_mb():.0f}'}
        return _status(f'{self._node_name}: model', level, message,
                       self._model_info.get('device', ''), values)

    def _camera_status(self, camera: CameraHealth, now: float) -> DiagnosticStatus:
        new_bad = camera.bad_inputs - camera.reported_bad_inputs
        new_errors = camera.inference_errors - camera.reported_inference_errors
        camera.reported_bad_inputs = camera.bad_inputs
        camera.reported_inference_errors = camera.inference_errors
        active = self._state in (STATE_WARMING_UP, STATE_RUNNING)
        level, message = DiagnosticStatus.OK, 'ok' if active else self._state
        if active and (camera.last_received is None
                       or now - camera.last_received > SILENCE_WARNING_S):
            level = DiagnosticStatus.WARN
            message = (f'no image received on {camera.topic} for {SILENCE_WARNING_S:.0f} s '
                       '(check the topic name, the publisher and the QoS)')
        if new_bad:
            level = DiagnosticStatus.WARN
            message = f'{new_bad} frames rejected: {camera.last_problem}'
        if new_errors:
            level = DiagnosticStatus.ERROR
            message = f'{new_errors} inference errors: {camera.last_problem}'
        values = {
            'input_rate_hz': f'{camera.input_rate.rate(now):.2f}',
            'output_rate_hz': f'{camera.output_rate.rate(now):.2f}',
            'received': camera.received,
            'processed': camera.processed,
            'dropped_frames': camera.dropped,
            'lost_frames': camera.lost,
            'bad_inputs': camera.bad_inputs,
            'inference_errors': camera.inference_errors,
            'color_masks_computed': camera.color_masks_computed,
            'overlays_computed': camera.overlays_computed,
            'inference_total_s': f'{camera.inference_total_s:.6f}',
        }
        for key, window in (('latency', camera.latency), ('inference', camera.inference),
                            ('overhead', camera.overhead)):
            percentiles = window.percentiles_ms()
            if percentiles is not None:
                values[f'{key}_p50_ms'] = f'{percentiles[0]:.2f}'
                values[f'{key}_p95_ms'] = f'{percentiles[1]:.2f}'
        return _status(f'{self._node_name}: {camera.topic}', level, message,
                       self._model_info.get('device', ''), values)


def _status(name: str, level: bytes, message: str, hardware_id: str,
            values: dict) -> DiagnosticStatus:
    return DiagnosticStatus(
        level=level, name=name, message=message, hardware_id=hardware_id,
        values=[KeyValue(key=k, value=str(v)) for k, v in values.items()])


def status_values(status: DiagnosticStatus) -> dict[str, str]:
    """Return the key/value pairs of a status as a dict (for tools reading /diagnostics)."""
    return {kv.key: kv.value for kv in status.values}
