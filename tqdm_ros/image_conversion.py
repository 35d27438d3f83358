"""sensor_msgs/Image <-> numpy, with the checks a node needs to survive malformed input.

Decoding is a zero-copy strided view over ``msg.data`` that respects ``step`` (row padding), and
``arr.tobytes()`` encodes (assigning a numpy array to ``msg.data`` is about 250 times slower).
Not cv_bridge, even where it is installed: it derives the row length from ``step`` in whole
pixels, so a row padded by a byte count that is not a multiple of the pixel size comes out
sheared without an error, and pip-only installs have no working cv_bridge at all (the PyPI package
is an old ROS 1 port that breaks on numpy 2).

The layout checks (:func:`check_image_layout`) run first, so a malformed message is rejected with
a clear message and never reaches numpy. Big-endian multi-byte data is one of the inputs the node
skips (NODE.md lists it with the malformed ones); for 8-bit encodings the flag has no meaning.
"""

import sys
from typing import NamedTuple, Optional

import cv2
import numpy as np
from sensor_msgs.msg import Image
from std_msgs.msg import Header


class EncodingLayout(NamedTuple):
    """Pixel layout of one ``sensor_msgs/image_encodings`` name."""

    dtype: np.dtype
    channels: int


ENCODINGS = {
    'rgb8': EncodingLayout(np.dtype(np.uint8), 3),
    'bgr8': EncodingLayout(np.dtype(np.uint8), 3),
    'rgba8': EncodingLayout(np.dtype(np.uint8), 4),
    'bgra8': EncodingLayout(np.dtype(np.uint8), 4),
    'mono8': EncodingLayout(np.dtype(np.uint8), 1),
    'mono16': EncodingLayout(np.dtype(np.uint16), 1),
    'rgb16': EncodingLayout(np.dtype(np.uint16), 3),
    'bgr16': EncodingLayout(np.dtype(np.uint16), 3),
    'rgba16': EncodingLayout(np.dtype(np.uint16), 4),
    'bgra16': EncodingLayout(np.dtype(np.uint16), 4),
    '32FC1': EncodingLayout(np.dtype(np.float32), 1),
    '32FC3': EncodingLayout(np.dtype(np.float32), 3),
    # Packed YUV 4:2:2, two bytes per pixel: ROS 'yuv422' is U Y V Y, 'yuv422_yuy2' is Y U Y V.
    'yuv422': EncodingLayout(np.dtype(np.uint8), 2),
    'yuv422_yuy2': EncodingLayout(np.dtype(np.uint8), 2),
}
# Conversions to RGB of the encodings that are not pixel arrays: a Bayer mosaic as machine-vision
# cameras publish it before image_proc, and packed YUV. OpenCV names a Bayer pattern by the 2x2
# block that starts at the second row and column: ROS 'bayer_rggb' is OpenCV's 'BayerBG' (cv_bridge
# maps them the same way).
_OPENCV_BAYER = {'rggb': 'BG', 'bggr': 'RG', 'gbrg': 'GR', 'grbg': 'GB'}
ENCODINGS.update({f'bayer_{pattern}{bits}': EncodingLayout(np.dtype(f'uint{bits}'), 1)
                  for pattern in _OPENCV_BAYER for bits in (8, 16)})
TO_RGB = {'yuv422': cv2.COLOR_YUV2RGB_UYVY, 'yuv422_yuy2': cv2.COLOR_YUV2RGB_YUY2,
          **{f'bayer_{pattern}{bits}': getattr(cv2, f'COLOR_Bayer{opencv}2RGB')
             for pattern, opencv in _OPENCV_BAYER.items() for bits in (8, 16)}}

# Default bound on width * height: 32 megapixels is above any camera a robot carries; a larger
# header is corrupt and would make the node allocate gigabytes.
DEFAULT_MAX_PIXELS = 32 * 1024 * 1024
# The model's limit on either side (tqdm_core.inference.predictor.MAX_SIDE, not imported here to
# keep torch out of the node's start; a test keeps the two equal).
MAX_SIDE = 8192


