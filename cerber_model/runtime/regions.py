"""Regions: the usable area of a detector, as include and exclude polygons.

Scratches, crystal edges and dust make parts of an image unusable. A :class:`Regions` holds
polygons of (row, col) vertices (0-based, pixel centres at integers, as in the track table):
the usable area is the pixels inside any ``include`` polygon (the whole image when there are
none), less the pixels inside any ``exclude`` polygon. A pixel is inside a polygon when its
centre lies inside or on the polygon's edge. Tracks count when the pixel their centre falls in
is usable (:func:`filter_tracks`); a fluence divides that count by :meth:`Regions.area_px`, the
number of usable pixels, not by the whole image.

The file Cerber reads and writes, ``<stem>_regions.json`` beside the image
(:func:`regions_path_beside`)::

    {"format": "cerber-regions", "version": 1,
     "include": [[[r, c], [r, c], [r, c], ...], ...],
     "exclude": [[[r, c], [r, c], [r, c], ...], ...]}

Each polygon is a list of at least 3 ``[row, col]`` pairs of numbers; the polygon closes by
itself (repeating the first vertex is allowed). ``include`` and ``exclude`` may be left out
(empty); other keys are ignored.

:func:`load_regions` also reads ImageJ/Fiji selections: a ``.roi`` file or a ROI set ``.zip``
of rectangles, ovals, polygons, freehand, traced and ellipse selections. They become include
polygons, except those whose name starts with ``exclude`` (any case), which become exclude
polygons. ImageJ puts the corner of the first pixel at (0, 0), so ImageJ's (x, y) is
(col + 0.5, row + 0.5) here.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from .files import FileProblem, atomic_write
from .tracks import Tracks

FORMAT = "cerber-regions"
VERSION = 1
REGIONS_SUFFIX = "_regions.json"
#: What :func:`load_regions` reads besides Cerber's JSON: ImageJ selections and ROI sets.
IMAGEJ_SUFFIXES = (".roi", ".zip")
#: ImageJ selections whose name starts with this (any case) are exclude regions.
EXCLUDE_PREFIX = "exclude"
#: Vertices of the polygon that stands for an ImageJ oval (its outline is then within
#: about a hundredth of the radius of the true ellipse).
OVAL_VERTICES = 72


class RegionsError(FileProblem, ValueError):
    """A regions file that cannot be used; the message names the file, what is wrong and the fix."""


def _polygon(vertices: Any) -> np.ndarray:
    """``vertices`` as an (N, 2) float array of (row, col), N >= 3, all finite; ValueError otherwise."""
    try:
        poly = np.asarray(vertices, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"vertices must be [row, col] pairs of numbers ({exc})") from exc
    if poly.ndim != 2 or poly.shape[1] != 2:
        raise ValueError(f"vertices must be [row, col] pairs, got an array of shape {poly.shape}")
    if len(poly) > 3 and np.array_equal(poly[0], poly[-1]):
        poly = poly[:-1]  # closed explicitly
    if len(poly) < 3:
        raise ValueError(f"a polygon needs at least 3 vertices, this one has {len(poly)}")
    if not np.isfinite(poly).all():
        raise ValueError("vertices must be finite numbers")
    return poly


@dataclass
class Regions:
    """Include and exclude polygons, each an (N, 2) float array of (row, col) vertices.

    No include polygon means the whole image; exclude polygons are taken out of it.
    """

    include: list[np.ndarray] = field(default_factory=list)
    exclude: list[np.ndarray] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.include = [_polygon(p) for p in self.include]
        self.exclude = [_polygon(p) for p in self.exclude]

    @property
    def is_empty(self) -> bool:
        """True when there are no polygons at all: the whole image is usable."""
        return not self.include and not self.exclude

    def mask(self, shape: tuple[int, int]) -> np.ndarray:
        """The usable pixels of an image of ``shape`` (rows, cols): a bool array of that shape.

        Parts of polygons outside the image are ignored.
        """
        from skimage.draw import polygon2mask

        shape = (int(shape[0]), int(shape[1]))
        if self.include:
            usable = np.zeros(shape, dtype=bool)
            for poly in self.include:
                usable |= polygon2mask(shape, poly)
        else:
            usable = np.ones(shape, dtype=bool)
        for poly in self.exclude:
            usable &= ~polygon2mask(shape, poly)
        return usable

    def area_px(self, shape: tuple[int, int]) -> float:
        """The number of usable pixels in an image of ``shape`` (rows, cols)."""
        if self.is_empty:
            return float(shape[0] * shape[1])
        return float(np.count_nonzero(self.mask(shape)))

    def area_mm2(self, shape: tuple[int, int], pixel_size_um: float) -> float:
        """The usable area in mm², for square pixels of ``pixel_size_um`` µm."""
        if not pixel_size_um > 0:
            raise ValueError(f"pixel size must be positive, got {pixel_size_um}")
        return self.area_px(shape) * (pixel_size_um * 1e-3) ** 2

    def contains(self, rows, cols, shape: tuple[int, int], mask: np.ndarray | None = None) -> np.ndarray:
        """Whether each point (row, col) lies in a usable pixel: a bool array like ``rows``.

        Points are rounded to the pixel whose centre is nearest (halves upwards); points
        outside the image are not contained. ``mask``: :meth:`mask` of ``shape``, where already made.
        """
        r = np.floor(np.asarray(rows, dtype=np.float64) + 0.5)
        c = np.floor(np.asarray(cols, dtype=np.float64) + 0.5)
        inside = (r >= 0) & (r < shape[0]) & (c >= 0) & (c < shape[1])  # NaN compares False
        out = np.zeros(r.shape, dtype=bool)
        if self.is_empty:
            return inside
        if inside.any():
            usable = self.mask(shape) if mask is None else mask
            out[inside] = usable[r[inside].astype(np.intp), c[inside].astype(np.intp)]
        return out

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (see the module's docstring)."""
        return {"format": FORMAT, "version": VERSION,
                "include": [p.tolist() for p in self.include],
                "exclude": [p.tolist() for p in self.exclude]}


