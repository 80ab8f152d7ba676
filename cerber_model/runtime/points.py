"""Point annotations: spot centres in a CSV, as people click them and as training reads them.

A points file is a CSV with a header and the columns ``row,col`` (0-based, pixel
centres at integers, as in the track table) and optionally ``sd_px`` (the spot's
size, used to render its mask). Other columns are ignored, so a track table is a
valid points file. :func:`read_points` checks every line and names the file and
line of each problem; :func:`write_points` writes atomically; :func:`render_mask`
turns points into the 0/255 mask that training uses.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: Mask radius (px) of a point without an ``sd_px`` (a spot of SD ~2 px, marked out to 1 SD as the
#: generator marks its tracks, plus the pixel the centre falls in).
DEFAULT_POINT_RADIUS = 2.0
#: Points closer than this (px) are the same point typed twice.
DUPLICATE_DISTANCE = 0.5
POINTS_SUFFIX = "_points.csv"


class PointsError(ValueError):
    """A points file that cannot be used; ``problems`` lists ``(line, what)`` (line 0: the whole file).
    The message names the file and line of each, as ``file:line: what``."""

    def __init__(self, path: Path, problems: list[tuple[int, str]]):
        self.path = path
        self.problems = problems
        shown = [f"{path}:{line}: {what}" if line else f"{path}: {what}" for line, what in problems[:10]]
        if len(problems) > 10:
            shown.append(f"... and {len(problems) - 10} more")
        super().__init__("\n".join(shown))

    def __reduce__(self):
        return type(self), (self.path, self.problems)


@dataclass(frozen=True)
class Points:
    """Spot centres (N, 2) as (row, col), and their SD in px (NaN where not given)."""

    centres: np.ndarray
    sd_px: np.ndarray

    def __len__(self) -> int:
        return len(self.centres)

    @classmethod
    def of(cls, centres, sd_px=None) -> Points:
        c = np.asarray(centres, dtype=np.float64).reshape(-1, 2)
        sd = np.full(len(c), np.nan) if sd_px is None else np.asarray(sd_px, dtype=np.float64).reshape(-1)
        return cls(c, sd)

    def crop(self, rows: slice, cols: slice) -> Points:
        """The points inside the crop ``image[rows, cols]`` of their image (pixel (r, c) covers
        r - 0.5 .. r + 0.5), in the crop's coordinates."""
        r0, r1, c0, c1 = rows.start, rows.stop, cols.start, cols.stop
        r, c = self.centres[:, 0], self.centres[:, 1]
        inside = (r >= r0 - 0.5) & (r < r1 - 0.5) & (c >= c0 - 0.5) & (c < c1 - 0.5)
        return Points(self.centres[inside] - [r0, c0], self.sd_px[inside])


def points_beside(image: Path) -> Path:
    """Where the app keeps an image's points: ``<stem>_points.csv`` beside it."""
    return image.with_name(image.stem + POINTS_SUFFIX)


def read_points(path: Path | str, shape: tuple[int, int] | None = None) -> Points:
    """Read and check a points file; raises :class:`PointsError` naming every bad line.

    With ``shape`` (rows, cols), points must lie inside the image (-0.5 .. size - 0.5).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise PointsError(path, [(0, f"cannot be read ({exc})")]) from exc
    reader = csv.DictReader(io.StringIO(text))
    columns = [c.strip() for c in reader.fieldnames or []]
    if "row" not in columns or "col" not in columns:
        raise PointsError(path, [(1, f"needs the columns row,col (found: {','.join(columns) or 'nothing'}); "
                                     "0-based pixel coordinates, one point per line")])
    problems: list[tuple[int, str]] = []
    rows: list[tuple[float, float, float]] = []
    lines: list[int] = []
    for line, record in enumerate(reader, start=2):
        record = {(k or "").strip(): (v or "").strip() for k, v in record.items()}
        if not any(record.values()):
            continue
        try:
            r, c = float(record["row"]), float(record["col"])
            sd = float(record["sd_px"]) if record.get("sd_px") else math.nan
        except ValueError:
            sd_text = f", sd_px {record.get('sd_px')!r}" if record.get("sd_px") else ""
            problems.append((line, f"not numeric (row {record.get('row')!r}, col {record.get('col')!r}{sd_text})"))
            continue
        if not (math.isfinite(r) and math.isfinite(c)):
            problems.append((line, "row and col must be finite numbers"))
            continue
        if shape is not None and not (-0.5 <= r <= shape[0] - 0.5 and -0.5 <= c <= shape[1] - 0.5):
            problems.append((line, f"({r:g}, {c:g}) is outside the {shape[1]} x {shape[0]} px image "
                                   f"(rows 0..{shape[0] - 1}, columns 0..{shape[1] - 1})"))
            continue
        if not math.isnan(sd) and not sd > 0:
            problems.append((line, f"sd_px must be positive, got {sd:g}"))
            continue
        rows.append((r, c, sd))
        lines.append(line)
    points = np.array(rows, dtype=np.float64).reshape(-1, 3)
    if len(points) > 1:
        from scipy.spatial import cKDTree

        for i, j in sorted(cKDTree(points[:, :2]).query_pairs(DUPLICATE_DISTANCE)):
            problems.append((lines[j], f"duplicates line {lines[i]} ({points[j, 0]:g}, {points[j, 1]:g}); "
                                       "delete one of them"))
    if problems:
        raise PointsError(path, problems)
    return Points(points[:, :2].copy(), points[:, 2].copy())


def points_csv(points: Points) -> bytes:
    """The CSV text of ``points`` (``sd_px`` only where some point has one)."""
    with_sd = bool(np.isfinite(points.sd_px).any())
    lines = ["row,col,sd_px" if with_sd else "row,col"]
    for (r, c), sd in zip(points.centres, points.sd_px, strict=True):
        sd_text = (f",{sd:.2f}" if math.isfinite(sd) else ",") if with_sd else ""
        lines.append(f"{r:.2f},{c:.2f}{sd_text}")
    return ("\n".join(lines) + "\n").encode()


def write_points(points: Points, path: Path | str) -> Path:
    """Write ``points`` as CSV, atomically (a crash leaves the old file or the new one)."""
    from .files import atomic_write

    return atomic_write(path, lambda fh: fh.write(points_csv(points)))


def render_mask(shape: tuple[int, int], points: Points, radius: float = DEFAULT_POINT_RADIUS) -> np.ndarray:
    """A 0/255 uint8 mask with a disc at every point: radius ``sd_px`` where given (the 1-SD
    ellipse the generator marks), else ``radius``; never under 1 px, so each disc has pixels."""
    mask = np.zeros(shape, dtype=np.uint8)
    for (r, c), sd in zip(points.centres, points.sd_px, strict=True):
        rad = max(1.0, float(sd) if math.isfinite(sd) else radius)
        r0, r1 = max(int(math.floor(r - rad)), 0), min(int(math.ceil(r + rad)) + 1, shape[0])
        c0, c1 = max(int(math.floor(c - rad)), 0), min(int(math.ceil(c + rad)) + 1, shape[1])
        if r0 >= r1 or c0 >= c1:
            continue
        dr = np.arange(r0, r1)[:, None] - r
        dc = np.arange(c0, c1)[None, :] - c
        mask[r0:r1, c0:c1][dr * dr + dc * dc <= rad * rad] = 255
    return mask
