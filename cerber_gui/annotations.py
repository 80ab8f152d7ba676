"""One image's point annotations as the user edits them, with undo and redo.

Plain Python, like the session that holds it (the same import-linter contract keeps Qt out).
Points are (row, col) in image pixels, 0-based, pixel centres at integers; a point may lie
anywhere on the image, from -0.5 to size - 0.5. They are kept to 0.01 px, as
:func:`cerber_model.runtime.points.write_points` writes them, so what is shown is what is saved
and what is read back. The file is ``<stem>_points.csv`` beside the image
(:func:`~cerber_model.runtime.points.points_beside`), where training finds it.
"""

from __future__ import annotations

import glob
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from cerber_model.runtime.images import IMAGE_SUFFIXES
from cerber_model.runtime.points import Points, PointsError, points_beside, read_points, write_points

#: A click this close (image px) to a point removes the point instead of adding one; detections
#: this close to a point are taken as marked already.
HIT_RADIUS_PX = 3.0
DECIMALS = 2  # as write_points writes them


class AnnotationError(Exception):
    """Why an image cannot be annotated: ``message`` says what and what to do, ``details`` more."""

    def __init__(self, message: str, details: str = ""):
        super().__init__(message)
        self.message, self.details = message, details


def folder_writable(folder: Path) -> bool:
    """Whether a file can be created in ``folder`` (tried, not guessed from permission bits:
    those say nothing about read-only drives and shares, or to an administrator)."""
    try:
        with tempfile.TemporaryFile(dir=folder, prefix=".cerber-write-test-"):
            return True
    except OSError:
        return False


def _same(a: Points, b: Points) -> bool:
    return np.array_equal(a.centres, b.centres) and np.array_equal(a.sd_px, b.sd_px, equal_nan=True)


class Annotations:
    """The points of ``image`` (of ``shape`` rows, cols) being edited.

    Every edit can be undone and redone; :attr:`dirty` says whether the points differ from the
    file's (undoing back to what was saved makes them clean again). ``on_change`` is called after
    every change, saving included.
    """

    def __init__(self, image: Path, shape: tuple[int, int], saved: Points | None = None,
                 on_change: Callable[[], None] | None = None):
        self.image = Path(image)
        self.shape = (int(shape[0]), int(shape[1]))
        self.file = points_beside(self.image)
        self._saved = saved if saved is not None else Points.of(np.zeros((0, 2)))
        self._points = self._saved
        self._undo: list[Points] = []
        self._redo: list[Points] = []
        self.on_change = on_change

    @classmethod
    def load(cls, image: Path, shape: tuple[int, int], on_change: Callable[[], None] | None = None) -> Annotations:
        """The points saved beside ``image`` (none yet if there is no file).

        Raises :class:`AnnotationError` when they could not be saved there again: the file has
        bad lines (each named as ``file:line``; the file is left as it is), another image in the
        folder has the same name (they would share the file), or the folder is read-only.
        """
        image = Path(image)
        file = points_beside(image)
        twins = sorted(p.name for p in image.parent.glob(glob.escape(image.stem) + ".*")
                       if p.suffix.lower() in IMAGE_SUFFIXES and p.name != image.name)
        if twins:
            raise AnnotationError(f"{image.name} and {', '.join(twins)} would share the points file {file.name}.",
                                  "Rename one of them (or move it to its own folder), then annotate.")
        saved = None
        if file.exists():
            try:
                saved = read_points(file, shape)
            except PointsError as exc:
                raise AnnotationError(f"The points of {image.name} cannot be read: {file} has problems. "
                                      "Fix the lines named (or move the file away) and annotate again; "
                                      "the file is left as it is.", str(exc)) from exc
            saved = Points(np.round(saved.centres, DECIMALS), saved.sd_px)
        if not folder_writable(image.parent):
            raise AnnotationError(f"Points are saved beside the image as {file.name}, but {image.parent} is "
                                  "read-only.", "Copy the images to a folder you can write to and annotate them "
                                  "there.")
        return cls(image, shape, saved, on_change)

    # -- reading ----------------------------------------------------------------------
    @property
    def points(self) -> Points:
        return self._points

    @property
    def centres(self) -> np.ndarray:
        """(N, 2) row, col."""
        return self._points.centres

    def __len__(self) -> int:
        return len(self._points)

    @property
    def dirty(self) -> bool:
        return not _same(self._points, self._saved)

    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    @property
    def can_redo(self) -> bool:
        return bool(self._redo)

    def inside(self, row: float, col: float) -> bool:
        return -0.5 <= row <= self.shape[0] - 0.5 and -0.5 <= col <= self.shape[1] - 0.5

    def nearest(self, row: float, col: float, radius: float = HIT_RADIUS_PX) -> int | None:
        """Index of the point nearest (row, col) within ``radius`` px, or None."""
        if not len(self):
            return None
        distances = np.hypot(self.centres[:, 0] - row, self.centres[:, 1] - col)
        i = int(distances.argmin())
        return i if distances[i] <= radius else None

    # -- editing ----------------------------------------------------------------------
    def _set(self, points: Points) -> None:
        self._undo.append(self._points)
        self._redo.clear()
        self._points = points
        self._changed()

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change()

    def click(self, row: float, col: float) -> bool:
        """What a click at (row, col) does: remove the point within :data:`HIT_RADIUS_PX`, else add one
        there. False (nothing changes) outside the image."""
        i = self.nearest(row, col)
        if i is not None:
            self.remove(i)
            return True
        return self.add(row, col)

    def add(self, row: float, col: float) -> bool:
        """Add a point; False (nothing added) outside the image or on a point already there."""
        row, col = round(float(row), DECIMALS), round(float(col), DECIMALS)
        if not self.inside(row, col) or self.nearest(row, col, radius=0.5) is not None:
            return False
        self._set(Points(np.vstack([self.centres, [[row, col]]]), np.append(self._points.sd_px, np.nan)))
        return True

    def remove(self, index: int) -> None:
        keep = np.arange(len(self)) != index
        self._set(Points(self.centres[keep], self._points.sd_px[keep]))

    def add_many(self, centres: Iterable) -> int:
        """Add every (row, col) inside the image and farther than :data:`HIT_RADIUS_PX` from the
        points (and from each other), as one edit; returns how many were added."""
        new: list[tuple[float, float]] = []
        taken = [tuple(c) for c in self.centres]
        for row, col in np.round(np.asarray(list(centres), dtype=np.float64).reshape(-1, 2), DECIMALS):
            if not self.inside(row, col):
                continue
            if taken and np.hypot(*(np.asarray(taken) - (row, col)).T).min() <= HIT_RADIUS_PX:
                continue
            new.append((row, col))
            taken.append((row, col))
        if new:
            self._set(Points(np.vstack([self.centres, new]), np.append(self._points.sd_px, np.full(len(new), np.nan))))
        return len(new)

    def undo(self) -> bool:
        if not self._undo:
            return False
        self._redo.append(self._points)
        self._points = self._undo.pop()
        self._changed()
        return True

    def redo(self) -> bool:
        if not self._redo:
            return False
        self._undo.append(self._points)
        self._points = self._redo.pop()
        self._changed()
        return True

    def revert(self) -> None:
        """Back to the points last saved (or read), forgetting the edits and their history."""
        self._points = self._saved
        self._undo.clear()
        self._redo.clear()
        self._changed()

    def save(self) -> Path:
        """Write the points to :attr:`file`, atomically (never over the image); raises OSError.
        Undo still goes back past a save (and makes the points unsaved again)."""
        assert self.file != self.image
        write_points(self._points, self.file)
        self._saved = self._points
        self._changed()
        return self.file