def filter_tracks(tracks: Tracks, regions: Regions) -> Tracks:
    """The tracks whose centre (``row``, ``col``) lies in a usable pixel of ``regions``.

    Track ids are kept as they are (so they may have gaps); the label image keeps only the
    kept tracks. Threshold, image shape and pixel size are kept. Note that
    ``Tracks.density_per_mm2`` still divides by the whole image: use
    :func:`density_per_mm2` for the density over the usable area. With empty regions the
    tracks are returned as they are.
    """
    if regions.is_empty:
        return tracks
    keep = regions.contains(tracks.columns["row"], tracks.columns["col"], tracks.image_shape)
    columns = {name: np.asarray(values)[keep] for name, values in tracks.columns.items()}
    ids = np.asarray(tracks.columns["track_id"], dtype=np.int64)
    top = int(max(ids.max(initial=0), tracks.labels.max(initial=0)))
    lut = np.zeros(top + 1, dtype=tracks.labels.dtype)
    lut[ids[keep]] = ids[keep]
    labels = np.take(lut, tracks.labels)
    coarse = int(np.count_nonzero(keep[len(keep) - tracks.coarse_count:])) if tracks.coarse_count else 0
    return replace(tracks, columns=columns, labels=labels, coarse_count=coarse)


def density_per_mm2(tracks: Tracks, regions: Regions) -> float | None:
    """Tracks per mm² of usable area (``tracks`` already filtered by :func:`filter_tracks`),
    or None without a pixel size or when no area is usable."""
    if not tracks.pixel_size_um:
        return None
    area = regions.area_mm2(tracks.image_shape, tracks.pixel_size_um)
    return tracks.count / area if area > 0 else None


def regions_path_beside(image_path: Path | str) -> Path:
    """Where an image's regions are kept: ``<folder>/<stem>_regions.json``."""
    image_path = Path(image_path)
    return image_path.with_name(image_path.stem + REGIONS_SUFFIX)


def find_regions_beside(image_path: Path | str) -> Path | None:
    """The regions file of an image, if there is one: ``<stem>_regions.json``, else an ImageJ
    ``<stem>_regions.zip`` or ``<stem>_regions.roi`` beside it; None when there is none."""
    json_path = regions_path_beside(image_path)
    for candidate in (json_path, *(json_path.with_suffix(s) for s in (".zip", ".roi"))):
        if candidate.is_file():
            return candidate
    return None


def save_regions(regions: Regions, path: Path | str) -> Path:
    """Write ``regions`` as Cerber's JSON (atomically). Returns the path."""
    text = json.dumps(regions.to_dict(), indent=1) + "\n"
    return atomic_write(path, lambda fh: fh.write(text.encode("utf-8")))


