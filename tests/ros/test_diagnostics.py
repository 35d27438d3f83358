"""Health monitor: rates, latency percentiles, status levels and messages, on a fake clock."""

from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticStatus
import pytest

from tqdm_ros import diagnostics
from tqdm_ros.diagnostics import HealthMonitor, LatencyWindow, RateMeter, status_values


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_rate_counts_events_in_the_window():
    """Ticks at 0..4 s, 5 s window: 5 events / 5 s at t=4; at t=7.5 only 3 and 4 remain."""
    meter = RateMeter(window_s=5.0)
    for t in range(5):
        meter.tick(float(t))
    assert meter.rate(4.0) == pytest.approx(1.0)
    assert meter.rate(7.5) == pytest.approx(0.4)


def test_latency_percentiles_interpolate_like_numpy():
    """1..100 ms: p50 sits between the 50th and 51st values (50.5), p95 at 95 + 0.05 = 95.05."""
    window = LatencyWindow()
    assert window.percentiles_ms() is None
    for ms in range(1, 101):
        window.add(ms / 1000)
    assert window.percentiles_ms() == pytest.approx((50.5, 95.05))


def test_latency_window_keeps_the_latest_values():
    window = LatencyWindow(size=3)
    for seconds in (10.0, 0.001, 0.002, 0.003):
        window.add(seconds)
    assert window.percentiles_ms()[1] < 3.1


def report(monitor: HealthMonitor) -> list:
    return monitor.report(Time(sec=1)).status


def test_states_levels_and_counters():
    clock = FakeClock()
    monitor = HealthMonitor(node_name='/ns/segmentation_node', clock=clock)
    monitor.set_state(diagnostics.STATE_LOADING, 'model.pt')
    model, = report(monitor)
    assert (model.name, model.level, model.message) == (
        '/ns/segmentation_node: model', DiagnosticStatus.WARN, 'loading model: model.pt')

    monitor.set_model_info({'preset': 'tqdm-tiny-rn', 'device': 'cpu', 'precision': 'fp32'})
    monitor.reset_cameras(('/ns/camera/image_raw',))
    monitor.set_state(diagnostics.STATE_WARMING_UP, 'waiting for the first frame')
    clock.now += diagnostics.SILENCE_WARNING_S + 1
    model, camera = report(monitor)
    assert model.level == DiagnosticStatus.WARN and model.hardware_id == 'cpu'
    assert camera.name == '/ns/segmentation_node: /ns/camera/image_raw'
    assert camera.level == DiagnosticStatus.WARN and 'no image received' in camera.message

    monitor.on_received(0)
    monitor.on_received(0)
    monitor.on_dropped(0)
    monitor.on_processed(0, latency_s=0.020, inference_s=0.015)
    monitor.on_visualization(0, color_mask=True, overlay=False)
    model, camera = report(monitor)
    assert (model.level, status_values(model)['state']) == (DiagnosticStatus.OK, 'running')
    assert model.message == 'running'  # the warming-up detail does not outlive its state
    assert status_values(model)['preset'] == 'tqdm-tiny-rn'
    values = status_values(camera)
    assert camera.level == DiagnosticStatus.OK
    assert (values['received'], values['processed'], values['dropped_frames']) == ('2', '1', '1')
    assert (values['color_masks_computed'], values['overlays_computed']) == ('1', '0')
    assert (values['latency_p50_ms'], values['inference_p50_ms']) == ('20.00', '15.00')
    assert float(values['input_rate_hz']) == pytest.approx(2 / 5)


def test_bad_input_and_inference_errors_raise_the_level_until_reported():
    monitor = HealthMonitor(node_name='/segmentation_node', clock=FakeClock())
    monitor.reset_cameras(('/camera/image_raw',))
    monitor.set_state(diagnostics.STATE_RUNNING)
    monitor.on_received(0)
    assert monitor.on_bad_input(0, 'unsupported encoding') == 1
    camera = report(monitor)[1]
    assert camera.level == DiagnosticStatus.WARN
    assert camera.message == '1 frames rejected: unsupported encoding'
    assert report(monitor)[1].level == DiagnosticStatus.OK  # nothing new since the last report
    monitor.on_inference_error(0, 'out of memory')
    camera = report(monitor)[1]
    assert camera.level == DiagnosticStatus.ERROR and 'out of memory' in camera.message
    assert status_values(camera)['bad_inputs'] == '1'


def test_failed_load_is_an_error():
    monitor = HealthMonitor(node_name='/segmentation_node')
    monitor.set_state(diagnostics.STATE_FAILED, "checkpoint 'x.pt' does not exist")
    model, = report(monitor)
    assert model.level == DiagnosticStatus.ERROR and 'x.pt' in model.message


def test_frames_lost_before_the_callback_are_counted_apart_from_drops():
    monitor = HealthMonitor(node_name='/n', clock=FakeClock(), memory_mb=lambda: 912.4)
    monitor.reset_cameras(('/cam/image',))
    monitor.set_state(diagnostics.STATE_RUNNING)
    for _ in range(3):
        monitor.on_received(0)
    monitor.on_lost(0, 4)
    monitor.on_lost(0, 1)
    monitor.on_dropped(0)
    model, camera = monitor.report(Time()).status
    assert status_values(model)['memory_rss_mb'] == '912'
    values = status_values(camera)
    assert (values['received'], values['lost_frames'], values['dropped_frames']) == (
        '3', '5', '1')


def test_finalized_node_reports_no_model_and_no_silent_cameras():
    monitor = HealthMonitor(node_name='/segmentation_node', clock=FakeClock())
    monitor.reset_cameras(('/camera/image_raw',))
    monitor.set_model_info({'preset': 'tqdm-tiny-rn', 'confidence_threshold': '0.0'})
    monitor.set_state(diagnostics.STATE_RUNNING)
    monitor.update_model_info({'confidence_threshold': '0.4'})
    assert status_values(report(monitor)[0])['confidence_threshold'] == '0.4'
    monitor.set_state(diagnostics.STATE_FINALIZED)
    monitor.set_model_info({})
    model, camera = report(monitor)
    assert (model.level, model.message) == (DiagnosticStatus.OK, 'finalized')
    assert 'preset' not in status_values(model)
    assert (camera.level, camera.message) == (DiagnosticStatus.OK, 'finalized')
