"""One image's regions as the user draws them: include and exclude polygons, with undo and redo.

Plain Python, like the session that holds it (an import-linter contract keeps Qt out).
Vertices are (row, col) in image pixels, 0-based, pixel centres at integers, as in
:mod:`cerber_model.runtime.regions`, whose :class:`~cerber_model.runtime.regions.Regions` the
editor holds. A polygon is drawn vertex by vertex (the *draft*) and becomes a region when it is
closed with at least 3 vertices; a click on a region's outline selects it, and the selected
region can be deleted. Every change to the regions can be undone and redone; while drawing,
Undo takes back the last vertex.

The regions are kept in ``<stem>_regions.json`` beside the image
(:func:`~cerber_model.runtime.regions.regions_path_beside`). The editor saves only over a file
that is Cerber's own regions file: anything else of that name is left as it is, and the editor
refuses to start (:class:`RegionsRefused`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from cerber_model.runtime.regions import FORMAT, Regions, regions_path_beside, save_regions

KINDS = ("include", "exclude")
#: How near (image px) a click must be to an outline to select it, or to the first vertex to
#: close the polygon, unless the view gives its own reach (a few screen pixels).
HIT_RADIUS_PX = 3.0


class RegionsRefused(Exception):
    """Why an image's regions cannot be drawn or saved: ``message`` says what and what to do,
    ``details`` more."""

    def __init__(self, message: str, details: str = ""):
        super().__init__(message)
        self.message, self.details = message, details


def is_cerber_regions_file(path: Path) -> bool:
    """Whether ``path`` holds a Cerber regions file (so saving over it loses nothing of anyone
    else's); False for anything else, readable or not."""
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return isinstance(data, dict) and data.get("format") == FORMAT


def _segment_distance(point: np.ndarray, polygon: np.ndarray) -> float:
    """Distance from ``point`` (row, col) to the closed outline of ``polygon`` (N, 2)."""
    a = polygon
    b = np.roll(polygon, -1, axis=0)
    ab = b - a
    length2 = (ab**2).sum(axis=1)
    t = np.clip(((point - a) * ab).sum(axis=1) / np.where(length2 > 0, length2, 1), 0, 1)
    nearest = a + t[:, None] * ab
    return float(np.hypot(*(nearest - point).T).min())


class RegionEditor:
    """The regions of ``image`` (of ``shape`` rows, cols) being drawn.

    ``saved``: the regions as read (from ``source``, the file they came from, which may be an
    ImageJ ROI set; None: there was none). ``on_change(what)`` is called after every change:
    ``"regions"`` when the regions changed (an edit, undo or redo), ``"draft"`` when only the
    polygon being drawn or the selection did, ``"saved"`` after a save.
    """

    def __init__(self, image: Path, shape: tuple[int, int], saved: Regions | None = None,
                 source: Path | None = None, on_change: Callable[[str], None] | None = None):
        self.image = Path(image)
        self.shape = (int(shape[0]), int(shape[1]))
        self.file = regions_path_beside(self.image)
        self.source = source
        # What the file holds, as far as known (None: a save failed, so it is not known)
        self._saved: Regions | None = saved if saved is not None else Regions()
        self._regions = saved if saved is not None else Regions()
        self._undo: list[Regions] = []
        self._redo: list[Regions] = []
        self.draft: list[tuple[float, float]] = []
        self.draft_kind = "include"
        self.selected: tuple[str, int] | None = None
        self.on_change = on_change

    @classmethod
    def check_file(cls, image: Path) -> None:
        """Raise :class:`RegionsRefused` when the image's regions file exists but is not Cerber's
        (saving would replace someone else's file)."""
        file = regions_path_beside(image)
        if file.exists() and not is_cerber_regions_file(file):
            raise RegionsRefused(
                f"{file.name} beside {Path(image).name} is not a Cerber regions file; Cerber keeps an image's "
                "regions in that file and does not write over anything else.",
                f"Rename or move {file} (or fix it, if it is a damaged regions file), then draw regions again.")

    # -- reading ------------------------------------------------------------------------
    @property
    def regions(self) -> Regions:
        return self._regions

    @property
    def dirty(self) -> bool:
        """Whether the regions differ from those last saved (or read), or a save failed since."""
        return self._saved is None or not _same(self._regions, self._saved)

    @property
    def drawing(self) -> bool:
        return bool(self.draft)

    @property
    def can_close(self) -> bool:
        return len(self.draft) >= 3

    @property
    def can_undo(self) -> bool:
        return bool(self.draft) or bool(self._undo)

    @property
    def can_redo(self) -> bool:
        return not self.draft and bool(self._redo)

    def polygons(self, kind: str) -> list[np.ndarray]:
        return list(getattr(self._regions, kind))

    def hit(self, row: float, col: float, radius: float = HIT_RADIUS_PX) -> tuple[str, int] | None:
        """The region whose outline passes within ``radius`` px of (row, col), nearest first; None if none."""
        point = np.array([row, col], dtype=np.float64)
        best: tuple[float, tuple[str, int]] | None = None
        for kind in KINDS:
            for i, polygon in enumerate(getattr(self._regions, kind)):
                d = _segment_distance(point, polygon)
                if d <= radius and (best is None or d < best[0]):
                    best = (d, (kind, i))
        return best[1] if best is not None else None

    # -- drawing ----------------------------------------------------------------------
    def _changed(self, what: str) -> None:
        if self.on_change is not None:
            self.on_change(what)

    def click(self, row: float, col: float, kind: str = "include", radius: float = HIT_RADIUS_PX) -> str:
        """What a click at (row, col) does, and which (the return value):

        * ``"vertex"``: while drawing, a vertex is added (the first one starts a polygon of ``kind``);
        * ``"closed"``: a click on the first vertex of a polygon of 3 or more closes it;
        * ``"selected"``: not drawing, a click on a region's outline selects that region;
        * ``"outside"``: nothing, the click is off the image.
        """
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        if not (-0.5 <= row <= self.shape[0] - 0.5 and -0.5 <= col <= self.shape[1] - 0.5):
            return "outside"
        if self.draft:
            first = self.draft[0]
            if self.can_close and np.hypot(row - first[0], col - first[1]) <= radius:
                self.close_polygon()
                return "closed"
            self.draft.append((float(row), float(col)))
            self._changed("draft")
            return "vertex"
        hit = self.hit(row, col, radius)
        if hit is not None:
            self.selected = hit
            self._changed("draft")
            return "selected"
        self.selected = None
        self.draft = [(float(row), float(col))]
        self.draft_kind = kind
        self._changed("draft")
        return "vertex"

    def close_polygon(self) -> bool:
        """Make the polygon being drawn a region (and select it); False, and it goes on being drawn,
        with fewer than 3 distinct vertices."""
        vertices: list[tuple[float, float]] = []
        for v in self.draft:  # a double click may repeat the last vertex
            if not vertices or np.hypot(v[0] - vertices[-1][0], v[1] - vertices[-1][1]) > 1e-6:
                vertices.append(v)
        if len(vertices) < 3:
            return False
        kind = self.draft_kind
        polygons = {k: self.polygons(k) for k in KINDS}
        polygons[kind].append(np.array(vertices, dtype=np.float64))
        self.draft = []
        self._set(Regions(polygons["include"], polygons["exclude"]), (kind, len(polygons[kind]) - 1))
        return True

    def discard_polygon(self) -> None:
        """Forget the polygon being drawn."""
        if self.draft:
            self.draft = []
            self._changed("draft")

    def delete_selected(self) -> bool:
        """Delete the selected region; False if none is selected."""
        if self.selected is None:
            return False
        kind, index = self.selected
        polygons = {k: self.polygons(k) for k in KINDS}
        del polygons[kind][index]
        self._set(Regions(polygons["include"], polygons["exclude"]), None)
        return True

    def _set(self, regions: Regions, selected: tuple[str, int] | None) -> None:
        self._undo.append(self._regions)
        self._redo.clear()
        self._regions = regions
        self.selected = selected
        self._changed("regions")

    def undo(self) -> bool:
        """Take back the last vertex while drawing, else the last change to the regions."""
        if self.draft:
            self.draft.pop()
            self._changed("draft")
            return True
        if not self._undo:
            return False
        self._redo.append(self._regions)
        self._regions = self._undo.pop()
        self.selected = None
        self._changed("regions")
        return True

    def redo(self) -> bool:
        if self.draft or not self._redo:
            return False
        self._undo.append(self._regions)
        self._regions = self._redo.pop()
        self.selected = None
        self._changed("regions")
        return True

    # -- saving ---------------------------------------------------------------------------
    @property
    def needs_saving(self) -> bool:
        """Whether :meth:`save` would write: the regions changed, and there is something to keep
        (regions, or a file of ours that still holds the old ones)."""
        return self.dirty and (not self._regions.is_empty or self.file.exists())

    def save(self) -> Path:
        """Write the regions to :attr:`file` atomically; raises OSError, or :class:`RegionsRefused`
        when a file of that name is there that is not a Cerber regions file (it is left as it is)."""
        assert self.file != self.image
        try:
            self.check_file(self.image)
            save_regions(self._regions, self.file)
        except (OSError, RegionsRefused):
            self._saved = None
            raise
        self._saved = self._regions
        self.source = self.file
        self._changed("saved")
        return self.file


def _same(a: Regions, b: Regions) -> bool:
    return all(len(getattr(a, k)) == len(getattr(b, k))
               and all(np.array_equal(p, q) for p, q in zip(getattr(a, k), getattr(b, k), strict=True))
               for k in KINDS)

