"""sensor_msgs/CompressedImage (JPEG, PNG) <-> numpy, with the checks a node needs.

image_transport's ``compressed`` plugin publishes a camera ``<topic>`` as ``<topic>/compressed``
and writes ``format`` as ``"<raw encoding>; <jpeg|png> compressed <encoding of the data>"``, e.g.
``"rgb8; jpeg compressed bgr8"``; older drivers write only ``"jpeg"`` or ``"png"``. The encoder
stores the array it is given as if it were BGR, so the channel order of the decoded array is the
one the data encoding names: BGR unless it names RGB (``"rgb8; png compressed rgb8"``: the
publisher encoded RGB bytes as they were), which is how image_transport's subscriber reads it.
The plugin compresses images of other encodings (Bayer mosaics, depth) too, writing only
``"<encoding>; png compressed "``: those are refused, as their raw form is.

The frame size is read from the PNG ``IHDR`` chunk or the JPEG frame header (``SOF``) before a
pixel is decoded (:func:`check_compressed_layout`, a few byte reads), so the subscription callback
can reject a frame whose header declares an absurd size before OpenCV allocates it, and a stream
that is cut short (no JPEG end-of-image marker after the image data, no PNG ``IEND`` chunk) is
rejected instead of being decoded into a half-grey picture. Bytes after the end (padding of a
fixed-size capture buffer) are allowed, as decoders ignore them.
"""

from typing import NamedTuple

import cv2
import numpy as np
from sensor_msgs.msg import CompressedImage

from tqdm_ros.image_conversion import (
    check_image_size, DEFAULT_MAX_PIXELS, ImageConversionError, three_channel_uint8, TO_RGB)

CODECS = ('jpeg', 'png')
# Bytes per pixel of the largest raw image a JPEG or PNG can hold (16-bit RGBA): a payload longer
# than max_pixels times this cannot be a legitimate frame.
MAX_BYTES_PER_PIXEL = 8

_JPEG_START = b'\xff\xd8\xff'
_JPEG_END = b'\xff\xd9'
_PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'
_PNG_END = b'IEND\xaeB`\x82'  # the IEND chunk type and its CRC close every PNG stream
# JPEG start-of-frame markers (baseline, progressive, lossless, arithmetic); C4, C8 and CC are
# tables and reserved codes, not frames.
_JPEG_FRAME_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_JPEG_STANDALONE_MARKERS = frozenset([0x01, *range(0xD0, 0xD8)])  # no length field
_JPEG_SCAN_OR_END = frozenset([0xDA, 0xD9])
_FORMAT_CODECS = {'jpeg': 'jpeg', 'jpg': 'jpeg', 'png': 'png'}
# Encodings of camera frames, the ones a format may name before ';': colour, grey and Bayer.
BAYER_ENCODINGS = frozenset(name for name in TO_RGB if name.startswith('bayer_'))
CAMERA_ENCODINGS = frozenset(
    ['rgb8', 'bgr8', 'rgba8', 'bgra8', 'rgb16', 'bgr16', 'rgba16', 'bgra16', 'mono8', 'mono16',
     *BAYER_ENCODINGS])


class CompressedLayout(NamedTuple):
    """What the header of a compressed frame declares."""

    codec: str  # 'jpeg' or 'png'
    width: int
    height: int


class CompressedFormat(NamedTuple):
    """What a ``format`` string says; empty fields where it says nothing (``"jpeg"``)."""

    encoding: str  # the raw encoding before compression, e.g. 'rgb8'
    codec: str  # 'jpeg', 'png' or ''
    channel_order: str  # of the decoded colour array: 'rgb' or 'bgr'
    mosaic: str = ''  # the Bayer encoding of data that hold a mosaic to demosaic ('' otherwise)


