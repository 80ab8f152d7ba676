"""Spectra: histograms of track intensity and size, per image and pooled over a folder.

In fluorescent nuclear track detectors a track's integrated intensity grows with the
particle's LET, so its histogram is a proxy for the LET spectrum; the size histogram tells
tracks from specks and clusters. Quantities (:data:`QUANTITIES`), per track:

* ``integrated_intensity``: the sum of the track's pixel values, in the image's own units
  (optionally divided by the laser power and dwell time of an :class:`Acquisition`);
* ``area_px``: the number of pixels in the track;
* ``diameter_px``: the equivalent diameter, that of a disk of the track's area, ``sqrt(4 A / pi)``, px;
* ``diameter_um``: the same in µm (needs the pixel size).

A :class:`Spectrum` is bin edges (n + 1, increasing) and counts (n); a value equal to the last
edge counts in the last bin. Spectra to be compared share their edges: :func:`common_edges`
makes edges for a folder from all its values (log-spaced for intensity, whole pixels for
area), and :func:`folder_spectra` / :func:`track_spectra` give one spectrum per image plus the
pooled one, named :data:`POOLED`. :func:`write_spectra_csv` writes them side by side.

The acquisition sidecar, ``<stem>_acquisition.json`` beside an image or ``acquisition.json``
for every image of its folder (the image's own file wins; see :func:`acquisition_for`)::

    {"format": "cerber-acquisition", "version": 1, "laser_power_mw": 2.5, "dwell_time_us": 4.0}

Both numbers are optional, positive: the laser power at the sample in mW and the pixel dwell
time in µs. ``format`` and ``version`` may be left out of a hand-written file; any other key
is refused, so a misspelt one is not silently ignored. With both numbers, intensities are
divided by power x dwell (units: image units per mW·µs); with one, by that one.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .files import FileProblem, atomic_write
from .tracks import Tracks

#: The quantities a spectrum can be made of, and what they are.
QUANTITIES = {
    "integrated_intensity": "integrated intensity",
    "area_px": "area (px)",
    "diameter_px": "equivalent diameter (px)",
    "diameter_um": "equivalent diameter (µm)",
}
#: Default binning per quantity: (number of bins, "log" | "linear" | "integer").
DEFAULT_BINNING = {
    "integrated_intensity": (32, "log"),
    "area_px": (40, "integer"),
    "diameter_px": (32, "linear"),
    "diameter_um": (32, "linear"),
}
#: The name of the spectrum pooled over all images.
POOLED = "all"
ACQUISITION_FORMAT = "cerber-acquisition"
ACQUISITION_VERSION = 1
ACQUISITION_SUFFIX = "_acquisition.json"
#: The acquisition sidecar that holds for every image of its folder.
FOLDER_ACQUISITION = "acquisition.json"
_ACQUISITION_KEYS = ("laser_power_mw", "dwell_time_us")


class AcquisitionError(FileProblem, ValueError):
    """An acquisition sidecar that cannot be used; the message names the file, the problem and the fix."""


@dataclass(frozen=True)
class Acquisition:
    """How an image was taken: laser power at the sample (mW) and pixel dwell time (µs), either
    or both unknown (None)."""

    laser_power_mw: float | None = None
    dwell_time_us: float | None = None

    def __post_init__(self) -> None:
        for key in _ACQUISITION_KEYS:
            value = getattr(self, key)
            if value is not None and not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"{key} must be a positive number, got {value!r}")

    @property
    def exposure(self) -> float | None:
        """What intensities are divided by: power x dwell (mW·µs), or the one that is known;
        None when neither is."""
        known = [v for v in (self.laser_power_mw, self.dwell_time_us) if v is not None]
        return float(math.prod(known)) if known else None

    @property
    def intensity_unit(self) -> str:
        """The unit of normalised intensities, e.g. ``image units per mW·µs``."""
        per = "·".join(u for u, v in (("mW", self.laser_power_mw), ("µs", self.dwell_time_us)) if v is not None)
        return f"image units per {per}" if per else "image units"

    def normalise(self, intensities) -> np.ndarray:
        """Intensities divided by :attr:`exposure` (unchanged, as float, when it is None)."""
        values = np.asarray(intensities, dtype=np.float64)
        exposure = self.exposure
        return values / exposure if exposure is not None else values.copy()

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"format": ACQUISITION_FORMAT, "version": ACQUISITION_VERSION}
        out.update({k: getattr(self, k) for k in _ACQUISITION_KEYS if getattr(self, k) is not None})
        return out


_ACQUISITION_FIX = ('An acquisition file looks like {"laser_power_mw": 2.5, "dwell_time_us": 4.0} '
                    "(both optional, positive numbers).")


def load_acquisition(path: Path | str) -> Acquisition:
    """Read an acquisition sidecar; raises :class:`AcquisitionError` naming the file and the problem."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError) as exc:
        raise AcquisitionError(path, f"cannot be read ({exc}).") from exc
    except json.JSONDecodeError as exc:
        raise AcquisitionError(path, f"is not JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}).",
                               _ACQUISITION_FIX) from exc
    if not isinstance(data, dict):
        raise AcquisitionError(path, f"holds a JSON {type(data).__name__}, not an object.", _ACQUISITION_FIX)
    if data.get("format", ACQUISITION_FORMAT) != ACQUISITION_FORMAT:
        raise AcquisitionError(path, f"is not an acquisition file (format {data['format']!r}).", _ACQUISITION_FIX)
    version = data.get("version", ACQUISITION_VERSION)
    if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= ACQUISITION_VERSION:
        raise AcquisitionError(path, f"has version {version!r}; this Cerber reads version {ACQUISITION_VERSION}.",
                               "Update Cerber to read a newer file.")
    unknown = sorted(set(data) - {"format", "version", *_ACQUISITION_KEYS})
    if unknown:
        raise AcquisitionError(path, f"has unknown keys {', '.join(unknown)}; "
                                     f"known: {', '.join(_ACQUISITION_KEYS)}.", _ACQUISITION_FIX)
    values = {k: data.get(k) for k in _ACQUISITION_KEYS}
    for key, value in values.items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                  or not math.isfinite(value) or value <= 0):
            raise AcquisitionError(path, f"{key} must be a positive number, found {value!r}.", _ACQUISITION_FIX)
    return Acquisition(**values)


