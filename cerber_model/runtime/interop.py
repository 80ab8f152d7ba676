"""Exports other tools read: ImageJ/Fiji ROI sets and napari points layers.

**ImageJ/Fiji** (:func:`write_imagej_rois`, ``<stem>_rois.zip``): a ROI set the ROI Manager
opens (File > Open, or drag the zip onto Fiji), one selection per track named
``track-0001`` and so on after its ``track_id`` (zero-padded so they sort in order), drawn
as the track's ellipse: centre (``row``, ``col``), full axes ``major_axis_px`` and
``minor_axis_px`` (at least 1 px, so one-pixel tracks still show), major axis at
``orientation_deg`` counter-clockwise from the horizontal as displayed.

Each selection is an ImageJ *ellipse* (a freehand selection of subtype ELLIPSE, what Fiji's
elliptical selection tool makes): ImageJ rebuilds it from the major axis' end points and the
aspect ratio, so a rotated track opens as an editable, rotated ellipse, which ImageJ's
OVAL type (axis-aligned only) cannot be. The file also holds the ellipse's outline as a
72-vertex sub-pixel polygon, as ImageJ writes it, so readers that ignore the subtype
(roifile, older tools) see the same outline. ImageJ puts the corner of the first pixel at
(0, 0), so ImageJ's (x, y) is (col + 0.5, row + 0.5).

**napari** (:func:`write_napari_points`, ``<stem>_napari.csv``): the CSV napari's Save layer
writes for a 2-D points layer and reads back as one: ``index,axis-0,axis-1`` (index 0..N-1,
axis-0 = row, axis-1 = col; napari also puts pixel centres at integers), then further track
columns, which napari reads as the points' features (colour by intensity, say). Drop the file
onto napari's window, or ``viewer.open(path, layer_type="points")``.
"""

from __future__ import annotations

import csv
import io
import math
import struct
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .files import atomic_write
from .tracks import TRACK_COLUMNS, Tracks

ROIS_SUFFIX = "_rois.zip"
NAPARI_SUFFIX = "_napari.csv"
#: Vertices of the outline stored with each ellipse (ImageJ's EllipseRoi uses 72).
ELLIPSE_VERTICES = 72
#: Smallest axis drawn (px): a one-pixel track has axes of length 0.
MIN_AXIS_PX = 1.0
#: Outline colour of the selections (ARGB): the overlay's track colour.
ROI_COLOUR = bytes((255, 255, 220, 0))
#: Where ImageJ reads an ellipse's aspect ratio: a float over the bytes roifile calls
#: arrow_style, arrow_head_size and rounded_rect_arc_size.
_ASPECT_RATIO_OFFSET = 52
#: Track columns written after napari's own, as the points' features.
NAPARI_FEATURES = tuple(c for c in TRACK_COLUMNS if c not in ("row", "col"))


def imagej_rois_path(image_path: Path | str) -> Path:
    """Where an image's ROI set goes: ``<folder>/<stem>_rois.zip``."""
    image_path = Path(image_path)
    return image_path.with_name(image_path.stem + ROIS_SUFFIX)


def napari_points_path(image_path: Path | str) -> Path:
    """Where an image's napari points go: ``<folder>/<stem>_napari.csv`` (``_points.csv`` is the
    annotation file)."""
    image_path = Path(image_path)
    return image_path.with_name(image_path.stem + NAPARI_SUFFIX)


def track_ellipses(tracks: Tracks) -> np.ndarray:
    """Each track's ellipse in ImageJ's coordinates: (N, 5) ``x1, y1, x2, y2, aspect``, the end
    points of the major axis and minor/major (0..1)."""
    c = tracks.columns
    row, col = np.asarray(c["row"], np.float64), np.asarray(c["col"], np.float64)
    major = np.maximum(np.nan_to_num(np.asarray(c["major_axis_px"], np.float64)), MIN_AXIS_PX)
    minor = np.clip(np.nan_to_num(np.asarray(c["minor_axis_px"], np.float64)), MIN_AXIS_PX, major)
    theta = np.radians(np.asarray(c["orientation_deg"], np.float64))
    # Counter-clockwise as displayed: rows (and ImageJ's y) grow downwards.
    dx, dy = major / 2 * np.cos(theta), -major / 2 * np.sin(theta)
    x, y = col + 0.5, row + 0.5
    return np.c_[x - dx, y - dy, x + dx, y + dy, minor / major]


