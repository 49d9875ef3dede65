"""Conversions between ``av.VideoFrame`` and the pipeline's RGB uint8 HxWx3 arrays.

Both directions go through libswscale (PyAV's ``reformat``), which is several times
faster than numpy colour maths. Measured at 1280x720 on a 2-core x86 VM:

- decoded yuv420p -> RGB ndarray, same size: 0.23 ms; 640x480 -> 1280x720: 1.7 ms.
- RGB ndarray -> yuv420p frame: 1.4 ms with ``VideoFrame.from_numpy_buffer`` (wraps the
  array without copying), 4.9 ms with ``from_ndarray`` (copies row by row first), and
  19 ms writing planes computed in numpy (on a quiet machine). Naming the matrix and
  range, as :func:`rgb_to_frame` does, costs about 5%: best of 15 runs 3.36 ms against
  3.19 ms unnamed, measured side by side with the machine's load average at 9; the
  way back, 0.27 ms against 0.32 ms.

Colour: a YUV frame means nothing without the matrix and range it was made with, and a
receiver that is not told guesses. Measured in Chromium 156 (Debian, no GPU) with solid
colours, read back from the page:

- H.264 without a colour description is decoded as BT.709, at 640x360 as at 1280x720:
  BT.601 frames show (10, 220, 40) as (0, 189, 40).
- H.264 that describes its colour is decoded as described. Described as BT.709, blues and
  yellows still come out wrong by up to 11 levels ((20, 40, 230) shows as (18, 39, 219)):
  Chromium's software YUV->RGB (libyuv) rounds BT.709's blue coefficient 2.112 to 2.0.
  Described as BT.601 every colour tried is within 2 levels.
- VP8 cannot describe its colour (and is BT.601 by its spec); Chromium and Firefox ESR
  153 decode it as BT.601 limited range, within 2 levels. (That Firefox has no H.264
  without Cisco's OpenH264 plugin, so its H.264 was not measured; its WebRTC receive
  path has long rendered decoded frames as BT.601 whatever they say.)
- Chromium sends its camera as BT.601 limited range and a canvas as BT.709 full range; in
  H.264 it says which, in VP8 it cannot.

So what goes out is :data:`BT601` for both codecs, and H.264 carries the description
(matrix_coefficients 6, colour_primaries 1, transfer_characteristics 1, limited range;
see :mod:`reactor.media.encoder`). Input is read as its stream describes it. Undescribed
WebRTC input is BT.601 (:data:`WEBRTC_UNDESCRIBED`); an undescribed file or camera is
read as players read it, BT.601 below 720 lines and BT.709 from there up.
"""

from __future__ import annotations

import fractions
from dataclasses import dataclass
from typing import Any

import av
import numpy as np
import numpy.typing as npt
from av.video.frame import VideoFrame
from av.video.reformatter import ColorRange, Colorspace

from reactor.errors import FrameError
from reactor.errors import FrameFormatError as FrameFormatError  # FrameError's old name here

RgbArray = npt.NDArray[np.uint8]

#: The RTP clock of every video codec (RFC 3551): packets' pts use this time base.
VIDEO_TIME_BASE = fractions.Fraction(1, 90_000)


@dataclass(frozen=True)
class YuvColour:
    """How YUV samples relate to RGB: the matrix and range, and the tags that say so.

    ``matrix`` is swscale's name for the matrix; ``colorspace``, ``primaries`` and ``trc``
    are the ISO/IEC 23091-2 code points (H.264 VUI ``matrix_coefficients``,
    ``colour_primaries``, ``transfer_characteristics``), which are also FFmpeg's
    ``AVColorSpace``, ``AVColorPrimaries`` and ``AVColorTransferCharacteristic``.
    """

    name: str
    matrix: Colorspace
    range: ColorRange
    colorspace: int
    primaries: int
    trc: int

    def __str__(self) -> str:
        return f"{self.name} {'full' if self.range == ColorRange.JPEG else 'limited'} range"


#: The BT.709 matrix, limited range (HD video's usual form).
BT709 = YuvColour("bt709", Colorspace.ITU709, ColorRange.MPEG, colorspace=1, primaries=1, trc=1)
#: The BT.601 (SMPTE 170M) matrix, limited range: what both codecs are sent as. Primaries
#: and transfer stay BT.709's, which are sRGB's: the pipeline's RGB is sRGB.
BT601 = YuvColour("bt601", Colorspace.ITU601, ColorRange.MPEG, colorspace=6, primaries=1, trc=1)

#: Lines from which an undescribed file or camera is taken as HD (BT.709).
HD_LINES = 720

#: What a WebRTC sender's video is when its stream does not describe it: BT.601, limited
#: range, at any size. VP8 is BT.601 by definition (RFC 6386 section 9.2) and cannot say
#: otherwise; aiortc (``reactor.client``) converts with BT.601 and writes no H.264 colour
#: description, at 1280x720 as below. (Chromium describes its H.264.)
WEBRTC_UNDESCRIBED = BT601