def check_image_size(width: int, height: int, max_pixels: int, what: str = 'image') -> None:
    """Raise ImageConversionError for an empty size, or one above ``max_pixels`` or MAX_SIDE."""
    if width == 0 or height == 0:
        raise ImageConversionError(f'empty {what}: {width}x{height} pixels')
    if width * height > max_pixels:
        raise ImageConversionError(
            f'{what} size {width}x{height} exceeds the limit of {max_pixels} pixels '
            '(corrupt header? otherwise raise the max_input_pixels parameter)')
    if max(width, height) > MAX_SIDE:
        raise ImageConversionError(
            f'{what} size {width}x{height} has a side above {MAX_SIDE} pixels, the most the model '
            'takes (corrupt header? otherwise resize the stream)')


class ImageConversionError(ValueError):
    """A sensor_msgs/Image that cannot be decoded; the message says what is wrong."""


def check_image_layout(msg: Image, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> EncodingLayout:
    """Check encoding, size, step and data length of a message without touching the pixels.

    Constant time, so the subscription callback can reject malformed frames before they take
    the place of a good frame in the one-slot buffer.

    Args:
        msg: the image message.
        max_pixels: largest accepted ``width * height``.

    Returns:
        The pixel layout of the message's encoding.

    Raises:
        ImageConversionError: unsupported encoding, zero or absurd size, an odd width of YUV 4:2:2,
            a ``step`` shorter than a row or not a multiple of the channel size, big-endian
            multi-byte data, or ``data`` not ``step * height`` bytes long.
    """
    layout = ENCODINGS.get(msg.encoding)
    if layout is None:
        raise ImageConversionError(
            f'unsupported encoding {msg.encoding!r}; expected one of {sorted(ENCODINGS)} '
            '(convert the stream, e.g. with image_proc, or republish it in one of these)')
    check_image_size(msg.width, msg.height, max_pixels)
    if msg.encoding.startswith('yuv422') and msg.width % 2:
        raise ImageConversionError(
            f'{msg.encoding} image of odd width {msg.width}: two pixels share one U and V sample, '
            'so the width must be even')
    row_bytes = msg.width * layout.channels * layout.dtype.itemsize
    if msg.step < row_bytes:
        raise ImageConversionError(
            f'step {msg.step} is shorter than one row of {msg.width} {msg.encoding} pixels '
            f'({row_bytes} bytes)')
    if msg.step % layout.dtype.itemsize:
        raise ImageConversionError(
            f'step {msg.step} is not a multiple of the {layout.dtype.itemsize}-byte '
            f'{msg.encoding} channel size')
    if msg.is_bigendian and layout.dtype.itemsize > 1:
        raise ImageConversionError(
            f'{msg.encoding} data is big-endian (is_bigendian=1); publish it in little-endian byte '
            'order (the native order of x86 and ARM computers)')
    expected_bytes = msg.step * msg.height
    if len(msg.data) != expected_bytes:
        raise ImageConversionError(
            f'data has {len(msg.data)} bytes, expected step * height = {msg.step} * '
            f'{msg.height} = {expected_bytes} (truncated or inconsistent message)')
    return layout


def image_to_numpy(msg: Image, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode a sensor_msgs/Image into a numpy array.

    Args:
        msg: the image message, any encoding of :data:`ENCODINGS`.
        max_pixels: largest accepted ``width * height``.

    Returns:
        (H, W) for one-channel encodings, else (H, W, C), in the encoding's dtype and native
        byte order; channel order as in the encoding (``bgr8`` stays BGR). A read-only
        zero-copy view of ``msg.data`` when the byte order is native, a copy otherwise.

    Raises:
        ImageConversionError: see :func:`check_image_layout`.
    """
    layout = check_image_layout(msg, max_pixels=max_pixels)
    dtype = layout.dtype.newbyteorder('<')  # big-endian multi-byte data was rejected above
    itemsize = dtype.itemsize
    # Rows are `step` bytes apart; anything after the last pixel of a row is padding.
    array = np.ndarray(
        shape=(msg.height, msg.width, layout.channels), dtype=dtype, buffer=memoryview(msg.data),
        strides=(msg.step, layout.channels * itemsize, itemsize))
    if not dtype.isnative:  # a big-endian host
        array = array.astype(layout.dtype)
    else:
        array.flags.writeable = False
    return array[..., 0] if layout.channels == 1 else array


def numpy_to_image(array: np.ndarray, encoding: str, *,
                   header: Optional[Header] = None) -> Image:
    """Encode a numpy array as a sensor_msgs/Image.

    Args:
        array: (H, W) or (H, W, C) with the dtype and channel count of ``encoding``.
        encoding: an encoding of :data:`ENCODINGS`.
        header: copied into the message as is (stamp and frame_id of the input image).

    Returns:
        The message, rows packed (``step = W * C * itemsize``), native byte order.

    Raises:
        ValueError: the array does not match the encoding.
    """
    layout = ENCODINGS.get(encoding)
    if layout is None:
        raise ValueError(f'unsupported encoding {encoding!r}; expected one of {sorted(ENCODINGS)}')
    channels = 1 if array.ndim == 2 else array.shape[-1]
    if array.ndim not in (2, 3) or array.dtype != layout.dtype or channels != layout.channels:
        raise ValueError(
            f'{encoding} needs a {layout.dtype} array of shape (H, W'
            f'{")" if layout.channels == 1 else f", {layout.channels})"}, '
            f'got {array.dtype} {array.shape}')
    msg = Image()
    msg.height, msg.width = array.shape[:2]
    msg.encoding = encoding
    msg.is_bigendian = sys.byteorder == 'big'
    msg.step = msg.width * layout.channels * layout.dtype.itemsize
    msg.data = np.ascontiguousarray(array).tobytes()
    if header is not None:
        msg.header = header
    return msg


def image_to_rgb8(msg: Image, *,
                  max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[np.ndarray, str]:
    """Decode a camera image into the 3-channel uint8 array the Predictor takes.

    ``mono8`` is repeated over three channels, 16-bit images are scaled by 1/257 (full 16-bit range
    to 0..255), float images are read as intensities in [0, 1] (the convention of cv_bridge and
    RViz for ``32FC*``) and clipped to it, alpha is dropped. Colour images keep their channel
    order and say which it is, so BGR cameras cost no extra copy here (the Predictor flips).
    Bayer mosaics are demosaiced with OpenCV's bilinear method (image_proc's ``debayer: 0``; its
    default, VNG, is 8-bit only and about 60 times slower) and packed YUV 4:2:2 converted
    (BT.601), both to RGB.

    Args:
        msg: the image message, any encoding of :data:`ENCODINGS`.
        max_pixels: largest accepted ``width * height``.

    Returns:
        (image, channel_order): image (H, W, 3) uint8 C-contiguous, channel_order ``'rgb'`` or
        ``'bgr'``.

    Raises:
        ImageConversionError: see :func:`check_image_layout`, or a float image holding NaN or
            infinity.
    """
    array = image_to_numpy(msg, max_pixels=max_pixels)
    channel_order = 'bgr' if msg.encoding.startswith('bgr') else 'rgb'
    if msg.encoding in TO_RGB:
        array = cv2.cvtColor(np.ascontiguousarray(array), TO_RGB[msg.encoding])
    if array.dtype == np.float32:
        if not np.isfinite(array).all():
            raise ImageConversionError(
                f'{msg.encoding} image holds NaN or infinite values; expected intensities in '
                '[0, 1]')
        array = (np.clip(array, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return three_channel_uint8(array), channel_order


def three_channel_uint8(array: np.ndarray) -> np.ndarray:
    """Bring a decoded uint8 or uint16 camera image to the Predictor's 3-channel uint8 layout.

    Args:
        array: (H, W) grey, (H, W, 3) colour or (H, W, 4) colour + alpha; uint8, or uint16
            (scaled by 1/257 with rounding: the full 16-bit range maps onto 0..255).

    Returns:
        (H, W, 3) uint8, C-contiguous: grey repeated over the channels, alpha dropped, colour
        channels in their input order.
    """
    if array.dtype == np.uint16:
        # Round-to-nearest of v * 255 / 65535 in integers: (v + 128) // 257 for v in 0..65535.
        array = ((array.astype(np.uint32) + 128) // 257).astype(np.uint8)
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    return np.ascontiguousarray(array[:, :, :3])
