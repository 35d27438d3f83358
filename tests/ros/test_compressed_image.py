"""sensor_msgs/CompressedImage: formats, header sizes, decoding, and every way to reject one."""

import cv2
import numpy as np
import pytest
from sensor_msgs.msg import CompressedImage

from tqdm_ros.compressed_image import (
    check_compressed_layout, compress_rgb8, compressed_to_rgb8, MAX_BYTES_PER_PIXEL, read_format)
from tqdm_ros.image_conversion import image_to_rgb8, ImageConversionError, numpy_to_image

RNG = np.random.default_rng(5)
# A smooth image: JPEG keeps it within a few grey levels, noise would not compress.
_ROWS, _COLUMNS = np.mgrid[0:36, 0:52]
RGB = np.stack([_ROWS * 7, _COLUMNS * 4, (_ROWS + _COLUMNS) * 3], axis=2).astype(np.uint8)


def message(data: bytes, image_format: str) -> CompressedImage:
    msg = CompressedImage(format=image_format)
    msg.data = data
    return msg


def encoded(array: np.ndarray, extension: str, *parameters) -> bytes:
    ok, data = cv2.imencode(extension, array, list(parameters))
    assert ok
    return data.tobytes()


@pytest.mark.parametrize('image_format, expected', [
    ('rgb8; jpeg compressed bgr8', ('rgb8', 'jpeg', 'bgr')),
    ('bgr8; png compressed bgr8', ('bgr8', 'png', 'bgr')),
    ('rgb8; png compressed rgb8', ('rgb8', 'png', 'rgb')),
    ('RGBA8 ;  PNG Compressed RGBA8 ', ('RGBA8', 'png', 'rgb')),
    ('rgb16; png compressed bgr16', ('rgb16', 'png', 'bgr')),
    ('mono8; jpeg compressed mono8', ('mono8', 'jpeg', 'bgr')),
    ('mono16; png compressed ', ('mono16', 'png', 'bgr')),
    ('jpeg', ('', 'jpeg', 'bgr')), ('PNG', ('', 'png', 'bgr')), ('jpg', ('', 'jpeg', 'bgr')),
    ('', ('', '', 'bgr')), ('rgb8;', ('rgb8', '', 'bgr')),
])
def test_read_format_of_image_transport_formats(image_format, expected):
    assert read_format(image_format) == (*expected, '')  # no mosaic


@pytest.mark.parametrize('image_format, mosaic', [
    ('bayer_rggb8; png compressed ', 'bayer_rggb8'),  # the mosaic as it is: PNG
    ('bayer_gbrg16; png compressed ', 'bayer_gbrg16'),
    ('bayer_bggr8; jpeg compressed bayer_bggr8', 'bayer_bggr8'),  # JPEG with jpeg_compress_bayer
    ('bayer_bggr8; jpeg compressed mono8', ''),  # other JPEGs: converted to grey before encoding
])
def test_bayer_formats_say_whether_the_data_hold_the_mosaic(image_format, mosaic):
    assert read_format(image_format).mosaic == mosaic


@pytest.mark.parametrize('bits', [8, 16])
def test_a_png_compressed_mosaic_decodes_as_the_raw_bayer_image_does(bits):
    """The same demosaicing as a raw bayer_rggb image (checked against re-mosaiced colours)."""
    mosaic = RNG.integers(0, 2 ** bits, (36, 52)).astype(np.uint8 if bits == 8 else np.uint16)
    image, channel_order = compressed_to_rgb8(
        message(encoded(mosaic, '.png'), f'bayer_rggb{bits}; png compressed '))
    raw_image, raw_order = image_to_rgb8(numpy_to_image(mosaic, f'bayer_rggb{bits}'))
    assert channel_order == raw_order == 'rgb'
    np.testing.assert_array_equal(image, raw_image)


def test_a_colour_payload_under_a_mosaic_format_is_refused():
    with pytest.raises(ImageConversionError,
                       match='names a bayer_rggb8 mosaic, but the png data hold 3'):
        compressed_to_rgb8(message(encoded(RGB, '.png'), 'bayer_rggb8; png compressed '))


