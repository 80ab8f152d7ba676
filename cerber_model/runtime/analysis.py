"""Analysis: image -> probability map -> tracks, the path every caller uses.

The CLI, the GUI and the frozen app all call :func:`analyze` (or its parts),
so every front end gives the same tracks for the same image and model.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from .bundle import Bundle, CleanBackground
from .contrast import SpotContrast, measure_contrast, noise_among_crowds
from .engine import ENGINES, Engine
from .images import (
    BackgroundLevels,
    Image,
    Levels,
    Normalization,
    RangeLevels,
    apply_normalization,
    image_levels,
    reflect_index,
)
from .progress import CancelToken, ProgressFn
from .tiling import DEFAULT_BORDER, DEFAULT_MARGIN, DEFAULT_WINDOW, count_tiles, iter_predict, pad_image
from .tracks import Tracks, add_coarse_tracks, extract_tracks

#: How many pixels a side the coarse look on a clean background (``CleanBackground.coarse``) bins
#: into one: a broad faint spot of SD 4 px at an SNR of 1 is one of SD 2 px at an SNR of 2 there.
COARSE_BINNING = 2
#: The contrast (noise SDs, at spot scales on the image itself) that a track of the coarse look
#: needs besides the setting's on the binned image: broad blobs of the background, which the
#: binned image makes spot-sized, mostly stay below it (see the README, "Clean backgrounds").
COARSE_FULL_CONTRAST = 5.0
#: A track of the full-resolution look with under 1 / COARSE_FRAGMENT of the area of the only coarse
#: track over it (and a lower highest probability) is a fragment of the broad spot that the coarse
#: track covers, which replaces it.
COARSE_FRAGMENT = 3.0


#: Pixels (one window of 256 px) on which an image's texture must be counted for its background to
#: count as clean. On fewer, a textured background may show no dip at all: a 128 px block of the
#: hybiss sample (65 dips per megapixel) expects one, and 3 of its 4 validation blocks showed none.
CLEAN_MIN_PX = 256 * 256


@dataclass
class CoarseLook:
    """The second look at an image with a clean background: the image binned
    :data:`COARSE_BINNING` x :data:`COARSE_BINNING` (float32, the mean of each block), its
    probability map from the same network, and what measuring contrast on it needs."""

    data: np.ndarray
    probability: np.ndarray
    contrast: SpotContrast


@dataclass
class AnalysisResult:
    """One analyzed image: the probability map (float32, image shape, 0..1) and tracks.

    pixel_size_source: where ``tracks.pixel_size_um`` came from: "given" (the caller's),
    "file: OME-XML" (or another source of :attr:`Image.pixel_size_source`), or "" when unknown.
    contrast: what measuring track contrast on this image needs (models with a smallest
    contrast), kept so that re-tracking at another threshold drops the same tracks.
    network: the model whose network made the probability map, where not the analyzing model's
    own ("clean" for the default model on a clean background); "" otherwise.
    coarse: the coarse look at an image with a clean background, where the model's setting for
    those asks for one (:class:`CoarseLook`); its tracks join those of ``probability``, which is
    the full-resolution map alone.
    """

    image: Image
    probability: np.ndarray
    tracks: Tracks
    model_name: str
    pixel_size_source: str = ""
    contrast: SpotContrast | None = None
    network: str = ""
    coarse: CoarseLook | None = None

    def tracks_at(self, threshold: float, min_area_px: int, pixel_size_um: float | None,
                  min_contrast: float, clean: CleanBackground | None = None,
                  cancel: CancelToken | None = None, grow_to: float | None = None) -> Tracks:
        """The tracks at another threshold (or area, pixel size, contrast) from the same map;
        the contrast filter applies where the contrast was measured. ``clean`` (a bundle's own
        setting for clean backgrounds) replaces the threshold and contrast on an image whose
        background is clean; elsewhere tracks grow down to ``grow_to`` times the threshold (a
        bundle's ``grow_to``). ``cancel`` is checked between tracks."""
        return tracks_in(self.probability, self.image.data, self.contrast, threshold, min_area_px, pixel_size_um,
                         min_contrast, clean, self.coarse, cancel, grow_to)


def tracks_in(probability: np.ndarray, data: np.ndarray, contrast: SpotContrast | None, threshold: float,
              min_area_px: int, pixel_size_um: float | None, min_contrast: float,
              clean: CleanBackground | None = None, coarse: CoarseLook | None = None,
              cancel: CancelToken | None = None, grow_to: float | None = None) -> Tracks:
    """:func:`extract_tracks`, with the setting ``clean`` instead of ``threshold`` and ``min_contrast``
    where the image's background is clean, and then the tracks of its ``coarse`` look (found at the
    same setting) that overlap none of these or replace a fragment of theirs (:func:`add_coarse_tracks`);
    elsewhere the tracks grow down to ``grow_to`` times the threshold (hysteresis, where given).
    The contrast filter applies where the contrast was measured. ``cancel`` is checked between tracks."""
    use_clean = clean_background(contrast, clean)
    if use_clean:
        assert clean is not None and contrast is not None
        threshold, min_contrast = clean.threshold, clean.min_contrast
        contrast = noise_among_crowds(contrast)
        if clean.rarity:
            contrast = replace(contrast, rarity=True)
            if coarse is not None:
                coarse = replace(coarse, contrast=replace(coarse.contrast, rarity=True))
    tracks = extract_tracks(probability, data, threshold, min_area_px, pixel_size_um, contrast,
                            min_contrast if contrast is not None else 0.0, cancel, None if use_clean else grow_to)
    if use_clean and coarse is not None:
        found = extract_tracks(coarse.probability, coarse.data, threshold, min_area_px, None, coarse.contrast,
                               min_contrast, cancel)
        tracks = add_coarse_tracks(tracks, found, data, COARSE_BINNING, contrast, COARSE_FULL_CONTRAST,
                                   COARSE_FRAGMENT, cancel)
    tracks.clean_background = use_clean
    return tracks


def bin_image(data: np.ndarray, factor: int = COARSE_BINNING) -> np.ndarray:
    """``data`` binned ``factor`` x ``factor``: the float32 mean of each block (a last row or column
    that fills no block is left out). Summed one offset at a time: no float copy of the whole image."""
    h, w = data.shape[0] // factor, data.shape[1] // factor
    out = np.zeros((h, w), dtype=np.float32)
    for dr in range(factor):
        for dc in range(factor):
            out += data[dr:h * factor:factor, dc:w * factor:factor]
    out /= factor * factor
    return out


def wants_coarse(bundle: Bundle, contrast: SpotContrast | None, shape: tuple[int, ...]) -> bool:
    """Whether an image of ``shape`` with this measured ``contrast`` gets a coarse look: its
    background is clean, ``bundle``'s setting for those asks for one, and the binned image is at
    least 16 px a side."""
    clean = bundle.config.clean_background
    return (clean is not None and clean.coarse and clean_background(contrast, clean)
            and min(shape) // COARSE_BINNING >= 16)


def coarse_tiles(shape: tuple[int, ...], window: int = DEFAULT_WINDOW) -> int:
    """How many network tiles the coarse look at an image of ``shape`` takes."""
    return count_tiles((shape[0] // COARSE_BINNING, shape[1] // COARSE_BINNING), DEFAULT_BORDER, window,
                       DEFAULT_MARGIN)


def coarse_normalization(normalization: Normalization) -> Normalization:
    """``normalization`` for the binned image: the background's blocks as large on the sample
    as at full resolution."""
    if normalization.method != "background":
        return normalization
    return replace(normalization, block=max(8, normalization.block // COARSE_BINNING))


def coarse_look(data: np.ndarray, engine: Engine, normalization: Normalization, *, window: int = DEFAULT_WINDOW,
                progress: ProgressFn | None = None, cancel: CancelToken | None = None) -> CoarseLook:
    """The :class:`CoarseLook` at the 2-D image ``data`` with ``engine`` (the network that ran on it)."""
    binned = bin_image(data)
    normalization = coarse_normalization(normalization)
    levels = image_levels(binned, normalization)
    contrast = measure_contrast(binned, levels=levels if isinstance(levels, BackgroundLevels) else None)
    probability = predict_probability(binned, engine, normalization, window=window, progress=progress,
                                      cancel=cancel, levels=levels)
    return CoarseLook(binned, probability, contrast)


def clean_background(contrast: SpotContrast | None, clean: CleanBackground | None) -> bool:
    """Whether an image (its measured ``contrast``) gets a bundle's setting ``clean`` for clean
    backgrounds: its background is clean by that setting's texture (:func:`clean_texture`)."""
    return clean is not None and clean_texture(contrast, clean.max_texture)


def clean_texture(contrast: SpotContrast | None, max_texture: float) -> bool:
    """Whether an image's background (its measured ``contrast``) is clean: its texture is at most
    ``max_texture``, counted on at least :data:`CLEAN_MIN_PX` pixels."""
    return contrast is not None and contrast.texture <= max_texture and contrast.texture_px >= CLEAN_MIN_PX


def network_for(bundle: Bundle, contrast: SpotContrast | None) -> Bundle:
    """The bundle whose network makes the probability map of an image with this measured
    ``contrast``: on a clean background, the one ``bundle``'s setting for clean backgrounds names
    (:meth:`Bundle.clean_network`), else ``bundle`` itself."""
    return bundle.clean_network() if clean_background(contrast, bundle.config.clean_background) else bundle


def network_name(bundle: Bundle, contrast: SpotContrast | None) -> str:
    """The name of the other model whose network :func:`network_for` gives, "" for ``bundle``'s own
    (read from the setting: nothing is loaded)."""
    clean = bundle.config.clean_background
    return clean.network if clean is not None and clean.network and clean_background(contrast, clean) else ""


def network_engine(bundle: Bundle, contrast: SpotContrast | None, engine=None):
    """The engine of :func:`network_for`'s network; ``engine``, if given, is ``bundle``'s and says
    which kind to run (the other network runs on the same kind). An engine of no kind Cerber
    makes (a stand-in of the caller's) runs as it is."""
    network = network_for(bundle, contrast)
    if network is bundle:
        return engine or bundle.engine()
    if engine is not None and engine.name not in ENGINES:
        return engine
    return network.engine(engine.name if engine is not None else None)


def predict_probability(
    data: np.ndarray,
    engine: Engine,
    normalization: Normalization,
    *,
    window: int = DEFAULT_WINDOW,
    margin: int = DEFAULT_MARGIN,
    border: int = DEFAULT_BORDER,
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
    levels: Levels | None = None,
) -> np.ndarray:
    """The track probability map of a 2-D image of any size, tile by tile.

    ``data`` is the raw image, normalised as ``normalization`` says (a bundle's), with
    ``levels`` when they were estimated already (:func:`image_levels` of ``data``).
    ``progress(tiles_done, tiles_total)`` is called after each tile; ``cancel``
    is checked before each tile.
    """
    if data.ndim != 2 or min(data.shape) < 1:
        raise ValueError(f"expected a 2-D image, got shape {data.shape}")
    # Normalise with levels estimated on the image itself, but pad the raw (often
    # 8/16-bit) data first: one float32 copy of the image instead of two. The padding
    # is normalised as the image pixels it reflects, so the padded input is the
    # reflection of the normalised image, and every tile a crop of it.
    if levels is None:
        levels = image_levels(data, normalization)
    padded, offset = pad_image(data, border)
    if isinstance(levels, RangeLevels):
        padded = apply_normalization(padded, levels.low, levels.high)
    else:
        rows = reflect_index(np.arange(padded.shape[0]) - offset[0], data.shape[0])
        cols = reflect_index(np.arange(padded.shape[1]) - offset[1], data.shape[1])
        padded = levels.apply(padded, rows, cols)
    out = np.empty(data.shape, dtype=np.float32)
    if cancel:
        cancel.check()
    for done, total in iter_predict(padded, engine.predict, out, offset, window, margin):
        if progress:
            progress(done, total)
        if cancel and done < total:
            cancel.check()
    return out


#: Peak memory of :func:`analyze` per image pixel (float copies, the probability map, labels and
#: their measurement), measured: a whole 8000 x 8000 px analysis with the default model peaked at
#: 2.14 GiB (35.9 bytes per pixel; README), while extracting the tracks; 2.41 GiB before per-track
#: statistics were taken over the tracks' pixels only. With the coarse look on a clean background and
#: tracks added from it (the table then measured twice), 2.51 GiB in all, 2.24 GiB beyond what the
#: process held before (37.6 bytes per pixel; README). The check keeps the higher figure as a margin.
ANALYSIS_BYTES_PER_PIXEL = 41


class NotEnoughMemory(MemoryError):
    """An image this computer cannot analyze in its free memory; the message says what it needs."""


def available_memory() -> int | None:
    """Bytes of memory free for new allocations (Linux's MemAvailable); None where unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def check_memory(shape: tuple[int, ...]) -> None:
    """Refuse, before anything is allocated, an image whose analysis would not fit in free memory
    (a small compressed TIFF can hold 16384 x 16384 px, which needs about 10 GiB)."""
    need = shape[0] * shape[1] * ANALYSIS_BYTES_PER_PIXEL
    free = available_memory()
    if free is not None and need > free:
        raise NotEnoughMemory(f"analyzing a {shape[1]} x {shape[0]} px image needs about {need / 2**30:.1f} GiB "
                              f"of memory, and {free / 2**30:.1f} GiB is free. Close other programs, or crop or "
                              "bin the image first.")


def analyze(
    image: Image | np.ndarray,
    bundle: Bundle,
    *,
    threshold: float | None = None,
    min_contrast: float | None = None,
    pixel_size_um: float | None = None,
    engine=None,
    window: int = DEFAULT_WINDOW,
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
) -> AnalysisResult:
    """Analyze one image with ``bundle``: probability map, then tracks.

    ``threshold`` and ``min_contrast`` override the bundle's decision threshold and smallest track
    contrast (either turns its setting for clean backgrounds off); ``pixel_size_um``
    (micrometres per pixel) adds a track density per mm^2, and wins over the pixel size the
    image's file gives (``image.pixel_size_um``), which is used otherwise. Raises
    :class:`NotEnoughMemory` before starting when the image would not fit in free memory.
    ``progress(done, total)`` follows the network's tiles; once they are all done, the tracks are
    found, with ``cancel`` checked between tracks as between tiles (:class:`Cancelled`).
    """
    if not isinstance(image, Image):
        image = Image(np.asarray(image))
    pixel_size_um, source = image_pixel_size(image, pixel_size_um)
    check_memory(image.data.shape)
    levels = image_levels(image.data, bundle.config.normalization)
    # Before the probability map exists: less memory at once.
    contrast = bundle_contrast(image, bundle, levels, min_contrast)
    probability, look = predict_maps(image.data, bundle, contrast, levels, engine, window=window, progress=progress,
                                     cancel=cancel)
    tracks = tracks_from_probability(image, probability, bundle, threshold, pixel_size_um, contrast, look, cancel,
                                     min_contrast)
    return AnalysisResult(image, probability, tracks, bundle.name, source, contrast, network_name(bundle, contrast),
                          look)


def predict_maps(data: np.ndarray, bundle: Bundle, contrast: SpotContrast | None, levels: Levels | None = None,
                 engine=None, *,
                 window: int = DEFAULT_WINDOW, progress: ProgressFn | None = None,
                 cancel: CancelToken | None = None) -> tuple[np.ndarray, CoarseLook | None]:
    """The probability map of the 2-D image ``data`` (its measured ``contrast`` and network input
    ``levels``, estimated here unless given) from the network :func:`network_engine` gives, and the
    :class:`CoarseLook` at it where :func:`wants_coarse`; ``progress`` follows the tiles of both."""
    network = network_engine(bundle, contrast, engine)
    coarse = wants_coarse(bundle, contrast, data.shape)
    full, later = progress_in_turn(progress, coarse_tiles(data.shape, window) if coarse else 0)
    probability = predict_probability(data, network, bundle.config.normalization, window=window, progress=full,
                                      cancel=cancel, levels=levels)
    look = coarse_look(data, network, bundle.config.normalization, window=window, progress=later,
                       cancel=cancel) if coarse else None
    return probability, look


def progress_in_turn(progress: ProgressFn | None, later_total: int) -> tuple[ProgressFn | None, ProgressFn | None]:
    """Two progress callbacks for two tile runs one after the other, reporting to ``progress`` as one
    run: the first's totals grow by ``later_total`` (the second's tiles), the second's counts start
    where the first's ended."""
    if progress is None or not later_total:
        return progress, progress
    first_total = [0]

    def first(done: int, total: int) -> None:
        first_total[0] = total
        progress(done, total + later_total)

    def second(done: int, total: int) -> None:
        progress(first_total[0] + done, first_total[0] + total)

    return first, second


def bundle_contrast(image: Image, bundle: Bundle, levels: Levels | None = None,
                    min_contrast: float | None = None) -> SpotContrast | None:
    """What measuring track contrast on ``image`` needs, if tracks of low contrast are dropped: below
    ``min_contrast`` where given (the user's), else below ``bundle``'s own; ``levels``: the network's
    input levels of ``image``, used again when they are a background's."""
    if (bundle.config.min_contrast if min_contrast is None else min_contrast) <= 0:
        return None
    return measure_contrast(image.data, levels=levels if isinstance(levels, BackgroundLevels) else None)


def image_pixel_size(image: Image, given: float | None = None) -> tuple[float | None, str]:
    """The pixel size (µm) to use for ``image`` and where it came from: ``given`` ("given") wins
    over the file's (``"file: <where>"``); ``(None, "")`` when neither is known."""
    if given is not None:
        return given, "given"
    if image.pixel_size_um is not None:
        return image.pixel_size_um, f"file: {image.pixel_size_source}"
    return None, ""


def tracks_from_probability(image: Image, probability: np.ndarray, bundle: Bundle, threshold: float | None = None,
                            pixel_size_um: float | None = None, contrast: SpotContrast | None = None,
                            coarse: CoarseLook | None = None, cancel: CancelToken | None = None,
                            min_contrast: float | None = None) -> Tracks:
    """The tracks of ``image`` in its probability map, with ``bundle``'s threshold and smallest
    contrast (unless ``threshold`` or ``min_contrast`` is given; contrast measured here unless
    ``contrast`` is given) and smallest track area: the second half of :func:`analyze`. With
    neither given, an image with a clean background gets the bundle's setting for those
    (``config.clean_background``), and the tracks of its ``coarse`` look, if given; elsewhere, and
    wherever the user sets either, tracks grow as the bundle says (``config.grow_to``). ``cancel``
    is checked between tracks."""
    if contrast is None:
        contrast = bundle_contrast(image, bundle, min_contrast=min_contrast)
    own = threshold is None and min_contrast is None
    return tracks_in(probability, image.data, contrast, bundle.config.threshold if threshold is None else threshold,
                     bundle.config.min_area_px, pixel_size_um,
                     bundle.config.min_contrast if min_contrast is None else min_contrast,
                     bundle.config.clean_background if own else None, coarse, cancel, bundle.config.grow_to)
