"""Reading images and normalising them for the network.

Images are 2-D arrays indexed ``[row, column]`` with their original dtype kept
(8/16-bit integers or float32), so intensities in track tables are in the input's
own units. BMP and PNG are read with Pillow, TIFF with tifffile. Inputs are only
ever opened for reading.

Every way a file can be unusable raises :class:`ImageReadError`, whose message
names the file, says what is wrong and what to do.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .files import FileProblem

#: File name suffixes Cerber reads (lower case).
IMAGE_SUFFIXES = (".bmp", ".png", ".tif", ".tiff")
#: Largest image accepted, in pixels (16384 x 16384). Larger files are refused
#: before decoding: they would not fit in memory and are usually damaged headers
#: or decompression bombs.
MAX_PIXELS = 16384 * 16384
#: Largest decoded array accepted (bytes): a small file may declare a huge colour or float64
#: image; it is refused before any memory is asked for.
MAX_DECODED_BYTES = 2 * 2**30
#: Luminance weights (ITU-R 601) for converting colour to gray.
_GRAY_WEIGHTS = np.array([0.299, 0.587, 0.114])


class ImageReadError(FileProblem):
    """An image file cannot be used; the message names the file, the cause and the fix."""


@dataclass
class Image:
    """A grayscale image as read from disk.

    data: 2-D array ``[row, column]``; uint8, uint16 or float32.
    path: where it was read from (None for images made in memory).
    notes: what was done on reading (e.g. colour converted to gray).
    pixel_size_um: micrometres per pixel as the file gives it (None: it says nothing usable); for
        pixels that are not square, the geometric mean of width and height (so areas are right),
        noted in ``notes``.
    pixel_size_source: where ``pixel_size_um`` was read: "OME-XML", "ImageJ metadata",
        "TIFF resolution tags", or "" when unknown.
    """

    data: np.ndarray
    path: Path | None = None
    notes: list[str] = field(default_factory=list)
    pixel_size_um: float | None = None
    pixel_size_source: str = ""

    @property
    def name(self) -> str:
        return self.path.name if self.path else "image"

    @property
    def shape(self) -> tuple[int, int]:
        return (int(self.data.shape[0]), int(self.data.shape[1]))

    @property
    def bit_depth(self) -> str:
        return {np.dtype(np.uint8): "8-bit", np.dtype(np.uint16): "16-bit"}.get(self.data.dtype, "32-bit float")


def is_image_file(path: Path) -> bool:
    """True for a file name Cerber reads as an image (by suffix; hidden files are not)."""
    return path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def list_images(folder: Path | str) -> list[Path]:
    """The image files directly inside ``folder``, sorted by name (sub-folders are not searched)."""
    return sorted(p for p in Path(folder).iterdir() if p.is_file() and is_image_file(p))


def read_image(path: Path | str, page: int | None = None) -> Image:
    """Read a BMP, PNG or TIFF file as a 2-D grayscale :class:`Image`.

    8- and 16-bit integer and 32-bit float gray images keep their values; RGB(A)
    is converted to gray (noted in ``Image.notes``). Multi-page TIFFs need
    ``page`` (0-based). Raises :class:`ImageReadError` for anything unusable.
    """
    path = Path(path)
    if not path.exists():
        raise ImageReadError(path, "no such file.", "Check the path.")
    if path.is_dir():
        raise ImageReadError(path, "is a folder, not an image.", "Pass the image files inside it.")
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise ImageReadError(path, f"cannot be read ({exc.strerror}).", "Check the file's permissions.") from exc
    if size == 0:
        raise ImageReadError(path, "is empty (0 bytes).",
                             "The file was probably not saved completely; export it again.")
    suffix = path.suffix.lower()
    if suffix not in IMAGE_SUFFIXES:
        raise ImageReadError(path, f"has an unsupported type {suffix or '(no suffix)'}.",
                             "Save it as TIFF, PNG or BMP.")
    notes: list[str] = []
    pixel_size: PixelSize | None = None
    if suffix in (".tif", ".tiff"):
        data, pixel_size = _read_tiff(path, page, notes)
    else:
        if page not in (None, 0):
            raise ImageReadError(path, f"has only one page; page {page} does not exist.")
        data = _read_pillow(path, notes)
    image = Image(_to_gray(path, data, notes), path, notes)
    if pixel_size is not None:
        image.pixel_size_um, image.pixel_size_source = pixel_size.um, pixel_size.source
    return image


def count_pages(path: Path | str) -> int:
    """How many images a file holds: the pages of a TIFF stack (thumbnails and pyramid levels are
    not counted), 1 for any other file. A file that cannot be read counts 1; :func:`read_image`
    says what is wrong with it."""
    path = Path(path)
    if path.suffix.lower() not in (".tif", ".tiff"):
        return 1
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            return max(1, len(_image_pages(tif)))
    except Exception:
        return 1


def _image_pages(tif) -> list:
    # Thumbnails and pyramid levels are pages too, but not images of their own.
    return [p for p in tif.pages if not getattr(p, "is_reduced", False)] or list(tif.pages)


def _check_size(path: Path, shape: tuple[int, ...], dtype: Any = np.uint8) -> None:
    """Refuse, before decoding, images with no pixels, too many pixels or too many decoded bytes."""
    if any(s <= 0 for s in shape):
        raise ImageReadError(path, f"has no pixels (shape {shape}).", "Export the image again.")
    rows, cols = (shape[-3], shape[-2]) if len(shape) >= 3 and shape[-1] <= 4 else shape[-2:]
    if rows * cols > MAX_PIXELS:
        raise ImageReadError(path, f"is {cols} x {rows} pixels, larger than Cerber accepts "
                             f"({MAX_PIXELS:,} pixels).", "Crop or bin it first.")
    decoded = math.prod(shape) * np.dtype(dtype).itemsize
    if decoded > MAX_DECODED_BYTES:
        raise ImageReadError(path, f"would take {decoded / 2**30:.1f} GiB once decoded ({' x '.join(map(str, shape))} "
                             f"{np.dtype(dtype).name}), more than Cerber reads ({MAX_DECODED_BYTES / 2**30:.0f} GiB).",
                             "Save it as a single 8- or 16-bit gray plane, or crop or bin it.")


def _read_pillow(path: Path, notes: list[str]) -> np.ndarray:
    from PIL import Image as PILImage

    PILImage.MAX_IMAGE_PIXELS = MAX_PIXELS
    try:
        with PILImage.open(path) as opened:
            mode = opened.mode
            converted = mode in ("P", "PA", "LA", "1", "CMYK", "YCbCr", "HSV")
            bands = 4 if converted else len(opened.getbands())
            itemsize = 4 if mode in ("I", "F") else 2 if mode.startswith("I;16") else 1
            _check_size(path, (opened.height, opened.width, bands), np.dtype(f"u{itemsize}"))
            frames = getattr(opened, "n_frames", 1)
            if frames > 1:
                notes.append(f"has {frames} frames; the first was used")
            im: PILImage.Image = opened
            if mode == "1":
                im = opened.convert("L")  # 1-bit: 0 and 255
            elif converted:
                im = opened.convert("RGBA" if "A" in mode or mode == "P" else "RGB")
                notes.append(f"converted from Pillow mode {mode}")
            data = np.asarray(im)
    except ImageReadError:
        raise
    except PILImage.DecompressionBombError as exc:
        raise ImageReadError(path, f"declares an absurd size ({exc}).", "The file is probably damaged.") from exc
    except (OSError, SyntaxError, ValueError, TypeError, KeyError, IndexError) as exc:
        # Pillow's TIFF reader raises TypeError ("Missing dimensions") and the like on damaged headers.
        raise ImageReadError(path, f"is not a readable image ({exc}).",
                             "The file may be truncated or damaged; export it again.") from exc
    if data.dtype == np.int32:  # Pillow's "I" mode, used for 16-bit PNGs
        if data.min() < 0 or data.max() > 65535:
            raise ImageReadError(path, "holds 32-bit integers outside the 16-bit range.",
                                 "Save it as 8- or 16-bit.")
        data = data.astype(np.uint16)
    elif data.dtype == bool:
        data = data.astype(np.uint8) * 255
    return data


def _read_tiff(path: Path, page: int | None, notes: list[str]) -> tuple[np.ndarray, PixelSize | None]:
    """One plane of a TIFF with tifffile (and imagecodecs: LZW, JPEG, packed 2-14 bit, ...) and its
    pixel size; files that tifffile cannot decode but Pillow (libtiff) can, such as CCITT G3/G4, go
    to Pillow."""
    import tifffile

    pixel_size = None
    try:
        with tifffile.TiffFile(path) as tif:
            pages = _image_pages(tif)
            count = len(pages)
            if count == 0:
                raise ImageReadError(path, "contains no images.", "Export the image again.")
            if page is None:
                if count > 1:
                    raise ImageReadError(path, f"is a stack of {count} images.",
                                         "Choose one with --page N (0-based) or the app's page choice, "
                                         "or save a single plane.")
                page = 0
            if not 0 <= page < count:
                raise ImageReadError(path, f"has {count} page(s); page {page} does not exist.",
                                     f"Choose a page from 0 to {count - 1}.")
            plane = pages[page]
            _check_size(path, plane.shape, plane.dtype)
            pixel_size = tiff_pixel_size(tif, plane, page, notes)
            data = plane.asarray()
            axes = plane.axes
    except ImageReadError:
        raise
    except Exception as exc:  # tifffile raises many types for damaged or exotic files
        if page in (None, 0):
            try:
                data = _read_pillow(path, notes)
            except ImageReadError:
                pass
            else:
                notes.append("read with Pillow (tifffile could not decode it)")
                return data, pixel_size
        raise ImageReadError(path, f"is not a readable TIFF ({type(exc).__name__}: {exc}).",
                             "The file may be truncated or damaged; export it again.") from exc
    data = _samples_last(path, data, axes)
    if data.dtype.kind == "f":
        if not np.all(np.isfinite(data)):
            bad = int(np.count_nonzero(~np.isfinite(data)))
            raise ImageReadError(path, f"contains {bad} NaN or infinite pixel values.",
                                 "Replace them (e.g. with 0) before analysis.")
        data = data.astype(np.float32, copy=False)
    elif data.dtype == bool:
        data = data.astype(np.uint8) * 255
    elif data.dtype not in (np.uint8, np.uint16):
        if data.dtype.kind in "iu" and data.size and data.min() >= 0 and data.max() <= 65535:
            notes.append(f"converted from {data.dtype} to 16-bit")
            data = data.astype(np.uint16)
        else:
            raise ImageReadError(path, f"has pixel type {data.dtype}, which Cerber cannot use.",
                                 "Save it as 8- or 16-bit grayscale, or 32-bit float.")
    return data, pixel_size


# -- pixel size ----------------------------------------------------------------

#: Micrometres in one unit of length, by the names OME-XML (its UnitsLength), ImageJ and TIFF
#: writers use. Words (more than two letters) also match in any case.
LENGTH_UNITS_UM = {
    "m": 1e6, "dm": 1e5, "cm": 1e4, "mm": 1e3, "\u00b5m": 1.0, "\u03bcm": 1.0, "um": 1.0, "micron": 1.0,
    "microns": 1.0, "micrometer": 1.0, "micrometre": 1.0, "nm": 1e-3, "pm": 1e-6, "\u00c5": 1e-4,
    "\u212b": 1e-4, "angstrom": 1e-4, "in": 25400.0, "inch": 25400.0, "pt": 25400.0 / 72,
}
#: Pixels larger than this (um) in resolution tags are a screen or print resolution (72 or 96 dpi,
#: which many programs write by default), not a calibration; they are ignored with a note.
MAX_TAGGED_PIXEL_UM = 100.0


@dataclass(frozen=True)
class PixelSize:
    """A pixel's size as a file gives it: ``x_um`` along the columns (its width), ``y_um`` along
    the rows (its height), in micrometres, and where it was read (``source``)."""

    x_um: float
    y_um: float
    source: str

    @property
    def um(self) -> float:
        """The side of a square pixel of the same area, ``sqrt(x_um * y_um)``."""
        return math.sqrt(self.x_um * self.y_um)


def length_unit_um(unit: str) -> float | None:
    """Micrometres in one ``unit`` ("nm", "\u00b5m", "micron", "cm", "\u00c5", ...); None if unknown.
    ImageJ's escaped micro sign (``\\u00B5m``) is understood."""
    name = unit.strip().replace("\\u00B5", "\u00b5").replace("\\u00b5", "\u00b5")
    if name in LENGTH_UNITS_UM:
        return LENGTH_UNITS_UM[name]
    return LENGTH_UNITS_UM.get(name.lower()) if len(name) > 2 else None