def save_acquisition(acquisition: Acquisition, path: Path | str) -> Path:
    """Write an acquisition sidecar (atomically). Returns the path."""
    text = json.dumps(acquisition.to_dict(), indent=1) + "\n"
    return atomic_write(path, lambda fh: fh.write(text.encode("utf-8")))


def acquisition_path_beside(image_path: Path | str) -> Path:
    """An image's own acquisition sidecar: ``<folder>/<stem>_acquisition.json``."""
    image_path = Path(image_path)
    return image_path.with_name(image_path.stem + ACQUISITION_SUFFIX)


def acquisition_for(image_path: Path | str) -> Acquisition:
    """The acquisition of an image: its own sidecar, else its folder's ``acquisition.json``,
    else an :class:`Acquisition` with nothing known. Bad files raise :class:`AcquisitionError`."""
    own = acquisition_path_beside(image_path)
    for candidate in (own, own.with_name(FOLDER_ACQUISITION)):
        if candidate.is_file():
            return load_acquisition(candidate)
    return Acquisition()


@dataclass(frozen=True)
class Spectrum:
    """A histogram: ``edges`` (n + 1, increasing, float64) and ``counts`` (n, int64).

    ``underflow`` and ``overflow`` count the values below the first and above the last edge
    (on log-spaced edges, values <= 0 are below); NaN values are not counted at all.
    """

    edges: np.ndarray
    counts: np.ndarray
    underflow: int = 0
    overflow: int = 0

    def __post_init__(self) -> None:
        if self.edges.ndim != 1 or len(self.edges) != len(self.counts) + 1:
            raise ValueError(f"{len(self.counts)} counts need {len(self.counts) + 1} edges, got {self.edges.shape}")

    @property
    def total(self) -> int:
        """Values inside the edges."""
        return int(self.counts.sum())

    @property
    def is_log(self) -> bool:
        """Whether the edges are log-spaced (equal ratios rather than equal widths)."""
        e = self.edges
        if len(e) < 3 or e[0] <= 0:
            return False
        ratios = e[1:] / e[:-1]
        return bool(np.allclose(ratios, ratios[0], rtol=1e-6) and not np.allclose(np.diff(e), e[1] - e[0]))

    def __add__(self, other: Spectrum) -> Spectrum:
        if not np.array_equal(self.edges, other.edges):
            raise ValueError("spectra with different bin edges cannot be added; make them with common_edges")
        return Spectrum(self.edges, self.counts + other.counts,
                        self.underflow + other.underflow, self.overflow + other.overflow)


