"""Report figures: each writes one readable PNG of the requested pixel size, atomically."""
import numpy as np
import pytest
from PIL import Image

from tqdm_core.classes import CAMVID_11, CITYSCAPES_19
from tqdm_core.evaluation import CalibrationAccumulator, SemSegEvaluator
from tqdm_core.evaluation import figures
from tqdm_core.evaluation.figures import OverlayFrame

SIZE = (400, 300)


def read_png(path) -> np.ndarray:
    with Image.open(path) as picture:
        assert picture.format == "PNG"
        return np.asarray(picture.convert("RGB"))


def assert_written(path, size=SIZE) -> np.ndarray:
    """The PNG exists at ``size`` (width, height), is not blank, and no temporary file was left next to it."""
    pixels = read_png(path)
    assert pixels.shape == (size[1], size[0], 3)
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 10  # something was drawn
    assert [p.name for p in path.parent.iterdir() if p.name.endswith(".tmp")] == []
    return pixels


@pytest.fixture(scope="module")
def results():
    rng = np.random.default_rng(0)
    gt = rng.integers(0, 11, (32, 48)).astype(np.uint8)
    pred = np.where(rng.random(gt.shape) < 0.7, gt, rng.integers(0, 11, gt.shape)).astype(np.uint8)
    pred[:3] = 255
    evaluator = SemSegEvaluator.for_class_table(CAMVID_11)
    evaluator.process(pred, gt)
    calibration = CalibrationAccumulator()
    calibration.process(rng.random(gt.shape), pred, gt)
    return evaluator.evaluate(), calibration.result()


def test_per_class_iou_bars(tmp_path, results):
    metrics, _ = results
    iou = metrics["iou"].copy()
    iou[4] = np.nan  # an undefined class is drawn as "n/a", not dropped
    path = tmp_path / "new" / "dir" / "iou.png"  # parent folders are created
    figures.plot_per_class_iou(iou, CAMVID_11.names, path, colors=CAMVID_11.colors, size_px=SIZE)
    pixels = assert_written(path)
    assert (pixels == CAMVID_11.colors[CAMVID_11.names.index("building")]).all(axis=-1).any()  # bars in class colours


def test_confusion_matrix(tmp_path, results):
    metrics, _ = results
    path = tmp_path / "confusion.png"
    figures.plot_confusion_matrix(metrics["confusion_matrix"], CAMVID_11.names, path,
                                  unlabeled_predictions=metrics["unlabeled_predictions"], size_px=SIZE)
    assert_written(path)


def test_reliability_diagram(tmp_path, results):
    _, calibration = results
    path = tmp_path / "reliability.png"
    figures.plot_reliability_diagram(calibration, path, size_px=SIZE)
    assert_written(path)


def test_latency_histogram(tmp_path):
    path = tmp_path / "latency.png"
    figures.plot_latency_histogram(np.random.default_rng(0).gamma(4.0, 10.0, 200), path, size_px=SIZE)
    assert_written(path)
    with pytest.raises(ValueError, match="finite latency"):
        figures.plot_latency_histogram([], tmp_path / "empty.png")
    assert not (tmp_path / "empty.png").exists()


def test_overlay_grid(tmp_path):
    rng = np.random.default_rng(0)
    car = CITYSCAPES_19.names.index("car")

    def frame(with_ground_truth: bool) -> OverlayFrame:
        prediction = np.full((24, 32), car, dtype=np.uint8)
        return OverlayFrame(
            image=rng.integers(0, 256, (24, 32, 3), dtype=np.uint8),
            prediction=prediction,
            confidence=rng.random((24, 32)).astype(np.float32),
            ground_truth=np.full((24, 32), CAMVID_11.names.index("car"), np.uint8) if with_ground_truth else None,
        )

    path = tmp_path / "grid.png"
    figures.plot_overlay_grid([frame(True), frame(False)], path, prediction_table=CITYSCAPES_19,
                              ground_truth_table=CAMVID_11, size_px=(640, 480))
    pixels = assert_written(path, (640, 480))
    assert (pixels == CITYSCAPES_19.colors[car]).all(axis=-1).sum() > 100  # the prediction panels
    assert (pixels == CAMVID_11.colors[CAMVID_11.names.index("car")]).all(axis=-1).sum() > 100  # the ground truth

    # The default size grows with the number of rows.
    figures.plot_overlay_grid([frame(True)], tmp_path / "one.png", prediction_table=CITYSCAPES_19,
                              ground_truth_table=CAMVID_11, panel_width_px=100)
    figures.plot_overlay_grid([frame(True)] * 3, tmp_path / "three.png", prediction_table=CITYSCAPES_19,
                              ground_truth_table=CAMVID_11, panel_width_px=100)
    one, three = read_png(tmp_path / "one.png"), read_png(tmp_path / "three.png")
    assert one.shape[1] == three.shape[1] == 400 and three.shape[0] > one.shape[0]


def test_overlay_grid_rejects_mismatched_frames(tmp_path):
    bad = OverlayFrame(image=np.zeros((10, 10, 3), np.uint8), prediction=np.zeros((12, 10), np.uint8))
    with pytest.raises(ValueError, match="frame 0: image"):
        figures.plot_overlay_grid([bad], tmp_path / "grid.png", prediction_table=CAMVID_11)
    with pytest.raises(ValueError, match="at least one frame"):
        figures.plot_overlay_grid([], tmp_path / "grid.png", prediction_table=CAMVID_11)


def test_failed_write_leaves_the_old_picture_and_no_temporary(tmp_path, results, monkeypatch):
    from matplotlib.figure import Figure

    metrics, _ = results
    path = tmp_path / "iou.png"
    path.write_bytes(b"previous picture")

    def broken_savefig(self, stream, **kwargs):
        stream.write(b"half a png")
        raise OSError("disk full")

    monkeypatch.setattr(Figure, "savefig", broken_savefig)
    with pytest.raises(OSError, match="disk full"):
        figures.plot_per_class_iou(metrics["iou"], CAMVID_11.names, path, size_px=SIZE)
    assert path.read_bytes() == b"previous picture"
    assert list(tmp_path.iterdir()) == [path]
