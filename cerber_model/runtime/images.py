"""Reading images and normalising them for the network.

Images are 2-D arrays indexed ``[row, column]`` with their original dtype kept
(8/16-bit integers or float32), so intensities in track tables are in the input's
own units. BMP and PNG are read with Pillow, TIFF with tifffile. Inputs are only
ever opened for reading.

Every way a file can be unusable raises :class:`ImageReadError`, whose message
names the file, says what is wrong and what to do.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

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


class ImageReadError(Exception):
    """An image file cannot be used; the message names the file, the cause and the fix."""

    def __init__(self, path: Path | str, problem: str, fix: str = ""):
        self.path = Path(path)
        self.problem = problem
        self.fix = fix
        super().__init__(f"{self.path}: {problem}" + (f" {fix}" if fix else ""))


@dataclass
class Image:
    """A grayscale image as read from disk.

    data: 2-D array ``[row, column]``; uint8, uint16 or float32.
    path: where it was read from (None for images made in memory).
    notes: what was done on reading (e.g. colour converted to gray).
    """

    data: np.ndarray
    path: Path | None = None
    notes: list[str] = field(default_factory=list)

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
    if suffix in (".tif", ".tiff"):
        data = _read_tiff(path, page, notes)
    else:
        if page not in (None, 0):
            raise ImageReadError(path, f"has only one page; page {page} does not exist.")
        data = _read_pillow(path, notes)
    return Image(_to_gray(path, data, notes), path, notes)


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
            if converted:
                im = opened.convert("RGBA" if "A" in mode or mode == "P" else "RGB")
                if mode != "1":
                    notes.append(f"converted from Pillow mode {mode}")
            data = np.asarray(im)
    except ImageReadError:
        raise
    except PILImage.DecompressionBombError as exc:
        raise ImageReadError(path, f"declares an absurd size ({exc}).", "The file is probably damaged.") from exc
    except (OSError, SyntaxError, ValueError) as exc:
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


def _read_tiff(path: Path, page: int | None, notes: list[str]) -> np.ndarray:
    """One plane of a TIFF with tifffile (and imagecodecs: LZW, JPEG, packed 2-14 bit, ...); files
    that tifffile cannot decode but Pillow (libtiff) can, such as CCITT G3/G4, go to Pillow."""
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            # Thumbnails and pyramid levels are pages too, but not images of their own.
            pages = [p for p in tif.pages if not getattr(p, "is_reduced", False)] or list(tif.pages)
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
                return data
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
    return data


def _samples_last(path: Path, data: np.ndarray, axes: str) -> np.ndarray:
    """A page as (rows, cols) or (rows, cols, samples), whatever order its samples are stored in
    (interleaved ``YXS`` or planar ``SYX``); any other extra axis means a stack."""
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
    method "scale": ``x / divisor`` (the prototype divided 8-bit images by 255).
    """

    method: str = "percentile"
    low: float = 1.0
    high: float = 99.8
    divisor: float = 255.0

    def __post_init__(self) -> None:
        if self.method not in ("percentile", "scale"):
            raise ValueError(f"normalisation method must be 'percentile' or 'scale', got {self.method!r}")
        if self.method == "percentile" and not 0 <= self.low < self.high <= 100:
            raise ValueError(f"percentiles must satisfy 0 <= low < high <= 100, got {self.low}, {self.high}")
        if self.method == "scale" and not self.divisor > 0:
            raise ValueError(f"divisor must be positive, got {self.divisor}")

    def to_dict(self) -> dict[str, Any]:
        if self.method == "scale":
            return {"method": "scale", "divisor": self.divisor}
        return {"method": "percentile", "low": self.low, "high": self.high}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Normalization:
        return cls(**data)


def normalization_range(data: np.ndarray, norm: Normalization) -> tuple[float, float]:
    """The (low, high) intensities that map to 0 and 1 for this image."""
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

    Training applies the same :func:`normalization_range` of the whole image to
    its patches, so both see identical values.
    """
    return apply_normalization(data, *normalization_range(data, norm))