def histogram_edges(values, bins: int = 32, range: tuple[float, float] | None = None, *,
                    log: bool = False, integer: bool = False) -> np.ndarray:
    """Bin edges for ``values``: ``bins`` bins over ``range`` (default: the values' min to max).

    ``log``: log-spaced, over the positive values. ``integer``: for whole numbers (areas in px),
    edges halfway between them, each bin as many whole numbers wide (at most ``bins`` bins).
    No values give one decade (log) or 0..1; equal values a bin around them.
    """
    if bins < 1:
        raise ValueError(f"bins must be at least 1, got {bins}")
    if log and integer:
        raise ValueError("choose log or integer bins, not both")
    v = np.asarray(values, dtype=np.float64).ravel()
    v = v[np.isfinite(v)]
    if log:
        v = v[v > 0]
    if range is not None:
        lo, hi = float(range[0]), float(range[1])
        if not hi > lo or (log and lo <= 0):
            raise ValueError(f"range must be increasing{' and positive for log bins' if log else ''}, got {range}")
    elif v.size:
        lo, hi = float(v.min()), float(v.max())
    else:
        lo, hi = (1.0, 10.0) if log else (0.0, 1.0)
    if integer:
        start = math.floor(lo + 0.5) - 0.5
        span = math.floor(hi + 0.5) + 0.5 - start
        width = max(1, math.ceil(span / bins))
        return start + width * np.arange(math.ceil(span / width) + 1, dtype=np.float64)
    if hi == lo:
        lo, hi = (lo / math.sqrt(10), hi * math.sqrt(10)) if log else (lo - 0.5, hi + 0.5)
    edges = np.geomspace(lo, hi, bins + 1) if log else np.linspace(lo, hi, bins + 1)
    edges[0], edges[-1] = lo, hi
    return edges


def common_edges(value_sets: Iterable, bins: int = 32, range: tuple[float, float] | None = None, *,
                 log: bool = False, integer: bool = False) -> np.ndarray:
    """Bin edges shared by several sets of values (one per image), from all of them together."""
    arrays = [np.asarray(v, dtype=np.float64).ravel() for v in value_sets]
    pooled = np.concatenate(arrays) if arrays else np.zeros(0)
    return histogram_edges(pooled, bins, range, log=log, integer=integer)


def spectrum(values, bins: int | np.ndarray = 32, range: tuple[float, float] | None = None, *,
             log: bool = False, integer: bool = False) -> Spectrum:
    """The histogram of ``values``: ``bins`` is a number of bins (edges from
    :func:`histogram_edges`) or the edges themselves (n + 1, increasing)."""
    v = np.asarray(values, dtype=np.float64).ravel()
    v = v[~np.isnan(v)]
    if isinstance(bins, (int, np.integer)):
        edges = histogram_edges(v, int(bins), range, log=log, integer=integer)
    else:
        edges = np.asarray(bins, dtype=np.float64)
        if edges.ndim != 1 or len(edges) < 2 or not (np.diff(edges) > 0).all():
            raise ValueError("bin edges must be at least two increasing numbers")
    counts, _ = np.histogram(v, edges)
    return Spectrum(edges, counts.astype(np.int64), int((v < edges[0]).sum()), int((v > edges[-1]).sum()))


def folder_spectra(values_by_name: Mapping[str, Any], bins: int = 32, range: tuple[float, float] | None = None,
                   *, log: bool = False, integer: bool = False) -> dict[str, Spectrum]:
    """One spectrum per name on common edges, then the pooled one under :data:`POOLED` (last)."""
    if POOLED in values_by_name:
        raise ValueError(f"{POOLED!r} is the pooled spectrum's name; name the images otherwise")
    edges = common_edges(values_by_name.values(), bins, range, log=log, integer=integer)
    out = {name: spectrum(values, edges) for name, values in values_by_name.items()}
    pooled = Spectrum(edges, np.zeros(len(edges) - 1, dtype=np.int64))
    for s in out.values():
        pooled = pooled + s
    out[POOLED] = pooled
    return out


def track_values(tracks: Tracks, quantity: str, acquisition: Acquisition | None = None) -> np.ndarray:
    """The value of ``quantity`` (one of :data:`QUANTITIES`) for each track, float64.

    Intensities are divided by the acquisition's exposure when one is given.
    """
    _check_quantity(quantity)
    cols = tracks.columns
    if quantity == "integrated_intensity":
        values = np.asarray(cols["integrated_intensity"], dtype=np.float64)
        return acquisition.normalise(values) if acquisition is not None else values.copy()
    area = np.asarray(cols["area_px"], dtype=np.float64)
    if quantity == "area_px":
        return area
    diameter = np.sqrt(4.0 * area / math.pi)
    if quantity == "diameter_px":
        return diameter
    if not tracks.pixel_size_um:
        raise ValueError("diameter_um needs the pixel size; give it, or use diameter_px")
    return diameter * tracks.pixel_size_um