def load_regions(path: Path | str) -> Regions:
    """Read regions from Cerber's JSON, or from an ImageJ ``.roi`` file or ROI set ``.zip``.

    Raises :class:`RegionsError` naming the file, what is wrong and what to do.
    """
    path = Path(path)
    if path.suffix.lower() in IMAGEJ_SUFFIXES:
        return _load_imagej(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise RegionsError(path, f"cannot be read ({exc}).") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RegionsError(path, f"is not JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}).",
                           _FIX) from exc
    return regions_from_dict(data, path)


_FIX = ('A regions file looks like {"format": "cerber-regions", "version": 1, '
        '"include": [[[row, col], [row, col], [row, col]]], "exclude": []}.')


def regions_from_dict(data: Any, path: Path | str = "<regions>") -> Regions:
    """Regions from their JSON form (as :meth:`Regions.to_dict` gives); ``path`` names the
    source in errors (:class:`RegionsError`)."""
    if not isinstance(data, dict):
        raise RegionsError(path, f"holds a JSON {type(data).__name__}, not an object.", _FIX)
    if data.get("format") != FORMAT:
        raise RegionsError(path, f"is not a Cerber regions file (format {data.get('format')!r}, "
                                 f"expected {FORMAT!r}).", _FIX)
    version = data.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise RegionsError(path, f"has no valid version (found {version!r}).", _FIX)
    if version > VERSION:
        raise RegionsError(path, f"is version {version}; this Cerber reads up to version {VERSION}.",
                           "Update Cerber to read it.")
    polygons: dict[str, list[np.ndarray]] = {}
    for key in ("include", "exclude"):
        items = data.get(key, [])
        if not isinstance(items, list):
            raise RegionsError(path, f"'{key}' must be a list of polygons, found a {type(items).__name__}.", _FIX)
        polygons[key] = []
        for i, item in enumerate(items):
            bad = None
            if not isinstance(item, list) or not all(
                    isinstance(v, list) and len(v) == 2
                    and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v) for v in item):
                bad = "must be a list of [row, col] pairs of numbers"
            else:
                try:
                    polygons[key].append(_polygon(item))
                except ValueError as exc:
                    bad = str(exc)
            if bad:
                raise RegionsError(path, f"{key} polygon {i + 1}: {bad}.", _FIX)
    return Regions(polygons["include"], polygons["exclude"])


def _load_imagej(path: Path) -> Regions:
    import roifile

    fix = ("Save area selections (rectangle, oval, polygon, freehand) from Fiji's ROI Manager "
           "(More > Save...), or draw the regions in Cerber.")
    try:
        found = roifile.roiread(path)
    except Exception as exc:  # roifile raises many kinds on damaged files
        raise RegionsError(path, f"is not an ImageJ ROI file or ROI set ({exc}).", fix) from exc
    rois = found if isinstance(found, list) else [found]
    if not rois:
        raise RegionsError(path, "holds no selections.", fix)
    include: list[np.ndarray] = []
    exclude: list[np.ndarray] = []
    for i, roi in enumerate(rois):
        name = roi.name or f"selection {i + 1}"
        try:
            xy = _imagej_outline(roi)
            poly = _polygon(xy[:, ::-1] - 0.5)  # (x, y) -> (row, col), corner -> centre convention
        except ValueError as exc:
            raise RegionsError(path, f"selection {name!r}: {exc}.", fix) from exc
        (exclude if name.lower().startswith(EXCLUDE_PREFIX) else include).append(poly)
    return Regions(include, exclude)


def _imagej_outline(roi) -> np.ndarray:
    """The outline of an ImageJ area selection as (N, 2) (x, y) in ImageJ's coordinates."""
    from roifile import ROI_SUBTYPE, ROI_TYPE

    kind = roi.roitype
    if roi.composite or roi.multi_coordinates is not None:
        raise ValueError("is a composite selection (several parts or holes), which is not read; "
                         "split it in Fiji (Edit > Selection > Split) into separate selections")
    if kind in (ROI_TYPE.RECT, ROI_TYPE.OVAL):
        if roi.subpixelrect:
            x0, y0, x1, y1 = roi.xd, roi.yd, roi.xd + roi.widthd, roi.yd + roi.heightd
        else:
            x0, y0, x1, y1 = roi.left, roi.top, roi.right, roi.bottom
        if not (x1 > x0 and y1 > y0):
            raise ValueError("is empty (zero width or height)")
        if kind == ROI_TYPE.RECT:
            return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], dtype=np.float64)
        t = np.linspace(0.0, 2.0 * math.pi, OVAL_VERTICES, endpoint=False)
        return np.c_[(x0 + x1) / 2 + (x1 - x0) / 2 * np.cos(t), (y0 + y1) / 2 + (y1 - y0) / 2 * np.sin(t)]
    if kind in (ROI_TYPE.POLYGON, ROI_TYPE.FREEHAND, ROI_TYPE.TRACED) or roi.subtype == ROI_SUBTYPE.ELLIPSE:
        return np.asarray(roi.coordinates(), dtype=np.float64)
    raise ValueError(f"is a {kind.name.lower()} selection, not an area; only rectangles, ovals, "
                     "polygons, freehand, traced and ellipse selections are read")
