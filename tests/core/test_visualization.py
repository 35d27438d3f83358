"""Label colouring, overlays, confidence images and legends, checked pixel by pixel."""
import cv2
import numpy as np
import pytest

from tqdm_core.classes import CAMVID_11, CITYSCAPES_19
from tqdm_core.visualization import (
    colorize_labels,
    confidence_to_colormap,
    confidence_to_image,
    legend_image,
    overlay,
)


def test_colorize_gives_each_class_its_exact_colour():
    labels = np.array([list(range(19)) + [255, 19, 200]], dtype=np.uint8)  # (1, 22)
    colours = colorize_labels(labels, CITYSCAPES_19)
    assert colours.shape == (1, 22, 3) and colours.dtype == np.uint8
    for class_id, colour in enumerate(CITYSCAPES_19.colors):
        assert tuple(colours[0, class_id]) == colour, CITYSCAPES_19.names[class_id]
    np.testing.assert_array_equal(colours[0, 19:], 0)  # 255 and ids beyond the table are black


def test_colorize_uses_the_given_table():
    labels = np.full((2, 2), CAMVID_11.names.index("car"), dtype=np.uint8)
    np.testing.assert_array_equal(colorize_labels(labels, CAMVID_11), np.broadcast_to((64, 0, 128), (2, 2, 3)))


def test_overlay_blends_labelled_pixels_and_keeps_unlabeled_ones():
    """Road is (128, 64, 128). With image value 100 and alpha 0.5: (114, 82, 114); with alpha 0.25:
    0.75 * 100 + 0.25 * (128, 64, 128) = (107, 91, 107). The 255 pixel keeps the image exactly."""
    image = np.full((1, 2, 3), 100, dtype=np.uint8)
    image[0, 1] = (1, 2, 3)
    labels = np.array([[0, 255]], dtype=np.uint8)
    blended = overlay(image, labels, CITYSCAPES_19)
    assert tuple(blended[0, 0]) == (114, 82, 114)
    assert tuple(blended[0, 1]) == (1, 2, 3)
    assert tuple(overlay(image, labels, CITYSCAPES_19, alpha=0.25)[0, 0]) == (107, 91, 107)
    np.testing.assert_array_equal(overlay(image, labels, CITYSCAPES_19, alpha=0.0), image)
    assert image[0, 0, 0] == 100  # the input is not modified


def test_overlay_matches_reference_on_a_random_frame():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    labels = rng.integers(0, 21, (48, 64)).astype(np.uint8)  # 19 and 20 are not classes
    labels[:5] = 255
    blended = overlay(image, labels, CITYSCAPES_19, alpha=0.4)
    reference = np.rint(0.6 * image + 0.4 * CITYSCAPES_19.palette()[labels])
    reference = np.where((labels < 19)[..., None], reference, image)
    assert np.abs(blended.astype(int) - reference).max() <= 1  # OpenCV rounds in fixed point


def test_confidence_images():
    confidence = np.array([[0.0, 0.5, 1.0, np.nan, 1.5]], dtype=np.float32)
    np.testing.assert_array_equal(confidence_to_image(confidence), [[0, 128, 255, 0, 255]])
    coloured = confidence_to_colormap(confidence)
    assert coloured.shape == (1, 5, 3) and coloured.dtype == np.uint8
    viridis = cv2.cvtColor(cv2.applyColorMap(np.array([[0, 255]], dtype=np.uint8), cv2.COLORMAP_VIRIDIS),
                           cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(coloured[0, [0, 2]], viridis[0])
    assert coloured[0, 2, 0] > coloured[0, 2, 2]  # viridis ends yellow (red > blue) in RGB order


def test_legend_has_one_swatch_per_class():
    swatch, width = 20, 150
    legend = legend_image(CAMVID_11, swatch_size=swatch, column_width=width, num_columns=2)
    rows = 6  # ceil(11 / 2)
    assert legend.shape == (rows * (swatch + 4) + 4, 2 * width, 3)
    for class_id, colour in enumerate(CAMVID_11.colors):
        column, row = divmod(class_id, rows)
        centre = legend[row * (swatch + 4) + 4 + swatch // 2, column * width + 4 + swatch // 2]
        assert tuple(centre) == colour, CAMVID_11.names[class_id]
    text_area = legend[4: 4 + swatch, swatch + 8: width]
    assert (text_area < 128).any()  # the class name is drawn in black


def test_bad_input_is_rejected():
    with pytest.raises(ValueError, match="uint8"):
        colorize_labels(np.zeros((2, 2), dtype=np.int64), CITYSCAPES_19)
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        colorize_labels(np.zeros((2, 2, 1), dtype=np.uint8), CITYSCAPES_19)
    with pytest.raises(ValueError, match="matching the labels"):
        overlay(np.zeros((3, 2, 3), np.uint8), np.zeros((2, 2), np.uint8), CITYSCAPES_19)
    with pytest.raises(ValueError, match="alpha"):
        overlay(np.zeros((2, 2, 3), np.uint8), np.zeros((2, 2), np.uint8), CITYSCAPES_19, alpha=2.0)
    with pytest.raises(ValueError, match="float"):
        confidence_to_image(np.zeros((2, 2), dtype=np.uint8))