def _ellipse_outline(x1: float, y1: float, x2: float, y2: float, aspect: float) -> np.ndarray:
    """The (72, 2) outline (x, y) ImageJ's EllipseRoi draws, starting at (x2, y2)."""
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    major = math.hypot(x2 - x1, y2 - y1)
    alpha = math.atan2(y2 - y1, x2 - x1)
    beta = np.linspace(0.0, 2 * math.pi, ELLIPSE_VERTICES, endpoint=False)
    u, v = np.cos(beta) * major / 2, np.sin(beta) * major * aspect / 2
    return np.c_[cx + u * math.cos(alpha) - v * math.sin(alpha), cy + u * math.sin(alpha) + v * math.cos(alpha)]


def _ellipse_roi(name: str, x1: float, y1: float, x2: float, y2: float, aspect: float) -> bytes:
    from roifile import ROI_OPTIONS, ROI_SUBTYPE, ImagejRoi

    roi = ImagejRoi.frompoints(_ellipse_outline(x1, y1, x2, y2, aspect).astype(np.float32), name=name)
    roi.subtype = ROI_SUBTYPE.ELLIPSE
    roi.options = ROI_OPTIONS.SUB_PIXEL_RESOLUTION
    roi.x1, roi.y1, roi.x2, roi.y2 = x1, y1, x2, y2
    roi.stroke_color = ROI_COLOUR
    data = bytearray(roi.tobytes())
    # roifile has no float field for the aspect ratio ImageJ reads here; write it in place.
    data[_ASPECT_RATIO_OFFSET:_ASPECT_RATIO_OFFSET + 4] = struct.pack(">f", aspect)
    return bytes(data)


def roi_names(tracks: Tracks) -> list[str]:
    """The selection names: ``track-0001`` ... after ``track_id``, padded to at least 4 digits."""
    ids = np.asarray(tracks.columns["track_id"], dtype=np.int64)
    width = max(4, len(str(int(ids.max(initial=0)))))
    return [f"track-{int(i):0{width}d}" for i in ids]


def write_imagej_rois(tracks: Tracks, path: Path | str) -> Path:
    """Write the tracks as an ImageJ/Fiji ROI set (a zip of ``<name>.roi``), one ellipse per track
    in the table's order, atomically. No tracks give an empty set. Returns the path.

    The zip's entries carry a fixed date (1980-01-01), so the same tracks give the same bytes
    whenever and wherever they are written (a local run and a cluster's workers alike)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, ellipse in zip(roi_names(tracks), track_ellipses(tracks), strict=True):
            entry = zipfile.ZipInfo(name + ".roi", date_time=(1980, 1, 1, 0, 0, 0))
            entry.compress_type = zipfile.ZIP_DEFLATED
            entry.external_attr = 0o644 << 16  # rw-r--r-- for unzip
            zf.writestr(entry, _ellipse_roi(name, *(float(v) for v in ellipse)))
    data = buffer.getvalue()
    return atomic_write(path, lambda fh: fh.write(data))


def write_napari_points(tracks: Tracks, path: Path | str, features: Sequence[str] = NAPARI_FEATURES) -> Path:
    """Write the track centres as a napari points CSV (atomically): ``index,axis-0,axis-1`` and
    then the ``features`` columns of the track table. Returns the path."""
    unknown = [f for f in features if f not in tracks.columns]
    if unknown:
        raise ValueError(f"no track column {', '.join(unknown)}; columns are {', '.join(tracks.columns)}")
    columns = [np.asarray(tracks.columns["row"]), np.asarray(tracks.columns["col"]),
               *(np.asarray(tracks.columns[f]) for f in features)]

    def write(fh):
        text = io.TextIOWrapper(fh, encoding="utf-8", newline="")
        out = csv.writer(text)
        out.writerow(["index", "axis-0", "axis-1", *features])
        for i in range(len(tracks)):
            out.writerow([i, *(_cell(c[i]) for c in columns)])
        text.flush()
        text.detach()

    return atomic_write(path, write)


def _cell(value) -> str:
    if isinstance(value, (float, np.floating)):
        return repr(float(value))  # full precision; NaN as "nan", which napari reads as a number
    return str(value)