def read_format(image_format: str) -> CompressedFormat:
    """Parse a CompressedImage ``format`` string.

    Raises:
        ImageConversionError: a depth stream (``compressedDepth``), an encoding before ';' that is
            not a colour, grey or Bayer camera image (depth, YUV), or a codec other than JPEG
            and PNG (``theora``, ``h264``, ...).
    """
    text = image_format.strip()
    if 'compresseddepth' in text.lower():
        raise ImageConversionError(
            f'format {image_format!r} is a compressedDepth stream (a depth image), not a '
            'camera image; subscribe to the colour or grey camera topic')
    # "rgb8; jpeg compressed bgr8" -> encoding "rgb8", words ["jpeg", "compressed", "bgr8"].
    encoding, _, description = text.rpartition(';')
    encoding = encoding.strip()
    if encoding and encoding.lower() not in CAMERA_ENCODINGS:
        raise ImageConversionError(
            f'format {image_format!r}: the compressed image is {encoding}, not a colour, grey or '
            f'Bayer camera image (expected one of {sorted(CAMERA_ENCODINGS)}); subscribe to the '
            'colour camera topic or republish it')
    words = description.lower().split()
    if not words:
        return CompressedFormat(encoding, '', 'bgr')
    codec = _FORMAT_CODECS.get(words[0])
    if codec is None:
        raise ImageConversionError(
            f'unsupported compressed format {image_format!r}; expected JPEG or PNG as '
            "image_transport's compressed plugin writes them, e.g. 'rgb8; jpeg compressed "
            "bgr8' (republish other codecs as sensor_msgs/Image)")
    data_encoding = words[-1] if len(words) >= 3 and words[1] == 'compressed' else ''
    if encoding.lower() in BAYER_ENCODINGS:
        # image_transport compresses a mosaic as it is into a PNG ('bayer_rggb8; png compressed ')
        # and, with jpeg_compress_bayer, into a JPEG ('...; jpeg compressed bayer_rggb8'); its
        # other JPEGs hold the mosaic already converted to grey ('...; jpeg compressed mono8').
        mosaic = '' if data_encoding.startswith('mono') else encoding.lower()
        return CompressedFormat(encoding, codec, 'rgb', mosaic)
    return CompressedFormat(encoding, codec, 'rgb' if data_encoding.startswith('rgb') else 'bgr')


def _jpeg_header(data: memoryview) -> tuple[int, int, int]:
    """(width, height, offset of the image data) from the JPEG segments before the first scan.

    Segments are skipped by their length, so an EXIF thumbnail (a whole JPEG inside APP1, with its
    own frame header and end marker) is never mistaken for the image.
    """
    position, size, frame = 2, len(data), None
    while position + 4 <= size:
        if data[position] != 0xFF:
            break
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte before a marker
            position += 1
            continue
        if marker in _JPEG_STANDALONE_MARKERS:
            position += 2
            continue
        if marker in _JPEG_SCAN_OR_END:
            if marker == 0xDA and frame is not None:
                return (*frame, position)
            break
        if marker in _JPEG_FRAME_MARKERS and frame is None and position + 9 <= size:
            # Segment: FF Cn, length (2), precision (1), height (2), width (2), big-endian.
            frame = (data[position + 7] << 8 | data[position + 8],
                     data[position + 5] << 8 | data[position + 6])
        position += 2 + (data[position + 2] << 8 | data[position + 3])
    raise ImageConversionError(
        'JPEG data has no readable frame header (SOF) and image data (SOS): corrupt or '
        'truncated')


def _png_size(data: memoryview) -> tuple[int, int]:
    """(width, height) from the PNG IHDR chunk, the first chunk of every PNG."""
    if len(data) < 24 or bytes(data[12:16]) != b'IHDR':
        raise ImageConversionError('PNG data has no IHDR header chunk: corrupt or truncated')
    return (int.from_bytes(data[16:20], 'big'), int.from_bytes(data[20:24], 'big'))


def check_compressed_layout(msg: CompressedImage, *,
                            max_pixels: int = DEFAULT_MAX_PIXELS) -> CompressedLayout:
    """Check a compressed frame's format, codec, declared size and completeness, not its pixels.

    Args:
        msg: the compressed message (rclpy or rosbags).
        max_pixels: largest accepted ``width * height``; the payload may hold at most
            ``max_pixels * MAX_BYTES_PER_PIXEL`` bytes.

    Returns:
        The codec and the size the stream's header declares.

    Raises:
        ImageConversionError: an unsupported or depth format, data that is neither JPEG nor PNG
            or not the codec the format names, an empty, oversized or truncated payload, or a
            declared size of zero or above ``max_pixels``.
    """
    named = read_format(msg.format).codec
    data = memoryview(msg.data).cast('B')
    if len(data) == 0:
        raise ImageConversionError('compressed image with no data')
    if len(data) > max_pixels * MAX_BYTES_PER_PIXEL:
        raise ImageConversionError(
            f'compressed payload of {len(data)} bytes is larger than any image within the '
            f'limit of {max_pixels} pixels could be (corrupt message? otherwise raise the '
            'max_input_pixels parameter)')
    head = bytes(data[:8])
    if head.startswith(_JPEG_START):
        codec = 'jpeg'
    elif head == _PNG_SIGNATURE:
        codec = 'png'
    else:
        raise ImageConversionError(
            f'compressed data starts with {head[:4].hex(" ")}, which is neither a JPEG nor a '
            f'PNG stream (format {msg.format!r})')
    if named and named != codec:
        raise ImageConversionError(
            f'format {msg.format!r} names {named} but the data is a {codec} stream; fix the '
            'publisher, the format field must describe the data')
    if codec == 'jpeg':
        width, height, image_data_start = _jpeg_header(data)
    else:
        (width, height), image_data_start = _png_size(data), 33  # after the IHDR chunk
    check_image_size(width, height, max_pixels, what=f'{codec} image')
    # Inside JPEG image data 0xFF is always followed by 0x00 or a restart marker, so the
    # end-of-image marker cannot occur there by chance; a PNG's IEND chunk carries a fixed CRC.
    if bytes(data).rfind(_JPEG_END if codec == 'jpeg' else _PNG_END) < image_data_start:
        raise ImageConversionError(
            f'{codec} data of {len(data)} bytes has no end marker: truncated in transit')
    return CompressedLayout(codec, width, height)