def tiff_pixel_size(tif, plane, page: int, notes: list[str]) -> PixelSize | None:
    """The pixel size of ``plane`` (page number ``page`` of the open ``tifffile.TiffFile`` ``tif``):
    from its OME-XML (``PhysicalSizeX/Y`` and their units, micrometres by default), else from
    ImageJ's metadata (``unit=micron`` with the resolution tags in pixels per that unit), else
    from the TIFF resolution tags in pixels per inch or centimetre. Resolution unit NONE without
    an ImageJ unit means unknown (None). What cannot be used is said in ``notes``."""
    size = None
    if getattr(tif, "is_ome", False):
        size = _ome_pixel_size(tif.ome_metadata or "", getattr(plane, "index", page), notes)
    if size is None and getattr(tif, "is_imagej", False):
        size = _imagej_pixel_size(tif.imagej_metadata or {}, plane, notes)
    if size is None:
        size = _tag_pixel_size(plane, notes)
    if size is not None and not math.isclose(size.x_um, size.y_um, rel_tol=1e-6):
        notes.append(f"pixels are {size.x_um:.6g} x {size.y_um:.6g} um (width x height, {size.source}); "
                     f"areas use {size.um:.6g} um, their geometric mean")
    return size


def _pixel_size(x: float, y: float, unit_um: float, source: str, notes: list[str]) -> PixelSize | None:
    if not (math.isfinite(x) and math.isfinite(y) and x > 0 and y > 0):
        notes.append(f"its {source} give an unusable pixel size ({x:g} x {y:g}); give the pixel size "
                     "yourself (cerber analyze --pixel-size)")
        return None
    return PixelSize(x * unit_um, y * unit_um, source)


