"""sensor_msgs/Image <-> numpy: round trips, padded rows, byte order, model input, bad messages."""

import sys

import numpy as np
import pytest
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from tqdm_core.inference.predictor import MAX_SIDE as PREDICTOR_MAX_SIDE
from tqdm_ros.image_conversion import (
    check_image_layout, ENCODINGS, image_to_numpy, image_to_rgb8, ImageConversionError, MAX_SIDE,
    numpy_to_image)

RNG = np.random.default_rng(0)


def random_array(encoding: str, height: int = 5, width: int = 7) -> np.ndarray:
    layout = ENCODINGS[encoding]
    shape = (height, width) if layout.channels == 1 else (height, width, layout.channels)
    if layout.dtype.kind == 'f':
        return RNG.random(shape, dtype=np.float32)
    return RNG.integers(0, np.iinfo(layout.dtype).max + 1, shape).astype(layout.dtype)


def raw_message(encoding, width, height, step, data, is_bigendian=False) -> Image:
    msg = Image(encoding=encoding, width=width, height=height, step=step,
                is_bigendian=is_bigendian)
    msg.data = data
    return msg


@pytest.mark.parametrize('encoding', sorted(ENCODINGS))
def test_round_trip_keeps_values_header_and_packs_rows(encoding):
    array = random_array(encoding, width=8)  # YUV 4:2:2 needs an even width
    header = Header(frame_id='camera_optical')
    header.stamp.sec, header.stamp.nanosec = 12, 345
    msg = numpy_to_image(array, encoding, header=header)
    assert (msg.height, msg.width, msg.encoding) == (5, 8, encoding)
    assert msg.step == 8 * array.itemsize * (1 if array.ndim == 2 else array.shape[2])
    assert len(msg.data) == msg.step * msg.height
    assert msg.header.frame_id == 'camera_optical' and msg.header.stamp.nanosec == 345
    np.testing.assert_array_equal(image_to_numpy(msg), array)


def test_padded_rows_are_skipped():
    """Rows of 3 rgb8 pixels (9 bytes) stored with step 12: 3 padding bytes per row."""
    array = random_array('rgb8', height=2, width=3)
    rows = [array[r].tobytes() + b'\xff\xff\xff' for r in range(2)]
    msg = raw_message('rgb8', 3, 2, 12, b''.join(rows))
    np.testing.assert_array_equal(image_to_numpy(msg), array)


def test_decoded_view_is_read_only():
    msg = numpy_to_image(random_array('mono8'), 'mono8')
    with pytest.raises(ValueError):
        image_to_numpy(msg)[0, 0] = 1


def test_big_endian_multi_byte_data_is_rejected_and_8_bit_data_ignores_the_flag():
    """NODE.md lists big-endian with the inputs to skip; a byte has no byte order."""
    big = raw_message('mono16', 2, 1, 4, bytes([0x01, 0x02, 0xff, 0x00]), is_bigendian=True)
    with pytest.raises(ImageConversionError, match='big-endian'):
        image_to_numpy(big)
    little = raw_message('mono16', 2, 1, 4, bytes([0x02, 0x01, 0x00, 0xff]))
    np.testing.assert_array_equal(image_to_numpy(little), [[258, 0xff00]])
    flagged = raw_message('mono8', 2, 1, 2, bytes([7, 9]), is_bigendian=True)
    np.testing.assert_array_equal(image_to_numpy(flagged), [[7, 9]])


def test_row_padding_of_any_byte_count_is_skipped():
    """A 3-pixel rgb8 row of 9 bytes padded to 10: cv_bridge's whole-pixel rows shear this image."""
    array = np.arange(18, dtype=np.uint8).reshape(2, 3, 3)
    rows = [array[0].tobytes() + b'\xee', array[1].tobytes() + b'\xee']
    msg = raw_message('rgb8', 3, 2, 10, b''.join(rows))
    np.testing.assert_array_equal(image_to_numpy(msg), array)


def test_written_messages_declare_native_byte_order():
    msg = numpy_to_image(random_array('mono16'), 'mono16')
    assert msg.is_bigendian == (sys.byteorder == 'big')