def quantity_label(quantity: str, acquisition: Acquisition | None = None) -> str:
    """What a spectrum's axis shows, with its unit, e.g. ``integrated intensity (image units per mW·µs)``."""
    _check_quantity(quantity)
    if quantity == "integrated_intensity":
        return f"integrated intensity ({(acquisition or Acquisition()).intensity_unit})"
    return QUANTITIES[quantity]


def track_spectra(tracks_by_name: Mapping[str, Tracks], quantity: str, *,
                  acquisitions: Mapping[str, Acquisition] | None = None,
                  bins: int | None = None, range: tuple[float, float] | None = None) -> dict[str, Spectrum]:
    """Spectra of ``quantity`` for each image's tracks and pooled (:data:`POOLED`), binned as
    :data:`DEFAULT_BINNING` says (``bins`` changes the number of bins).

    ``acquisitions`` (by the same names) normalise intensities; all images must then be
    normalised alike (the same of power and dwell known), or the spectra would not compare.
    """
    _check_quantity(quantity)
    acquisitions = acquisitions or {}
    if quantity == "integrated_intensity":
        units = {name: acquisitions.get(name, Acquisition()).intensity_unit for name in tracks_by_name}
        if len(set(units.values())) > 1:
            listed = "; ".join(f"{n}: {u}" for n, u in units.items())
            raise ValueError(f"intensities are normalised differently ({listed}); give every image the same "
                             "acquisition values (laser power and dwell time) or none")
    values = {name: track_values(t, quantity, acquisitions.get(name)) for name, t in tracks_by_name.items()}
    default_bins, kind = DEFAULT_BINNING[quantity]
    return folder_spectra(values, bins or default_bins, range, log=kind == "log", integer=kind == "integer")


def spectra_csv_name(quantity: str) -> str:
    """The file name for a folder's spectra of ``quantity``: ``spectrum_<quantity>.csv``."""
    _check_quantity(quantity)
    return f"spectrum_{quantity}.csv"


def write_spectra_csv(path: Path | str, spectra: Mapping[str, Spectrum], quantity: str, *,
                      layout: str = "wide") -> Path:
    """Write spectra on common edges as a CSV (atomically).

    ``wide``: columns ``bin_low,bin_high,<name>,...`` in the order of ``spectra`` (the pooled
    spectrum last, as :func:`folder_spectra` gives it), one row per bin. ``long``: columns
    ``quantity,image,bin_low,bin_high,count``, one row per image and bin. Bin edges are in the
    quantity's unit; values outside the edges (``Spectrum.underflow``/``overflow``) are not in
    the file.
    """
    _check_quantity(quantity)
    if layout not in ("wide", "long"):
        raise ValueError(f"layout must be 'wide' or 'long', got {layout!r}")
    items = list(spectra.items())
    if not items:
        raise ValueError("no spectra to write")
    edges = items[0][1].edges
    for name, s in items[1:]:
        if not np.array_equal(s.edges, edges):
            raise ValueError(f"the spectrum of {name} has other bin edges; make the spectra with common_edges")
    lows, highs = [f"{x:.8g}" for x in edges[:-1]], [f"{x:.8g}" for x in edges[1:]]

    def write(fh):
        text = io.TextIOWrapper(fh, encoding="utf-8", newline="")
        out = csv.writer(text)
        if layout == "wide":
            out.writerow(["bin_low", "bin_high", *(name for name, _ in items)])
            for i in np.arange(len(lows)):
                out.writerow([lows[i], highs[i], *(int(s.counts[i]) for _, s in items)])
        else:
            out.writerow(["quantity", "image", "bin_low", "bin_high", "count"])
            for name, s in items:
                for i in np.arange(len(lows)):
                    out.writerow([quantity, name, lows[i], highs[i], int(s.counts[i])])
        text.flush()
        text.detach()

    return atomic_write(path, write)


def _check_quantity(quantity: str) -> None:
    if quantity not in QUANTITIES:
        raise ValueError(f"unknown quantity {quantity!r}; one of {', '.join(QUANTITIES)}")