def compressed_to_rgb8(msg: CompressedImage, *,
                       max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[np.ndarray, str]:
    """Decode a JPEG or PNG camera frame into the 3-channel uint8 array the Predictor takes.

    Grey frames are repeated over three channels, 16-bit PNGs scaled by 1/257, alpha dropped, a
    Bayer mosaic (as image_transport compresses one) demosaiced to RGB.
    EXIF orientation is ignored: a camera frame keeps the pixel layout it was encoded with.

    Args:
        msg: the compressed message (rclpy or rosbags).
        max_pixels: largest accepted ``width * height``.

    Returns:
        (image, channel_order): image (H, W, 3) uint8 C-contiguous; channel_order as the format's
        data encoding names it for colour streams (``'bgr'`` unless it names RGB; OpenCV's
        order for a standard file), ``'rgb'`` for grey ones (all channels equal) and mosaics.

    Raises:
        ImageConversionError: see :func:`check_compressed_layout`, or data OpenCV cannot
            decode, or a decoded size that differs from the header's.
    """
    layout = check_compressed_layout(msg, max_pixels=max_pixels)
    image_format = read_format(msg.format)
    try:
        decoded = cv2.imdecode(np.frombuffer(msg.data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error as error:  # OpenCV checks some header fields outside its decoders
        raise ImageConversionError(
            f'{layout.codec} data of {len(msg.data)} bytes could not be decoded: {error}') from error
    if decoded is None:
        raise ImageConversionError(
            f'{layout.codec} data of {len(msg.data)} bytes could not be decoded (corrupt)')
    if decoded.shape[:2] != (layout.height, layout.width):
        raise ImageConversionError(
            f'{layout.codec} data decoded to {decoded.shape[1]}x{decoded.shape[0]} pixels but '
            f'its header declares {layout.width}x{layout.height}')
    if image_format.mosaic:
        if decoded.ndim != 2:
            raise ImageConversionError(
                f'format {msg.format!r} names a {image_format.mosaic} mosaic, but the '
                f'{layout.codec} data hold {decoded.shape[2]} channels instead of one')
        return three_channel_uint8(cv2.cvtColor(decoded, TO_RGB[image_format.mosaic])), 'rgb'
    return three_channel_uint8(decoded), 'rgb' if decoded.ndim == 2 else image_format.channel_order


def compress_rgb8(image: np.ndarray, codec: str, *, jpeg_quality: int = 95,
                  png_level: int = 3) -> tuple[bytes, str]:
    """Encode an RGB frame as image_transport's compressed plugin does.

    Args:
        image: (H, W, 3) uint8 RGB.
        codec: ``'jpeg'`` or ``'png'``.
        jpeg_quality: JPEG quality 1..100 (image_transport's default is 95).
        png_level: PNG compression level 0..9 (image_transport's default is 3); PNG is lossless
            at every level.

    Returns:
        (data, format): the encoded stream and the ``format`` string of the message, e.g.
        ``'rgb8; png compressed bgr8'``.

    Raises:
        ValueError: an unknown codec or an image that is not (H, W, 3) uint8.
    """
    if codec not in CODECS:
        raise ValueError(f'codec must be one of {CODECS}, got {codec!r}')
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f'expected an (H, W, 3) uint8 RGB image, got {image.dtype} {image.shape}')
    parameters = ([cv2.IMWRITE_JPEG_QUALITY, jpeg_quality] if codec == 'jpeg'
                  else [cv2.IMWRITE_PNG_COMPRESSION, png_level])
    encoded, data = cv2.imencode('.jpg' if codec == 'jpeg' else '.png',
                                 np.ascontiguousarray(image[:, :, ::-1]), parameters)
    if not encoded:
        raise ValueError(f'OpenCV could not encode a {image.shape[1]}x{image.shape[0]} {codec}')
    return data.tobytes(), f'rgb8; {codec} compressed bgr8'