@pytest.mark.parametrize('image_format, message_part', [
    ('16UC1; compressedDepth png', 'compressedDepth stream (a depth image)'),
    ('theora', "unsupported compressed format 'theora'"),
    ('rgb8; tiff compressed bgr8', 'expected JPEG or PNG'),
    # image_transport compresses non-colour encodings as they are and names no data encoding.
    ('16UC1; png compressed ', 'the compressed image is 16UC1'),
    ('32FC1; png compressed ', 'the compressed image is 32FC1'),
    ('yuv422; jpeg compressed ', 'the compressed image is yuv422'),
])
def test_formats_that_are_not_camera_jpeg_or_png_are_refused(image_format, message_part):
    with pytest.raises(ImageConversionError) as error:
        read_format(image_format)
    assert message_part in str(error.value)


def test_the_data_encoding_of_the_format_sets_the_channel_order():
    """A publisher that hands RGB bytes to the encoder writes 'compressed rgb8'; the standard
    plugin converts to BGR first and writes 'compressed bgr8'. Both decode to the same RGB."""
    rgb_as_is = message(encoded(RGB, '.png'), 'rgb8; png compressed rgb8')
    converted = message(encoded(RGB[:, :, ::-1], '.png'), 'rgb8; png compressed bgr8')
    plain_file = message(encoded(RGB[:, :, ::-1], '.png'), 'png')
    for msg, order in ((rgb_as_is, 'rgb'), (converted, 'bgr'), (plain_file, 'bgr')):
        image, channel_order = compressed_to_rgb8(msg)
        assert channel_order == order
        np.testing.assert_array_equal(image if order == 'rgb' else image[:, :, ::-1], RGB)


def test_bytes_after_the_end_of_the_stream_are_accepted():
    """Fixed-size capture buffers leave padding or stale bytes after the end marker."""
    jpeg, _ = compress_rgb8(RGB, 'jpeg')
    png, _ = compress_rgb8(RGB, 'png')
    expected_jpeg, _ = compressed_to_rgb8(message(jpeg, 'jpeg'))
    for data, codec in ((jpeg, 'jpeg'), (png, 'png')):
        for trailer in (bytes(300), b'\x12\x34' * 50):
            image, _ = compressed_to_rgb8(message(data + trailer, codec))
            if codec == 'jpeg':
                np.testing.assert_array_equal(image, expected_jpeg)
            else:
                np.testing.assert_array_equal(image[:, :, ::-1], RGB)


def test_the_end_marker_of_an_exif_thumbnail_does_not_hide_a_truncated_jpeg():
    """An EXIF thumbnail is a whole JPEG (with its own end marker) inside the APP1 segment."""
    thumbnail = encoded(RGB[::4, ::4, ::-1].copy(), '.jpg')
    payload = b'Exif\x00\x00' + thumbnail
    app1 = b'\xff\xe1' + (len(payload) + 2).to_bytes(2, 'big') + payload
    jpeg, _ = compress_rgb8(RGB, 'jpeg')
    with_thumbnail = jpeg[:2] + app1 + jpeg[2:]
    assert check_compressed_layout(message(with_thumbnail, 'jpeg')) == ('jpeg', 52, 36)
    with pytest.raises(ImageConversionError, match='no end marker: truncated'):
        check_compressed_layout(message(with_thumbnail[:len(with_thumbnail) - 200], 'jpeg'))


def test_png_round_trip_is_exact_and_keeps_the_size():
    data, image_format = compress_rgb8(RGB, 'png')
    assert image_format == 'rgb8; png compressed bgr8'
    msg = message(data, image_format)
    assert check_compressed_layout(msg) == ('png', 52, 36)
    image, channel_order = compressed_to_rgb8(msg)
    assert channel_order == 'bgr' and image.flags.c_contiguous
    np.testing.assert_array_equal(image[:, :, ::-1], RGB)


def test_jpeg_round_trip_is_close_and_keeps_the_size():
    data, image_format = compress_rgb8(RGB, 'jpeg', jpeg_quality=95)
    assert image_format == 'rgb8; jpeg compressed bgr8'
    msg = message(data, image_format)
    assert check_compressed_layout(msg) == ('jpeg', 52, 36)
    image, channel_order = compressed_to_rgb8(msg)
    assert channel_order == 'bgr' and image.shape == RGB.shape
    assert np.abs(image[:, :, ::-1].astype(int) - RGB).mean() < 3.0