def _ome_pixel_size(text: str, ifd: int, notes: list[str]) -> PixelSize | None:
    import xml.etree.ElementTree as ElementTree

    try:
        root = ElementTree.fromstring(text)
    except ElementTree.ParseError as exc:
        notes.append(f"its OME-XML cannot be parsed ({exc}); pixel size not read from it")
        return None

    def local(tag: str) -> str:
        return tag.rsplit("}", 1)[-1]

    # The Pixels whose planes start at or before this page (OME-TIFFs store images one after the other).
    chosen = None
    for pixels in (e for e in root.iter() if local(e.tag) == "Pixels"):
        starts = [int(d.get("IFD", 0)) for d in pixels if local(d.tag) == "TiffData"] or [0]
        if chosen is None or min(starts) <= ifd:
            chosen = pixels
    if chosen is None or (chosen.get("PhysicalSizeX") is None and chosen.get("PhysicalSizeY") is None):
        return None
    values = []
    for axis in ("X", "Y"):
        text_value = chosen.get(f"PhysicalSize{axis}") or chosen.get(f"PhysicalSize{'Y' if axis == 'X' else 'X'}")
        unit = chosen.get(f"PhysicalSize{axis}Unit", "\u00b5m")
        factor = length_unit_um(unit)
        if factor is None:
            notes.append(f"its OME-XML gives the pixel size in {unit!r}, not a unit of length Cerber knows; "
                         "give the pixel size yourself (cerber analyze --pixel-size)")
            return None
        try:
            values.append(float(text_value or "nan") * factor)
        except ValueError:
            values.append(math.nan)
    return _pixel_size(values[0], values[1], 1.0, "OME-XML", notes)


def _resolution(plane) -> tuple[float, float] | None:
    """The XResolution and YResolution tags (pixels per unit); None when the page has none."""
    if "XResolution" not in plane.tags:
        return None
    x, y = plane.resolution
    return float(x), float(y)


def _imagej_pixel_size(metadata: dict, plane, notes: list[str]) -> PixelSize | None:
    unit = metadata.get("unit")
    if not isinstance(unit, str) or unit.strip().lower() in ("", "pixel", "pixels"):
        return None
    factor = length_unit_um(unit)
    resolution = _resolution(plane)
    if factor is None or resolution is None:
        if factor is None:
            notes.append(f"its ImageJ metadata give the unit {unit!r}, not a unit of length Cerber knows; "
                         "give the pixel size yourself (cerber analyze --pixel-size)")
        return None
    x, y = resolution
    return _pixel_size(1 / x if x else math.inf, 1 / y if y else math.inf, factor, "ImageJ metadata", notes)