@pytest.mark.parametrize('encoding, order', [('rgb8', 'rgb'), ('bgr8', 'bgr'),
                                             ('rgba8', 'rgb'), ('bgra8', 'bgr')])
def test_colour_images_keep_their_channel_order_and_drop_alpha(encoding, order):
    array = random_array(encoding)
    image, channel_order = image_to_rgb8(numpy_to_image(array, encoding))
    assert channel_order == order and image.flags.c_contiguous
    np.testing.assert_array_equal(image, array[:, :, :3])


@pytest.mark.parametrize('encoding, order', [('rgb16', 'rgb'), ('bgr16', 'bgr'),
                                             ('rgba16', 'rgb'), ('bgra16', 'bgr')])
def test_sixteen_bit_colour_images_are_scaled_like_mono16(encoding, order):
    """v -> round(v / 257) per channel, as for mono16: 257 * 200 -> 200, 65535 -> 255."""
    array = np.zeros((2, 3, ENCODINGS[encoding].channels), dtype=np.uint16)
    array[0, 0, :3] = [257 * 200, 65535, 129]
    image, channel_order = image_to_rgb8(numpy_to_image(array, encoding))
    assert channel_order == order and image.dtype == np.uint8 and image.shape == (2, 3, 3)
    np.testing.assert_array_equal(image[0, 0], [200, 255, 1])
    assert not image[1:].any()


def test_mono_and_float_images_become_grey_rgb():
    """mono16 v -> round(v / 257): 0 -> 0, 128 -> 0, 129 -> 1, 65535 -> 255.

    32FC1 x -> round(255 * clip(x, 0, 1)): 0.5 -> 128 (127.5 + 0.5 truncated), 2.0 -> 255,
    -1.0 -> 0.
    """
    mono16 = np.array([[0, 128, 129, 65535]], dtype=np.uint16)
    image, order = image_to_rgb8(numpy_to_image(mono16, 'mono16'))
    assert order == 'rgb' and image.shape == (1, 4, 3)
    np.testing.assert_array_equal(image[..., 0], [[0, 0, 1, 255]])
    np.testing.assert_array_equal(image[..., 0], image[..., 2])
    floats = np.array([[0.5, 2.0, -1.0]], dtype=np.float32)
    image, _ = image_to_rgb8(numpy_to_image(floats, '32FC1'))
    np.testing.assert_array_equal(image[..., 1], [[128, 255, 0]])
    mono8 = random_array('mono8')
    image, _ = image_to_rgb8(numpy_to_image(mono8, 'mono8'))
    np.testing.assert_array_equal(image, np.repeat(mono8[:, :, None], 3, axis=2))


def smooth_rgb(height: int = 48, width: int = 64) -> np.ndarray:
    """Colours that change slowly, so that demosaicing can restore them almost exactly."""
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([60 + 2 * x, 40 + 3 * y, 220 - x - y], axis=-1).astype(np.uint8)


@pytest.mark.parametrize('pattern', ['rggb', 'bggr', 'gbrg', 'grbg'])
@pytest.mark.parametrize('bits', [8, 16])
def test_bayer_mosaics_are_demosaiced_with_their_pattern(pattern, bits):
    """Each pixel of the mosaic keeps the one colour its pattern names (rggb: red at the top left).

    A pattern mapped to the wrong OpenCV code swaps red and blue or shifts green: errors of 60 and
    more on these colours, against under 1 (8-bit) inside the border for the right one.
    """
    rgb = smooth_rgb()
    mosaic = np.zeros(rgb.shape[:2], np.uint8)
    for (dy, dx), colour in zip([(0, 0), (0, 1), (1, 0), (1, 1)], pattern):
        mosaic[dy::2, dx::2] = rgb[dy::2, dx::2, 'rgb'.index(colour)]
    if bits == 16:
        mosaic = mosaic.astype(np.uint16) * 257
    image, order = image_to_rgb8(numpy_to_image(mosaic, f'bayer_{pattern}{bits}'))
    assert order == 'rgb' and image.shape == rgb.shape and image.dtype == np.uint8
    error = np.abs(image.astype(int) - rgb)[2:-2, 2:-2]
    assert error.max() <= 1, f'largest error {error.max()} inside the border'