def test_progressive_jpeg_size_is_read_from_its_frame_header():
    data = encoded(RGB[:, :, ::-1], '.jpg', cv2.IMWRITE_JPEG_PROGRESSIVE, 1)
    assert data[2:4] == b'\xff\xe0'  # an APP0 segment comes before the frame header
    assert check_compressed_layout(message(data, 'jpeg')) == ('jpeg', 52, 36)


def test_grey_sixteen_bit_and_alpha_pngs_become_three_channel_uint8():
    grey = RGB[:, :, 0]
    image, _ = compressed_to_rgb8(message(encoded(grey, '.png'), 'mono8; png compressed mono8'))
    np.testing.assert_array_equal(image, np.repeat(grey[:, :, None], 3, axis=2))
    deep = np.full((4, 6), 65535, dtype=np.uint16)
    deep[0, 0] = 257 * 10
    image, _ = compressed_to_rgb8(message(encoded(deep, '.png'), 'mono16; png compressed mono16'))
    assert image[0, 0, 0] == 10 and image[1, 1, 2] == 255
    bgra = np.dstack([RGB[:, :, ::-1], np.full(RGB.shape[:2], 7, np.uint8)])
    image, channel_order = compressed_to_rgb8(message(encoded(bgra, '.png'), 'png'))
    assert channel_order == 'bgr'
    np.testing.assert_array_equal(image, RGB[:, :, ::-1])


def png_declaring(width: int, height: int) -> bytes:
    """A real PNG whose IHDR width and height were rewritten (the CRC no longer matches)."""
    data = bytearray(encoded(RGB, '.png'))
    data[16:24] = width.to_bytes(4, 'big') + height.to_bytes(4, 'big')
    return bytes(data)


def bad_messages():
    jpeg, _ = compress_rgb8(RGB, 'jpeg')
    png, _ = compress_rgb8(RGB, 'png')
    return [
        (message(b'', 'jpeg'), 'compressed image with no data'),
        (message(b'GIF89a' + bytes(40), 'jpeg'), 'neither a JPEG nor a PNG stream'),
        (message(png, 'rgb8; jpeg compressed bgr8'), 'names jpeg but the data is a png stream'),
        (message(jpeg[:len(jpeg) - 40], 'jpeg'), 'no end marker: truncated'),
        (message(jpeg[:len(jpeg) // 2], 'jpeg'), 'corrupt or truncated'),  # inside the tables
        (message(png[:len(png) - 20], 'png'), 'no end marker: truncated'),
        (message(jpeg[:2] + b'\xff\xda' + bytes(100), 'jpeg'), 'no readable frame header'),
        (message(png[:20], 'png'), 'no IHDR header chunk'),
        (message(png_declaring(100_000, 100_000), 'png'), 'exceeds the limit'),
        (message(png_declaring(0, 36), 'png'), 'empty png image'),
        (message(png_declaring(1 << 20, 1), 'png'), 'has a side above 8192 pixels'),
        (message(png, '16UC1; compressedDepth png'), 'compressedDepth'),
    ]


@pytest.mark.parametrize('msg, message_part', bad_messages())
def test_malformed_payloads_are_refused_before_decoding(msg, message_part):
    with pytest.raises(ImageConversionError) as error:
        check_compressed_layout(msg)
    assert message_part in str(error.value)


def test_an_oversized_payload_is_refused_by_its_length():
    data, image_format = compress_rgb8(RNG.integers(0, 256, (40, 40, 3), dtype=np.uint8), 'png')
    max_pixels = len(data) // MAX_BYTES_PER_PIXEL - 1
    with pytest.raises(ImageConversionError, match=f'payload of {len(data)} bytes is larger'):
        check_compressed_layout(message(data, image_format), max_pixels=max_pixels)


def test_undecodable_data_behind_a_valid_header_is_refused():
    data = bytearray(compress_rgb8(RGB, 'png')[0])
    data[40:60] = bytes(20)  # inside the compressed pixel data: the zlib stream is corrupt
    with pytest.raises(ImageConversionError, match='could not be decoded'):
        compressed_to_rgb8(message(bytes(data), 'png'))


def test_wrong_usage_of_the_encoder_is_refused():
    with pytest.raises(ValueError, match="codec must be one of"):
        compress_rgb8(RGB, 'webp')
    with pytest.raises(ValueError, match='expected an \\(H, W, 3\\) uint8 RGB image'):
        compress_rgb8(RGB[:, :, 0], 'png')