def _tag_pixel_size(plane, notes: list[str]) -> PixelSize | None:
    resolution = _resolution(plane)
    unit = {2: 25400.0, 3: 10000.0}.get(int(plane.resolutionunit))  # inch, centimetre; 1 is NONE
    if resolution is None or unit is None:
        return None
    x, y = resolution
    size = _pixel_size(1 / x if x else math.inf, 1 / y if y else math.inf, unit, "TIFF resolution tags", notes)
    if size is not None and max(size.x_um, size.y_um) > MAX_TAGGED_PIXEL_UM:
        per = "inch" if unit == 25400.0 else "cm"
        notes.append(f"its resolution tags say {x:g} pixels per {per}, a screen or print resolution rather than "
                     "a calibration; pixel size unknown (give it with cerber analyze --pixel-size)")
        return None
    return size


def _samples_last(path: Path, data: np.ndarray, axes: str) -> np.ndarray:
    """A page as (rows, cols) or (rows, cols, samples), whatever order its samples are stored in
    (interleaved ``YXS`` or planar ``SYX``); any other extra axis means a stack."""
    if len(axes) != data.ndim:  # a damaged header: tifffile decoded something else than the page declares
        raise ImageReadError(path, f"is damaged: its page declares axes {axes} but decodes to an array of shape "
                                   f"{data.shape}.", "Export the image again.")
    squeezed = "".join(a for a, n in zip(axes, data.shape, strict=True) if n > 1 or a in "YX")
    data = data.reshape([n for a, n in zip(axes, data.shape, strict=True) if n > 1 or a in "YX"])
    if squeezed == "YX" or squeezed == "YXS":
        return data
    if squeezed == "SYX":
        return np.moveaxis(data, 0, -1)
    extra = [a for a in squeezed if a not in "YXS"]
    raise ImageReadError(path, f"holds {data.shape[squeezed.index(extra[0])]} planes in one page "
                               f"(axes {axes}).", "Save a single plane.")


def _to_gray(path: Path, data: np.ndarray, notes: list[str]) -> np.ndarray:
    if data.ndim == 2:
        return data
    if data.ndim == 3 and data.shape[-1] in (3, 4):
        notes.append("colour image converted to gray (luminance)" +
                     ("; alpha channel ignored" if data.shape[-1] == 4 else ""))
        gray = data[..., :3].astype(np.float32) @ _GRAY_WEIGHTS.astype(np.float32)
        if data.dtype.kind in "iu":
            gray = np.clip(np.rint(gray), 0, np.iinfo(data.dtype).max).astype(data.dtype)
        return gray
    if data.ndim == 3 and data.shape[-1] == 2:  # gray + alpha
        notes.append("alpha channel ignored")
        return data[..., 0]
    raise ImageReadError(path, f"has an unsupported layout (array shape {data.shape}).",
                         "Save it as a single grayscale plane.")


# -- normalisation -------------------------------------------------------------

#: Largest number of pixels sampled to estimate percentiles; larger images are
#: sampled on a regular grid so that memory and time stay bounded.
_PERCENTILE_SAMPLES = 4_000_000


@dataclass(frozen=True)
class Normalization:
    """How raw intensities become network input (stored in every bundle).

    method "percentile": ``(x - p_low) / (p_high - p_low)`` with the image's own
    percentiles, which works for 8-bit, 16-bit and float inputs alike;
    method "scale": ``x / divisor`` (the prototype divided 8-bit images by 255);
    method "background": ``(x - background) / noise``, both estimated locally on
    blocks of ``block`` x ``block`` px (see :func:`background_levels`): spots come
    out in units of their local noise SD wherever they sit, and an image of plain
    noise stays plain noise of SD 1 (the percentiles stretch it to full range).
    Blocks of 16 px follow the edge of a bright nucleus closely enough that spots
    just inside it are not left on a residual step (with 32 px, spots 8-12 px
    inside the edge of a plateau 30 noise SDs high got probabilities of 0.1-0.3
    instead of 0.94); bundles store their block, so older ones keep 32.

    ``noise_scale`` (px, "background" only): when above 0, the pixel noise is
    multiplied by the image's noise correlation at that scale (see
    :func:`noise_correlation`), so that noise which is smooth over a few pixels,
    as in most real microscope images, counts in units of what it looks like at
    the size of a spot rather than of its much smaller pixel-to-pixel part.
    0 (bundles before format 3) keeps the pixel noise.
    """

    method: str = "percentile"
    low: float = 1.0
    high: float = 99.8
    divisor: float = 255.0
    block: int = 16
    noise_scale: float = 0.0

    def __post_init__(self) -> None:
        if self.method not in NORMALIZATION_METHODS:
            raise ValueError(f"normalisation method must be one of {', '.join(NORMALIZATION_METHODS)}, "
                             f"got {self.method!r}")
        if self.method == "percentile" and not 0 <= self.low < self.high <= 100:
            raise ValueError(f"percentiles must satisfy 0 <= low < high <= 100, got {self.low}, {self.high}")
        if self.method == "scale" and not self.divisor > 0:
            raise ValueError(f"divisor must be positive, got {self.divisor}")
        if self.method == "background" and not (isinstance(self.block, int) and self.block >= 8):
            raise ValueError(f"background block must be an integer of at least 8 px, got {self.block!r}")
        if not (isinstance(self.noise_scale, (int, float)) and 0 <= self.noise_scale <= 8):
            raise ValueError(f"noise scale must be between 0 and 8 px, got {self.noise_scale!r}")
        if self.noise_scale and self.method != "background":
            raise ValueError("a noise scale needs the background normalisation")

    def to_dict(self) -> dict[str, Any]:
        if self.method == "scale":
            return {"method": "scale", "divisor": self.divisor}
        if self.method == "background":
            if self.noise_scale:
                return {"method": "background", "block": self.block, "noise_scale": self.noise_scale}
            return {"method": "background", "block": self.block}
        return {"method": "percentile", "low": self.low, "high": self.high}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Normalization:
        return cls(**data)