@pytest.mark.parametrize('encoding, order', [('yuv422', 'UYVY'), ('yuv422_yuy2', 'YUYV')])
def test_packed_yuv_is_read_in_its_byte_order(encoding, order):
    """Grey (U = V = 128) stays grey; a high V (red-difference) sample makes the pixel pair red."""
    luma = np.full((2, 4), 120, np.uint8)
    u = np.full((2, 2), 128, np.uint8)
    v = np.array([[128, 200], [128, 200]], np.uint8)  # the second pixel pair of each row is red
    packed = np.zeros((2, 4, 2), np.uint8)
    luma_slot = order.index('Y') % 2  # UYVY: luma in byte 1 of each pixel, YUYV: byte 0
    packed[:, :, luma_slot] = luma
    packed[:, 0::2, 1 - luma_slot] = u
    packed[:, 1::2, 1 - luma_slot] = v
    image, channel_order = image_to_rgb8(numpy_to_image(packed, encoding))
    assert channel_order == 'rgb' and image.shape == (2, 4, 3)
    grey, red = image[:, :2].astype(int), image[:, 2:].astype(int)
    assert np.ptp(grey, axis=-1).max() <= 1 and abs(grey[0, 0, 0] - 120) <= 20
    assert (red[..., 0] > red[..., 1] + 60).all() and (red[..., 0] > red[..., 2] + 60).all()


@pytest.mark.parametrize('msg, message', [
    (raw_message('nv21', 2, 2, 2, bytes(6)), "unsupported encoding 'nv21'"),
    (raw_message('yuv422', 3, 2, 6, bytes(12)), 'yuv422 image of odd width 3'),
    (raw_message('rgb8', 0, 2, 0, b''), 'empty image: 0x2'),
    (raw_message('rgb8', 100_000, 100_000, 300_000, bytes(4)), 'exceeds the limit'),
    (raw_message('mono8', 10_000, 1, 10_000, bytes(10_000)), 'has a side above 8192 pixels'),
    (raw_message('rgb8', 4, 2, 10, bytes(20)), 'step 10 is shorter than one row'),
    (raw_message('mono16', 4, 2, 9, bytes(18)), 'step 9 is not a multiple of the 2-byte'),
    (raw_message('rgb8', 4, 2, 12, bytes(23)), 'data has 23 bytes, expected'),
    (raw_message('rgb8', 4, 2, 12, bytes(25)), 'data has 25 bytes, expected'),
])
def test_malformed_messages_are_rejected_with_the_reason(msg, message):
    with pytest.raises(ImageConversionError, match=message.replace('(', r'\(')):
        check_image_layout(msg)
    with pytest.raises(ImageConversionError):
        image_to_rgb8(msg)


def test_float_image_with_nan_or_infinity_is_rejected():
    for bad in (np.nan, np.inf):
        array = np.zeros((2, 3), dtype=np.float32)
        array[1, 2] = bad
        with pytest.raises(ImageConversionError, match='NaN or infinite'):
            image_to_rgb8(numpy_to_image(array, '32FC1'))


def test_pixel_limit_is_configurable():
    msg = numpy_to_image(random_array('mono8', 4, 4), 'mono8')
    check_image_layout(msg, max_pixels=16)
    with pytest.raises(ImageConversionError, match='limit of 15 pixels'):
        check_image_layout(msg, max_pixels=15)


@pytest.mark.parametrize('array, encoding', [
    (np.zeros((2, 3), np.float32), 'mono8'),
    (np.zeros((2, 3, 3), np.uint8), 'mono8'),
    (np.zeros((2, 3), np.uint8), 'rgb8'),
    (np.zeros((2, 3), np.uint8), 'nv12'),
])
def test_encoding_an_array_that_does_not_match_is_an_error(array, encoding):
    with pytest.raises(ValueError, match=encoding):
        numpy_to_image(array, encoding)


def test_side_limit_is_the_predictors():
    assert MAX_SIDE == PREDICTOR_MAX_SIDE
