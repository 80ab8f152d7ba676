"""Tiling: running the network over images of any size in bounded memory.

The image is reflect-padded by a border (so tracks at the edge see a plausible
surrounding rather than zeros) and up to a multiple of 4 (the network pools
twice). It is then cut into equally sized windows that overlap by ``margin``
pixels on each side, at least the network's receptive field; each window's
centre (its *keep* region) is written to the output. Because every window starts
on a multiple of 4 and the margin covers the receptive field, the tiled
probability map equals the whole-image one (up to float rounding), and memory
depends on the window size, not the image size.

Coordinates are ``(row, column)``, 0-based.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from .architecture import SIZE_MULTIPLE

#: Overlap on each side of a tile, in pixels: at least the network's receptive
#: field. Counting the 3x3 convolutions and poolings, a pixel can influence
#: outputs up to about 22 px away (a one-pixel change reached 11-17 px in
#: tests/model/test_tiling.py); 32 leaves a safety margin and is a multiple of 4.
DEFAULT_MARGIN = 32
#: Default window side: large enough that the overlap costs little, small
#: enough that one window's activations stay well under 1 GiB (n = 4).
DEFAULT_WINDOW = 1024
#: Reflect padding added around the image before analysis.
DEFAULT_BORDER = 16


@dataclass(frozen=True)
class Tile:
    """One window of the padded image and the part of the output it decides.

    ``window`` and ``keep`` are (row0, row1, col0, col1) in padded coordinates;
    ``keep`` lies inside ``window``.
    """

    window: tuple[int, int, int, int]
    keep: tuple[int, int, int, int]


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def _padded_shape(shape: tuple[int, int], border: int) -> tuple[int, int]:
    return (_round_up(shape[0] + 2 * border, SIZE_MULTIPLE), _round_up(shape[1] + 2 * border, SIZE_MULTIPLE))


def pad_image(x: np.ndarray, border: int = DEFAULT_BORDER) -> tuple[np.ndarray, tuple[int, int]]:
    """Reflect-pad a 2-D image by ``border`` and up to a multiple of 4.

    Returns the padded array and the (row, col) offset of the original image in it.
    """
    h, w = x.shape
    ph, pw = _padded_shape((h, w), border)
    return np.pad(x, ((border, ph - h - border), (border, pw - w - border)), mode="reflect"), (border, border)


def count_tiles(shape: tuple[int, int], border: int = DEFAULT_BORDER, window: int = DEFAULT_WINDOW,
                margin: int = DEFAULT_MARGIN) -> int:
    """How many tiles :func:`iter_predict` reports for an image of ``shape`` padded by ``border``."""
    return len(plan_tiles(_padded_shape(shape, border), window, margin))


def _axis_spans(length: int, window: int, margin: int) -> list[tuple[int, int, int, int]]:
    """Split one axis into (window start, window end, keep start, keep end)."""
    if length <= window:
        return [(0, length, 0, length)]
    core_max = window - 2 * margin
    n = math.ceil(length / core_max)
    core = _round_up(math.ceil(length / n), SIZE_MULTIPLE)
    size = min(core + 2 * margin, length)
    spans = []
    for i in range(n):
        a, b = i * core, min((i + 1) * core, length)
        if a >= b:
            break
        start = min(max(a - margin, 0), length - size)
        spans.append((start, start + size, a, b))
    return spans


def plan_tiles(shape: tuple[int, int], window: int = DEFAULT_WINDOW, margin: int = DEFAULT_MARGIN) -> list[Tile]:
    """Windows covering a padded image of ``shape`` (both sides multiples of 4)."""
    if shape[0] % SIZE_MULTIPLE or shape[1] % SIZE_MULTIPLE:
        raise ValueError(f"padded shape {shape} must be a multiple of {SIZE_MULTIPLE}")
    if window % SIZE_MULTIPLE or margin % SIZE_MULTIPLE or window < 4 * margin:
        raise ValueError(f"window {window} and margin {margin} must be multiples of 4, window >= 4 x margin")
    rows = _axis_spans(shape[0], window, margin)
    cols = _axis_spans(shape[1], window, margin)
    return [Tile((r0, r1, c0, c1), (kr0, kr1, kc0, kc1))
            for r0, r1, kr0, kr1 in rows for c0, c1, kc0, kc1 in cols]


def iter_predict(
    padded: np.ndarray,
    predict: Callable[[np.ndarray], np.ndarray],
    out: np.ndarray,
    offset: tuple[int, int] = (0, 0),
    window: int = DEFAULT_WINDOW,
    margin: int = DEFAULT_MARGIN,
) -> Iterator[tuple[int, int]]:
    """Run ``predict`` over the tiles of ``padded``, writing into ``out``.

    ``out`` is the unpadded image's array; ``offset`` is where it starts in
    ``padded`` (as returned by :func:`pad_image`). Yields ``(tiles_done,
    tiles_total)`` after each tile, so callers can show progress and stop
    between tiles.
    """
    tiles = plan_tiles(padded.shape, window, margin)
    oy, ox = offset
    h, w = out.shape
    for i, tile in enumerate(tiles):
        r0, r1, c0, c1 = tile.window
        # The keep region clipped to the unpadded image.
        kr0, kr1 = max(tile.keep[0], oy), min(tile.keep[1], oy + h)
        kc0, kc1 = max(tile.keep[2], ox), min(tile.keep[3], ox + w)
        if kr0 < kr1 and kc0 < kc1:
            prob = predict(padded[r0:r1, c0:c1])
            out[kr0 - oy:kr1 - oy, kc0 - ox:kc1 - ox] = prob[kr0 - r0:kr1 - r0, kc0 - c0:kc1 - c0]
        yield i + 1, len(tiles)