NORMALIZATION_METHODS = ("percentile", "scale", "background")


def normalization_range(data: np.ndarray, norm: Normalization) -> tuple[float, float]:
    """The (low, high) intensities that map to 0 and 1 for this image ("percentile" and "scale")."""
    if norm.method == "background":
        raise ValueError("the background normalisation has no single range; use image_levels")
    if norm.method == "scale":
        return 0.0, float(norm.divisor)
    sample = data
    if data.size > _PERCENTILE_SAMPLES:
        step = math.ceil(math.sqrt(data.size / _PERCENTILE_SAMPLES))
        sample = data[::step, ::step]
    lo, hi = np.percentile(sample, [norm.low, norm.high])
    return float(lo), float(hi)


def apply_normalization(data: np.ndarray, low: float, high: float) -> np.ndarray:
    """``(data - low) / (high - low)`` as a new float32 array (the input is untouched)."""
    x = np.asarray(data, dtype=np.float32)
    # Work in place when asarray made a fresh copy, so big images need one
    # float32 array, not two; never modify the caller's array.
    out = x if x is not data else x.copy()
    out -= np.float32(low)
    out *= np.float32(1.0 / max(high - low, 1e-6))
    return out


def normalize(data: np.ndarray, norm: Normalization) -> np.ndarray:
    """The network input for a 2-D image: float32, same shape.

    Training applies the same :func:`image_levels` of the whole image to its
    patches, so both see identical values.
    """
    return image_levels(data, norm).apply(data)


class Levels:
    """What one image's normalisation needs, estimated once from the whole image.

    ``apply(x, rows, cols)`` normalises ``x``, a part of the image (or of its
    reflection beyond the edges) whose row ``i`` is image row ``rows[i]`` and
    whose column ``j`` is image column ``cols[j]`` (indices into the image, 0-based;
    default: ``x`` is the whole image). A pixel's value depends only on the pixel
    and its position, so tiles and patches equal crops of the normalised image.
    """

    def apply(self, x: np.ndarray, rows: np.ndarray | None = None, cols: np.ndarray | None = None) -> np.ndarray:
        raise NotImplementedError


@dataclass(frozen=True)
class RangeLevels(Levels):
    """``(x - low) / (high - low)`` everywhere ("percentile" and "scale")."""

    low: float
    high: float

    def apply(self, x: np.ndarray, rows: np.ndarray | None = None, cols: np.ndarray | None = None) -> np.ndarray:
        return apply_normalization(x, self.low, self.high)


#: Rows normalised at once by :class:`BackgroundLevels`, so that its interpolated
#: maps of a large image never need more than a few MiB.
_ROW_CHUNK = 256