# The decoded frame's signalled AVColorSpace -> swscale's matrix. Anything else
# (unspecified, reserved, YCgCo, ...) falls back to the guess by height.
_MATRIX_OF_COLORSPACE: dict[int, Colorspace] = {
    1: Colorspace.ITU709,  # BT709
    4: Colorspace.FCC,
    5: Colorspace.ITU601,  # BT470BG
    6: Colorspace.ITU601,  # SMPTE170M
    7: Colorspace.SMPTE240M,
    9: Colorspace.BT2020,  # BT2020_NCL
    10: Colorspace.BT2020,  # BT2020_CL: swscale has only the NCL matrix
}


def source_colour(
    frame: av.VideoFrame, unsignalled: YuvColour | None = None
) -> tuple[Colorspace, ColorRange]:
    """The matrix and range to read a decoded YUV ``frame`` with.

    What its stream signals where it does. Otherwise ``unsignalled``'s, or without it
    BT.709 for ``HD_LINES`` and more and BT.601 below, limited range (full for the
    ``yuvj*`` formats, which mean full range).
    """
    matrix = _MATRIX_OF_COLORSPACE.get(int(frame.colorspace))
    if matrix is None:
        if unsignalled is not None:
            matrix = unsignalled.matrix
        else:
            matrix = Colorspace.ITU709 if frame.height >= HD_LINES else Colorspace.ITU601
    signalled = int(frame.color_range)
    if signalled in (ColorRange.MPEG, ColorRange.JPEG):
        colour_range = ColorRange(signalled)
    elif frame.format.name.startswith("yuvj"):
        colour_range = ColorRange.JPEG
    elif unsignalled is not None:
        colour_range = unsignalled.range
    else:
        colour_range = ColorRange.MPEG
    return matrix, colour_range


def frame_to_rgb(
    frame: av.VideoFrame, width: int, height: int, unsignalled: YuvColour | None = None
) -> RgbArray:
    """Convert a decoded frame of any pixel format and size to RGB uint8 ``(height, width, 3)``.

    A YUV frame is read with :func:`source_colour`'s matrix and range (``unsignalled``
    is what to assume when the frame describes none). The result is a
    fresh C-contiguous array that owns its memory, so it can be copied into a ring slot or
    kept after ``frame`` is gone.
    """
    if frame.width == width and frame.height == height and frame.format.name == "rgb24":
        out = frame.to_ndarray()
    elif frame.format.is_rgb:
        out = frame.reformat(width=width, height=height, format="rgb24").to_ndarray()
    else:
        matrix, colour_range = source_colour(frame, unsignalled)
        out = frame.reformat(
            width=width, height=height, format="rgb24",
            src_colorspace=matrix, src_color_range=colour_range,
            # RGB out is full range; swscale needs telling, or it keeps the source's.
            dst_color_range=ColorRange.JPEG,
        ).to_ndarray()
    # to_ndarray may return a view with row padding when the linesize is not 3*width.
    return np.ascontiguousarray(out)


def check_rgb(array: npt.NDArray[np.generic]) -> RgbArray:
    """Return ``array`` if it is RGB uint8 HxWx3 with even sides, else raise FrameError."""
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] != 3:
        raise FrameError(
            f"expected an RGB frame of dtype uint8 and shape (height, width, 3), "
            f"found dtype {array.dtype} and shape {array.shape}"
        )
    height, width = array.shape[:2]
    if height % 2 or width % 2 or not height or not width:
        # yuv420p subsamples chroma 2x2; encoders reject odd sizes.
        raise FrameError(f"frame width and height must be even, found {width}x{height}")
    return array  # type: ignore[return-value]


def rgb_to_frame(
    array: RgbArray,
    pts: int | None = None,
    time_base: fractions.Fraction = VIDEO_TIME_BASE,
    colour: YuvColour = BT601,
) -> av.VideoFrame:
    """Convert RGB uint8 ``(height, width, 3)`` to a yuv420p frame ready for an encoder.

    The frame is made with ``colour``'s matrix and range and tagged with all of
    ``colour``; the encoder must signal the same (or, for VP8, the receiver must assume
    it). ``array`` is only read during the call (the conversion copies), so it may be a
    view of a ring slot that is reused afterwards.
    """
    check_rgb(array)
    if not array.flags.c_contiguous:
        array = np.ascontiguousarray(array)
    frame = VideoFrame.from_numpy_buffer(array, format="rgb24").reformat(
        format="yuv420p", dst_colorspace=colour.matrix, dst_color_range=colour.range
    )
    # Tags only. Passed to reformat instead, they would ask swscale for a primaries and
    # transfer conversion from an untagged source (and cost ~1 ms at 720p).
    return tag_frame(frame, colour, pts, time_base)


def describe_colour(target: Any, colour: YuvColour) -> None:
    """Give ``target`` (a frame, or an encoder's codec context) all of ``colour``'s
    description: matrix, primaries, transfer and range."""
    target.colorspace = colour.colorspace
    target.color_primaries = colour.primaries
    target.color_trc = colour.trc
    target.color_range = colour.range


def tag_frame(
    frame: av.VideoFrame,
    colour: YuvColour,
    pts: int | None,
    time_base: fractions.Fraction = VIDEO_TIME_BASE,
) -> av.VideoFrame:
    """Tag a ``yuv420p`` frame made in ``colour`` with all of its colour description and
    stamp it with ``pts`` in ``time_base``; the pixels are not touched."""
    describe_colour(frame, colour)
    frame.pts = pts
    frame.time_base = time_base
    return frame