@dataclass(frozen=True)
class BackgroundLevels(Levels):
    """``(x - background) * inverse_noise``, the two maps interpolated bilinearly
    between block centres (``centre_rows``, ``centre_cols``, in image pixels) and
    held constant beyond the outermost centres."""

    centre_rows: np.ndarray  # (gh,) float64
    centre_cols: np.ndarray  # (gw,) float64
    background: np.ndarray  # (gh, gw) float32
    inverse_noise: np.ndarray  # (gh, gw) float32, 1 / noise SD

    def maps(self, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The background and the noise SD at image ``rows`` x ``cols`` (float32 arrays)."""
        ri, rf = _interpolation(np.asarray(rows), self.centre_rows)
        ci, cf = _interpolation(np.asarray(cols), self.centre_cols)
        return (_bilinear(self.background, ri, rf, ci, cf),
                np.float32(1) / _bilinear(self.inverse_noise, ri, rf, ci, cf))

    def noise_at(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """The noise SD at the points (``rows[i]``, ``cols[i]``) (float32, one per point)."""
        return np.float32(1) / self._at(self.inverse_noise, rows, cols)

    def background_at(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """The background at the points (``rows[i]``, ``cols[i]``) (float32, one per point)."""
        return self._at(self.background, rows, cols)

    def _at(self, grid: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """``grid`` interpolated bilinearly at the points (``rows[i]``, ``cols[i]``)."""
        ri, rf = _interpolation(np.asarray(rows), self.centre_rows)
        ci, cf = _interpolation(np.asarray(cols), self.centre_cols)
        r1, c1 = np.minimum(ri + 1, grid.shape[0] - 1), np.minimum(ci + 1, grid.shape[1] - 1)
        one = np.float32(1)
        return ((one - rf) * ((one - cf) * grid[ri, ci] + cf * grid[ri, c1])
                + rf * ((one - cf) * grid[r1, ci] + cf * grid[r1, c1]))

    def apply(self, x: np.ndarray, rows: np.ndarray | None = None, cols: np.ndarray | None = None) -> np.ndarray:
        rows = np.arange(x.shape[0]) if rows is None else np.asarray(rows)
        cols = np.arange(x.shape[1]) if cols is None else np.asarray(cols)
        out = np.asarray(x, dtype=np.float32)
        out = out if out is not x else out.copy()
        ci, cf = _interpolation(cols, self.centre_cols)
        for start in range(0, len(rows), _ROW_CHUNK):
            ri, rf = _interpolation(rows[start:start + _ROW_CHUNK], self.centre_rows)
            part = out[start:start + _ROW_CHUNK]
            part -= _bilinear(self.background, ri, rf, ci, cf)
            part *= _bilinear(self.inverse_noise, ri, rf, ci, cf)
        return out


def _interpolation(positions: np.ndarray, centres: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each position the index of the grid point before it and the float32 weight of the next one."""
    if len(centres) == 1:
        return np.zeros(len(positions), np.intp), np.zeros(len(positions), np.float32)
    where = np.interp(positions.astype(np.float64), centres, np.arange(len(centres), dtype=np.float64))
    index = np.minimum(where.astype(np.intp), len(centres) - 2)
    return index, (where - index).astype(np.float32)


def _bilinear(grid: np.ndarray, ri: np.ndarray, rf: np.ndarray, ci: np.ndarray, cf: np.ndarray) -> np.ndarray:
    if grid.shape[0] > 1:
        rows = grid[ri] * (np.float32(1) - rf)[:, None] + grid[ri + 1] * rf[:, None]
    else:
        rows = np.repeat(grid, len(ri), axis=0)
    if grid.shape[1] > 1:
        return rows[:, ci] * (np.float32(1) - cf)[None, :] + rows[:, ci + 1] * cf[None, :]
    return np.repeat(rows, len(ci), axis=1)


def _block_starts(length: int, block: int) -> np.ndarray:
    """Starts of blocks of ``block`` px tiling ``length`` (the last one flush with the end)."""
    starts = np.arange(0, length - block + 1, block)
    if starts[-1] + block < length:
        starts = np.append(starts, length - block)
    return starts


def _blocks(x: np.ndarray, rows: np.ndarray, cols: np.ndarray, br: int, bc: int) -> np.ndarray:
    """The pixels of every block, (n_block_rows, n_block_cols, br * bc)."""
    out = x[rows[:, None] + np.arange(br)][:, :, cols[:, None] + np.arange(bc)]  # (gh, br, gw, bc)
    return out.transpose(0, 2, 1, 3).reshape(len(rows), len(cols), br * bc)


#: Robust SD of the high-pass ``x - mean of its 4 neighbours`` of white noise of SD 1:
#: sqrt(1 + 4/16); 1.4826 turns a median absolute deviation into an SD.
_HIGH_PASS_SD = math.sqrt(1.25)
_MAD_TO_SD = 1.4826


def high_pass(x: np.ndarray) -> np.ndarray:
    """``x`` minus the mean of its 4 neighbours (float32, same shape; 0 on the outermost pixels).

    Flat backgrounds and linear gradients give 0; white noise of SD s gives SD
    s * sqrt(1.25).
    """
    x = np.asarray(x, dtype=np.float32)
    out = np.zeros(x.shape, np.float32)
    if min(x.shape) >= 3:
        inner = out[1:-1, 1:-1]
        np.add(x[:-2, 1:-1], x[2:, 1:-1], out=inner)
        inner += x[1:-1, :-2]
        inner += x[1:-1, 2:]
        inner *= np.float32(-0.25)
        inner += x[1:-1, 1:-1]
    return out


def robust_sd(values: np.ndarray) -> float:
    """The SD of ``values`` from their median absolute deviation (Gaussian values; outliers count little)."""
    return float(_MAD_TO_SD * np.median(np.abs(values - np.median(values))))


def noise_sd(x: np.ndarray) -> float:
    """Robust SD of the pixel noise of a 2-D image (from the MAD of :func:`high_pass`)."""
    hp = high_pass(x)
    if min(x.shape) >= 3:
        hp = hp[1:-1, 1:-1]
    return robust_sd(hp) / _HIGH_PASS_SD


#: Windows of this many px (at most _CORRELATION_WINDOWS of them, spread evenly
#: over the image) measure the noise correlation, so that it costs the same on
#: every image above a megapixel.
_CORRELATION_WINDOW = 256
_CORRELATION_WINDOWS = 16


def _block_mad(x: np.ndarray, block: int) -> np.ndarray:
    """Median absolute deviation of every ``block`` x ``block`` block of ``x`` (the grid of blocks)."""
    h, w = x.shape
    br, bc = min(block, h), min(block, w)
    b = _blocks(x, _block_starts(h, br), _block_starts(w, bc), br, bc)
    return np.median(np.abs(b - np.median(b, axis=-1, keepdims=True)), axis=-1)


@functools.lru_cache(maxsize=8)
def _smoothed_high_pass_gain(scale: float) -> float:
    """SD of :func:`high_pass` smoothed by a Gaussian of SD ``scale`` on white noise of SD 1."""
    from scipy import ndimage

    half = math.ceil(4 * scale) + 2
    delta = np.zeros((2 * half + 1,) * 2, np.float64)
    delta[half, half] = 1
    return float(np.sqrt((ndimage.gaussian_filter(high_pass(delta), scale) ** 2).sum()))


def sample_windows(shape: tuple[int, int], margin: int, count: int = _CORRELATION_WINDOWS) -> list[tuple[slice, slice]]:
    """Windows of ``_CORRELATION_WINDOW`` px plus ``margin`` on each side (fewer at the image's
    edges), at most ``count`` (a square) of them spread evenly over an image of ``shape``:
    where the image's noise is measured, at the same cost on every image above a megapixel.
    Windows too small to keep 3 px inside their margins are left out."""
    size = _CORRELATION_WINDOW + 2 * margin
    per_axis = math.isqrt(count)
    starts_r, starts_c = (np.unique(np.linspace(0, max(n - size, 0), min(per_axis, -(-n // size))).astype(int))
                          for n in shape)
    return [(slice(r, min(r + size, shape[0])), slice(c, min(c + size, shape[1])))
            for r in starts_r for c in starts_c
            if min(min(r + size, shape[0]) - r, min(c + size, shape[1]) - c) >= 2 * margin + 3]


#: How many times the noise at a spot's scale that the correlation of neighbouring pixels gives
#: (:func:`noise_model`) :func:`noise_correlation` may find: spots crowded in every block make more
#: (3.7 times with 6,400 spots of SD 1.2-2.5 px on a megapixel); noise of every kind benchmarked
#: 0.8-1.4 times, the hybiss sample's texture 1.6.
CROWD_CORRELATION = 2.0


def noise_correlation(data: np.ndarray, scale: float, block: int = 16) -> float:
    """How much larger a 2-D image's noise is at the scale of a spot than its pixel noise says (>= 1).

    The pixel noise (:func:`high_pass`) is what differs from pixel to pixel. Noise
    that is smooth over a few pixels (cameras that bin or interpolate, optics,
    deconvolution, denoising: the neighbours of most real microscope images correlate
    by 0.5-0.8) has a small pixel part and makes bumps the size of spots. Per block,
    the robust SD of the high-pass smoothed by a Gaussian of SD ``scale`` px is
    compared with what white noise of the block's pixel noise would give; the
    median ratio over the blocks (so that spots and clutter in a minority of
    blocks do not count) is returned, 1 for white noise and never less; and never more than
    :data:`CROWD_CORRELATION` times what the correlation of neighbouring pixels gives
    (:func:`noise_model`): spots in every block (thousands on a megapixel) count at a spot's scale
    as noise does, but hardly at the pixel's.
    """
    from scipy import ndimage

    margin = math.ceil(3 * scale) + 1
    gain = _smoothed_high_pass_gain(float(scale)) / _HIGH_PASS_SD
    inner = (slice(margin, -margin), slice(margin, -margin))
    ratios = []
    for box in sample_windows(data.shape, margin):
        window = np.asarray(data[box], dtype=np.float32)
        hp = high_pass(window)
        smooth = ndimage.gaussian_filter(hp, scale)
        pixel, spot = _block_mad(hp[inner], block).ravel(), _block_mad(smooth[inner], block).ravel()
        ok = pixel > 0
        ratios.append(spot[ok] / (pixel[ok] * gain))
    ratio = np.concatenate(ratios) if ratios else np.zeros(0)
    measured = max(1.0, float(np.median(ratio))) if ratio.size else 1.0
    # More than CROWD_CORRELATION times what the noise's own correlation gives is spots, not noise.
    model = noise_model([data[box] for box in sample_windows(data.shape, 0)])
    if model is None:
        return measured
    own = (model.sd(lambda x: ndimage.gaussian_filter(high_pass(x), scale), ("smoothed high-pass", scale))
           / (model.sd(high_pass, ("high-pass",)) * gain))
    return max(1.0, min(measured, CROWD_CORRELATION * own))


#: Gaussian blurs (SD, px) of white noise among which :func:`noise_model` chooses an image's.
_BLURS: tuple[float, ...] = (0.0, *(round(0.3 + 0.05 * i, 2) for i in range(35)))
#: The high-pass of each window is measured on at most this many px a side (its middle): enough for
#: its neighbours' correlation within about 0.01, at a quarter of the cost of a whole window.
_MODEL_WINDOW = 128


def _impulse(filter_of: Callable[[np.ndarray], np.ndarray], blur: float = 0.0) -> np.ndarray:
    """``filter_of`` (a linear filter of 2-D float64 arrays) applied to a point, blurred by ``blur`` px."""
    from scipy import ndimage

    half = 32
    delta = np.zeros((2 * half + 1,) * 2, np.float64)
    delta[half, half] = 1
    return filter_of(ndimage.gaussian_filter(delta, blur) if blur > 0 else delta)


@functools.lru_cache(maxsize=1)
def _blur_correlations() -> np.ndarray:
    """Per blur of :data:`_BLURS`, how :func:`high_pass` correlates between neighbouring pixels on
    white noise blurred that much (-0.4 unblurred, rising with the blur)."""
    out = []
    for blur in _BLURS:
        h = _impulse(high_pass, blur)
        out.append(float((h[:, :-1] * h[:, 1:]).sum() / (h * h).sum()))
    return np.array(out)


_ENERGIES: dict[tuple, float] = {}


def _energy(filter_of: Callable[[np.ndarray], np.ndarray], blur: float, key: tuple | None) -> float:
    """The squared sum of ``filter_of``'s response to a point blurred by ``blur`` px (kept under ``key``)."""
    if key is not None and (key, blur) in _ENERGIES:
        return _ENERGIES[key, blur]
    found = float((_impulse(filter_of, blur) ** 2).sum())
    if key is not None:
        _ENERGIES[key, blur] = found
    return found


@dataclass(frozen=True)
class NoiseModel:
    """An image's noise as white noise blurred by a Gaussian of SD ``blur`` px whose high-pass
    (:func:`high_pass`) has variance ``high_pass_variance`` (:func:`noise_model`)."""

    blur: float
    high_pass_variance: float

    def sd(self, filter_of: Callable[[np.ndarray], np.ndarray], key: tuple | None = None) -> float:
        """The SD of the response of ``filter_of`` (a linear filter of 2-D float64 arrays) to this
        noise; ``key`` (hashable, naming the filter) keeps its impulse response's energy for the next call."""
        return math.sqrt(self.high_pass_variance * _energy(filter_of, self.blur, key)
                         / _energy(high_pass, self.blur, ("high-pass",)))


def noise_model(windows: list[np.ndarray]) -> NoiseModel | None:
    """The :class:`NoiseModel` of the noise of ``windows`` (2-D parts of one image): the blur whose
    high-pass (:func:`high_pass`) correlates between neighbouring pixels as theirs does (measured
    robustly, from the median absolute deviations of the sums and differences of neighbours, and
    averaged over the windows), and the median window's high-pass variance. None where no window
    has pixel noise to go by (a flat window, or one whose grey levels set it,
    :func:`grey_levels_rule`). Processing smooths most images' noise: binning, interpolation,
    denoising, deconvolution. The high-pass of a spot of SD 1.5 px or more is weak beside its
    amplitude, so this holds on images crowded with spots, where the noise measured at a spot's
    scale counts the spots (:func:`noise_correlation`)."""
    correlations, variances = [], []
    for x in windows:
        hp = high_pass(np.asarray(x, dtype=np.float32))
        if min(hp.shape) < 8:
            continue
        hp = hp[1:-1, 1:-1]
        r0, c0 = max((hp.shape[0] - _MODEL_WINDOW) // 2, 0), max((hp.shape[1] - _MODEL_WINDOW) // 2, 0)
        hp = hp[r0:r0 + _MODEL_WINDOW, c0:c0 + _MODEL_WINDOW]
        variance = robust_sd(hp.ravel()) ** 2
        if not variance > 0 or _grey_levels_set(x, variance):
            continue
        n, m = hp.shape
        sums = diffs = 0.0
        for u, v in ((hp[:, :m - 1], hp[:, 1:]), (hp[:n - 1, :], hp[1:, :])):
            sums += robust_sd((u + v).ravel()) ** 2
            diffs += robust_sd((u - v).ravel()) ** 2
        correlations.append((sums - diffs) / (sums + diffs))
        variances.append(variance)
    if not correlations:
        return None
    blur = float(np.interp(np.mean(correlations), _blur_correlations(), _BLURS))
    return NoiseModel(round(blur, 2), float(np.median(variances)))


def grey_levels_rule(x: np.ndarray) -> bool:
    """Whether the grey levels of the 2-D image ``x`` (part of one) set its pixel noise: it is of
    integers and its high-pass (:func:`high_pass`) varies by less than a grey level."""
    return _grey_levels_set(x, robust_sd(high_pass(x)[1:-1, 1:-1].ravel()) ** 2)


def _grey_levels_set(x: np.ndarray, high_pass_variance: float) -> bool:
    return np.asarray(x).dtype.kind in "iub" and high_pass_variance < 1


def background_levels(data: np.ndarray, block: int = 16, noise_scale: float = 0.0) -> BackgroundLevels:
    """Local background and noise of a 2-D image, on a grid of ``block`` px blocks.

    Per block: the background is the median, the noise SD the MAD of
    :func:`high_pass` (so spots covering under half a block, gradients and
    vignetting do not count as noise). Both grids are then median-filtered over
    3 x 3 blocks, so one block full of spots or a blob does not dent them. The
    noise has a floor of a quarter of the image's median block noise (and, for
    integer images, of a grey level's quantisation noise, 1/sqrt(12)), so flat,
    clipped or saturated regions are not blown up. With ``noise_scale`` > 0 the
    noise is multiplied by :func:`noise_correlation` at that scale.
    """
    from scipy import ndimage

    h, w = data.shape
    br, bc = min(block, h), min(block, w)
    rows, cols = _block_starts(h, br), _block_starts(w, bc)
    background = np.median(_blocks(data, rows, cols, br, bc), axis=-1)
    hp = high_pass(data)
    if min(h, w) >= 3:  # the outermost pixels have no high-pass; use their inner neighbours'
        hp = np.pad(hp[1:-1, 1:-1], 1, mode="edge")
    noise = _MAD_TO_SD / _HIGH_PASS_SD * _block_mad(hp, block)
    background = ndimage.median_filter(background, size=3, mode="nearest")
    noise = ndimage.median_filter(noise, size=3, mode="nearest")
    if noise_scale > 0:
        noise = noise * np.float32(noise_correlation(data, noise_scale, block))
    scale = float(np.abs(data).max()) if data.size else 0.0
    floor = max(0.25 * float(np.median(noise)), 1e-6 * scale, 1e-12)
    if data.dtype.kind in "iu":
        floor = max(floor, 1 / math.sqrt(12))
    return BackgroundLevels(rows + (br - 1) / 2, cols + (bc - 1) / 2, background.astype(np.float32),
                            (1.0 / np.maximum(noise, floor)).astype(np.float32))


def image_levels(data: np.ndarray, norm: Normalization) -> Levels:
    """What normalising ``data`` (a whole 2-D image) with ``norm`` needs, estimated once."""
    if norm.method == "background":
        return background_levels(data, norm.block, norm.noise_scale)
    return RangeLevels(*normalization_range(data, norm))


def filter_reach(scale: float) -> int:
    """The reach (px) of scipy's Gaussian filters at SD ``scale`` (their default truncation, 4 SD)."""
    return int(4.0 * scale + 0.5)


def crops_at(data: np.ndarray, rows: np.ndarray, cols: np.ndarray, half: int, dtype=np.float32) -> np.ndarray:
    """The (N, 2 half + 1, 2 half + 1) squares of the 2-D ``data`` centred on the pixels (``rows[i]``,
    ``cols[i]``) (integers inside the image), reflected beyond its edges (:func:`reflect_index`)."""
    offsets = np.arange(-half, half + 1)
    r = reflect_index(np.asarray(rows)[:, None] + offsets, data.shape[0])
    c = reflect_index(np.asarray(cols)[:, None] + offsets, data.shape[1])
    return np.asarray(data[r[:, :, None], c[:, None, :]], dtype=dtype)


def reflect_index(index: np.ndarray, n: int) -> np.ndarray:
    """Indices into an axis of length ``n`` for positions beyond its ends, reflected
    at the outermost pixels without repeating them (numpy's ``mode="reflect"``)."""
    if n == 1:
        return np.zeros_like(index)
    period = 2 * (n - 1)
    index = np.mod(index, period)
    return np.where(index >= n, period - index, index)
