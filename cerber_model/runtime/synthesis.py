"""Synthetic training data: spots ("tracks") on an uneven, noisy background.

Reproduces the prototype's recipe, every parameter adjustable through
:class:`Recipe` (written as ``recipe.json`` beside the data):

* background: a constant offset plus Gaussian noise, clipped to 0..255 per pixel
  (``clip_noise``; no camera does this before the rest of the image is added: the clipped
  pixels trace the tracks without noise, which a network can learn to read);
* tracks: rotated 2-D Gaussians (SDs 2-6 px, amplitude a fraction of the offset);
* 6-9 large smooth inhomogeneities and one wide centred "vignetting" Gaussian;
* the sum min-max scaled to 0..255 and stored as 8-bit;
* mask: 255 inside each track's rotated 1-sigma ellipse.

Fixed here: the mask ellipse has the same orientation as its spot (the prototype
rotated them in opposite directions). Gaussians are evaluated with numpy over a
local window (the bounding box of the 4-SD ellipse) instead of pixel by pixel in
Python; the wide, smooth background ones on a coarser grid, interpolated linearly
(at most 1/512 of their amplitude off).

Every image draws from its own random generator seeded by ``(seed, index)``, so a
data set is byte-identical whatever the number of worker processes.

This recipe is named "prototype"; "realistic" (:mod:`.realistic`, generator v2)
adds small and clustered spots, clutter labelled as background and a camera
model; "mixed" (:class:`MixedRecipe`) draws each image from one of several
recipes, by weight. :data:`RECIPE_NAMES` lists the names, :func:`named_recipe` and
:func:`recipe_from_dict` make any; :func:`generate_dataset` writes all.
Angles are counter-clockwise from the column axis as displayed; coordinates
(row, col), 0-based.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Union

import numpy as np

from .progress import CancelToken, ProgressFn

if TYPE_CHECKING:
    from .realistic import RealisticRecipe

WINDOW_SDS = 4.0  # Gaussians are evaluated out to this many SDs from their centre


@dataclass(frozen=True)
class Recipe:
    """Parameters of one synthetic image (ranges are uniform (low, high))."""

    height: int = 1608
    width: int = 1608
    offset: tuple[float, float] = (10.0, 95.0)
    noise_sd_min: float = 5.0
    noise_sd_offset_factor: float = 3.0  # noise SD ~ U(noise_sd_min, factor * offset)
    tracks: tuple[int, int] = (0, 20)  # number of tracks per image (inclusive)
    centre_fraction: tuple[float, float] = (200 / 1608, 1400 / 1608)  # of each side
    track_sd: tuple[float, float] = (2.0, 6.0)
    track_amplitude_factor: tuple[float, float] = (0.35, 0.74)  # times the offset
    # If set, track amplitude = U(snr) * noise SD instead (for SNR sweeps).
    snr: tuple[float, float] | None = None
    inhomogeneities: tuple[int, int] = (6, 9)
    inhomogeneity_sd: tuple[float, float] = (20.0, 450.0)
    inhomogeneity_amplitude: tuple[float, float] = (20.0, 95.0)
    vignette_sd: tuple[float, float] = (700.0, 1000.0)
    vignette_amplitude: tuple[float, float] = (120.0, 190.0)
    mask_sigmas: float = 1.0  # mask = inside this many SDs of the track
    # Noise and offset clipped to 0..255 before the tracks and the background are added (the
    # prototype's way); False keeps the noise whole, as a camera whose offset keeps it above 0.
    clip_noise: bool = True

    def __post_init__(self) -> None:
        if self.height < 8 or self.width < 8:
            raise ValueError(f"images must be at least 8 x 8 px, got {self.height} x {self.width}")
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, tuple) and value[0] > value[1]:
                raise ValueError(f"recipe range {f.name} has low > high: {value}")
        if self.tracks[0] < 0:
            raise ValueError("the number of tracks cannot be negative")
        if not 0 <= self.centre_fraction[0] <= self.centre_fraction[1] <= 1:
            raise ValueError(f"centre_fraction must lie within 0..1, got {self.centre_fraction}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Recipe:
        return cls(**recipe_settings(cls, data))


def recipe_settings(cls: type, data: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments of recipe class ``cls`` in ``data`` (JSON lists become tuples);
    a setting the class does not have is an error that names it."""
    unknown = set(data) - {f.name for f in fields(cls)}
    if unknown:
        raise ValueError(f"unknown recipe settings: {', '.join(sorted(unknown))}")
    return {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}


@dataclass
class Sample:
    """One synthetic image with its ground truth."""

    image: np.ndarray  # uint8, or uint16 for 12- and 16-bit images (H, W)
    mask: np.ndarray  # uint8 (H, W), 0 or 255
    centres: np.ndarray  # (N, 2) float (row, col)
    snr: np.ndarray  # (N,) track amplitude / noise SD
    sds: np.ndarray | None = None  # (N, 2) SDs along and across each spot's axis, px


def _add_gaussian(canvas: np.ndarray, r0: float, c0: float, sd_u: float, sd_v: float, angle: float,
                  amplitude: float, mask: np.ndarray | None = None, mask_sigmas: float = 1.0,
                  step: int = 1) -> None:
    """Add a rotated Gaussian to ``canvas`` in place, over the bounding box of its 4-SD ellipse.

    ``sd_u`` is the SD along the axis at ``angle`` (counter-clockwise from the
    column axis as displayed), ``sd_v`` across it. Optionally marks the
    ``mask_sigmas`` ellipse (same orientation) in ``mask``. With ``step`` > 1 the
    canvas is a coarse grid: its element (i, j) is the pixel (i * step, j * step).
    """
    h, w = canvas.shape
    cos, sin = math.cos(angle), math.sin(angle)
    # The bounding box of the 4-SD ellipse.
    reach_r = WINDOW_SDS * math.hypot(sd_u * sin, sd_v * cos)
    reach_c = WINDOW_SDS * math.hypot(sd_u * cos, sd_v * sin)
    r_lo, r_hi = max(int(math.floor((r0 - reach_r) / step)), 0), min(int(math.ceil((r0 + reach_r) / step)) + 1, h)
    c_lo, c_hi = max(int(math.floor((c0 - reach_c) / step)), 0), min(int(math.ceil((c0 + reach_c) / step)) + 1, w)
    if r_lo >= r_hi or c_lo >= c_hi:
        return
    f32 = np.float32
    dy = np.arange(r_lo, r_hi, dtype=f32) * f32(step) - f32(r0)
    dx = np.arange(c_lo, c_hi, dtype=f32) * f32(step) - f32(c0)
    # With u = dx cos - dy sin and v = dx sin + dy cos, (u/sd_u)^2 + (v/sd_v)^2 is the quadratic
    # form a dx^2 + b dx dy + c dy^2. The exponent -q/2 + ln(amplitude) is built from one outer
    # product and two broadcast sums over the window, in float32; then one exp.
    iu, iv = 1.0 / sd_u**2, 1.0 / sd_v**2
    a = cos * cos * iu + sin * sin * iv
    c = sin * sin * iu + cos * cos * iv
    b = 2.0 * sin * cos * (iv - iu)
    log_amplitude = math.log(amplitude) if amplitude > 0 else 0.0
    q = np.multiply.outer(dy * f32(-0.5 * b), dx)
    q += (f32(-0.5 * a) * dx * dx + f32(log_amplitude))[None, :]
    q += (f32(-0.5 * c) * dy * dy)[:, None]
    if mask is not None:
        mask[r_lo:r_hi, c_lo:c_hi] |= q >= f32(-0.5 * mask_sigmas**2 + log_amplitude)
    np.exp(q, out=q)
    if amplitude <= 0:
        q *= f32(amplitude)
    canvas[r_lo:r_hi, c_lo:c_hi] += q


#: Smooth Gaussians are rendered on a grid with at least this many grid steps per SD (of
#: their narrower axis), then interpolated linearly: the error is at most
#: step^2 / (8 SD^2) = 1/512 of the amplitude (under 0.2 grey levels for the recipe's
#: background, whose noise SD is 5 or more), for far fewer pixels computed.
GRID_SDS_PER_STEP = 8
MAX_GRID_STEP = 16


def grid_step(sd: float) -> int:
    """The coarsest power-of-two grid step on which a Gaussian of SD ``sd`` is rendered."""
    step = 1
    while step * 2 <= min(sd / GRID_SDS_PER_STEP, MAX_GRID_STEP):
        step *= 2
    return step


def _grid_shape(h: int, w: int, step: int) -> tuple[int, int]:
    return (h - 2) // step + 2, (w - 2) // step + 2  # the last grid point lies at or beyond h - 1, w - 1


def _refine(grid: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """``grid`` on a grid of half its step (midpoints averaged), cropped to ``shape``."""
    h, w = shape
    rows = np.empty((2 * grid.shape[0] - 1, grid.shape[1]), np.float32)
    rows[0::2] = grid
    np.add(grid[:-1], grid[1:], out=rows[1::2])
    rows[1::2] *= np.float32(0.5)
    rows = rows[:h]
    out = np.empty((h, 2 * grid.shape[1] - 1), np.float32)
    out[:, 0::2] = rows
    np.add(rows[:, :-1], rows[:, 1:], out=out[:, 1::2])
    out[:, 1::2] *= np.float32(0.5)
    return out[:, :w]


def add_smooth(canvas: np.ndarray, gaussians) -> None:
    """Add wide Gaussians (rows: row, col, sd along, sd across, angle, amplitude) to ``canvas``.

    Each is rendered on the coarsest grid its SD allows (see :func:`grid_step`); the
    grids are refined from coarse to fine by midpoint averaging, which reproduces
    linear interpolation from each Gaussian's own grid, and the finest is added to
    the canvas. Sharp ones (step 1) are rendered on the canvas directly.
    """
    h, w = canvas.shape
    grids: dict[int, np.ndarray] = {}
    for g in gaussians:
        step = grid_step(min(g[2], g[3]))
        if step == 1:
            _add_gaussian(canvas, *g)
            continue
        if step not in grids:
            grids[step] = np.zeros(_grid_shape(h, w, step), np.float32)
        r0, c0, sd_u, sd_v, angle, amplitude = g
        _add_gaussian(grids[step], r0, c0, sd_u, sd_v, angle, amplitude, step=step)
    step = max(grids, default=1)
    while step > 1:
        finer = step // 2
        shape = (h, w) if finer == 1 else _grid_shape(h, w, finer)
        refined = _refine(grids.pop(step), shape)
        if finer == 1:
            canvas += refined
        elif finer in grids:
            grids[finer] += refined
        else:
            grids[finer] = refined
        step = finer


@dataclass
class Scene:
    """The random draws behind one image (everything but the pixel noise values)."""

    offset: float
    noise_sd: float
    noise: np.ndarray  # (H, W) Gaussian noise, SD noise_sd
    tracks: np.ndarray  # (N, 6): row, col, sd along, sd across, angle, amplitude
    blobs: np.ndarray  # (M, 6): the inhomogeneities, same columns
    vignette: tuple[float, float]  # sd, amplitude


def draw_scene(recipe: Recipe, rng: np.random.Generator) -> Scene:
    h, w = recipe.height, recipe.width
    offset = rng.uniform(*recipe.offset)
    noise_sd = rng.uniform(recipe.noise_sd_min, max(recipe.noise_sd_min, recipe.noise_sd_offset_factor * offset))
    noise = rng.standard_normal((h, w), dtype=np.float32)
    noise *= np.float32(noise_sd)
    n = int(rng.integers(recipe.tracks[0], recipe.tracks[1] + 1))
    lo, hi = recipe.centre_fraction
    rows = rng.uniform(lo * (h - 1), hi * (h - 1), n)
    cols = rng.uniform(lo * (w - 1), hi * (w - 1), n)
    sds = rng.uniform(*recipe.track_sd, (n, 2))
    if recipe.snr is None:
        amplitudes = rng.uniform(*recipe.track_amplitude_factor, n) * offset
    else:
        amplitudes = rng.uniform(*recipe.snr, n) * noise_sd
    angles = rng.uniform(0.0, math.pi, n)
    blobs = []
    for _ in range(int(rng.integers(recipe.inhomogeneities[0], recipe.inhomogeneities[1] + 1))):
        r, c = rng.uniform(0, h - 1), rng.uniform(0, w - 1)
        sd = rng.uniform(*recipe.inhomogeneity_sd, 2)
        blobs.append((r, c, sd[0], sd[1], rng.uniform(0, math.pi), rng.uniform(*recipe.inhomogeneity_amplitude)))
    vignette = (rng.uniform(*recipe.vignette_sd), rng.uniform(*recipe.vignette_amplitude))
    return Scene(offset, noise_sd, noise, np.c_[rows, cols, sds, angles, amplitudes],
                 np.array(blobs, dtype=np.float64).reshape(-1, 6), vignette)


@dataclass(frozen=True)
class MixedRecipe:
    """Each image drawn from one of ``parts`` (``(weight, recipe)`` pairs), chosen with
    probability proportional to its weight by a generator seeded by ``(seed, index)``, so a
    mixed data set is as reproducible as a plain one. The parts must make images of one size."""

    kind: ClassVar[str] = "mixed"

    parts: tuple[tuple[float, Recipe | RealisticRecipe], ...]

    def __post_init__(self) -> None:
        if not self.parts or any(w <= 0 for w, _ in self.parts):
            raise ValueError("a mixed recipe needs at least one part, each with a positive weight")
        sizes = {(r.height, r.width) for _, r in self.parts}
        if len(sizes) > 1:
            raise ValueError(f"the parts of a mixed recipe must make images of one size, got {sorted(sizes)}")

    @property
    def height(self) -> int:
        return self.parts[0][1].height

    @property
    def width(self) -> int:
        return self.parts[0][1].width

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "parts": [{"weight": w, "recipe": r.to_dict()} for w, r in self.parts]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MixedRecipe:
        unknown = set(data) - {"kind", "parts"}
        if unknown:
            raise ValueError(f"unknown recipe settings: {', '.join(sorted(unknown))}")
        parts = []
        for part in data.get("parts", []):
            recipe = recipe_from_dict(part["recipe"])
            if isinstance(recipe, MixedRecipe):
                raise ValueError("a mixed recipe cannot contain another mixed recipe")
            parts.append((float(part["weight"]), recipe))
        return cls(tuple(parts))

    def with_settings(self, changes: dict[str, Any]) -> MixedRecipe:
        """The same mixture with ``changes`` applied to every part that has those settings."""
        parts = []
        for weight, recipe in self.parts:
            names = {f.name for f in fields(recipe)}
            own = {k: v for k, v in changes.items() if k in names}
            parts.append((weight, recipe_from_dict({**recipe.to_dict(), **own})))
        return MixedRecipe(tuple(parts))  # type: ignore[arg-type]

    def make_sample(self, seed: int, index: int) -> Sample:
        weights = np.array([w for w, _ in self.parts], dtype=np.float64)
        choice = np.random.default_rng([seed, index, 1]).choice(len(self.parts), p=weights / weights.sum())
        return make_sample(self.parts[int(choice)][1], seed, index)


#: Any recipe: the prototype's (:class:`Recipe`), the realistic one or a mixture.
AnyRecipe = Union[Recipe, "RealisticRecipe", MixedRecipe]
#: The named recipes (``cerber generate --recipe NAME``): "prototype", the prototype's settings;
#: "training", the prototype's kind of image as the v1 model was trained on
#: (``make model-v1``: 240 images, seed 1) and the wizard's "Generate synthetic data" writes:
#: 512 x 512 px with 10-30 tracks at an SNR of 0.7-5; "realistic", generator v2; "clean", the
#: realistic recipe without clutter (the default model learnt from both, ``make model``); "mixed",
#: seven in ten images realistic and three in ten "training" (so that a model trained on it
#: keeps the prototype's kind of image).
RECIPE_NAMES = ("prototype", "training", "realistic", "clean", "mixed")


def named_recipe(name: str) -> AnyRecipe:
    """The recipe called ``name`` (see :data:`RECIPE_NAMES`) with its default settings."""
    if name == "prototype":
        return Recipe()
    if name == "training":
        return Recipe(height=512, width=512, tracks=(10, 30), snr=(0.7, 5.0))
    if name == "realistic":
        from .realistic import RealisticRecipe

        return RealisticRecipe()
    if name == "clean":  # the realistic recipe without clutter: spots on backgrounds and cameras alone
        from .realistic import RealisticRecipe

        return RealisticRecipe(blobs=(0, 0), rings=(0, 0), filaments=(0, 0), cells=(0, 0), texture_probability=0.0,
                               dust=(0, 0), scratch_probability=0.0)
    if name == "mixed":
        realistic, training = named_recipe("realistic"), named_recipe("training")
        assert not isinstance(realistic, MixedRecipe) and not isinstance(training, MixedRecipe)
        return MixedRecipe(((0.7, realistic), (0.3, training)))
    raise ValueError(f"no recipe named {name!r}; the recipes are {', '.join(RECIPE_NAMES)}")


def recipe_from_dict(data: dict[str, Any]) -> AnyRecipe:
    """A recipe from its ``to_dict()`` (or a data set's recipe.json): the realistic one when
    ``kind`` says so, else the prototype's."""
    if "recipe" in data and isinstance(data["recipe"], dict):
        data = data["recipe"]
    if data.get("kind") == "mixed":
        return MixedRecipe.from_dict(data)
    if data.get("kind", "prototype") == "realistic":
        from .realistic import RealisticRecipe

        return RealisticRecipe.from_dict(data)
    return Recipe.from_dict({k: v for k, v in data.items() if k != "kind"})


def make_sample(recipe: AnyRecipe, seed: int, index: int) -> Sample:
    """Synthetic image number ``index`` of the data set with ``seed``."""
    if not isinstance(recipe, Recipe):
        return recipe.make_sample(seed, index)
    scene = draw_scene(recipe, np.random.default_rng([seed, index]))
    mask = np.zeros((recipe.height, recipe.width), dtype=bool)
    canvas = render(scene, recipe, mask)
    return Sample(minmax_uint8(canvas), mask.astype(np.uint8) * 255, scene.tracks[:, :2].copy(),
                  scene.tracks[:, 5] / scene.noise_sd, scene.tracks[:, 2:4].copy())


def render(scene: Scene, recipe: Recipe, mask: np.ndarray | None = None) -> np.ndarray:
    """The scene's float32 image before 8-bit scaling; marks the track ellipses in ``mask``.

    Noise and offset clipped to 0..255 (if ``recipe.clip_noise``), the tracks, then the
    background (the inhomogeneities and the centred vignette) through :func:`add_smooth`.
    """
    h, w = recipe.height, recipe.width
    canvas = np.add(scene.noise, np.float32(scene.offset), dtype=np.float32)
    if recipe.clip_noise:
        np.clip(canvas, 0, 255, out=canvas)
    for r, c, sd_u, sd_v, angle, amplitude in scene.tracks:
        _add_gaussian(canvas, r, c, sd_u, sd_v, angle, amplitude, mask, recipe.mask_sigmas)
    vsd, vamp = scene.vignette
    add_smooth(canvas, [*scene.blobs, ((h - 1) / 2, (w - 1) / 2, vsd, vsd, 0.0, vamp)])
    return canvas


def minmax_uint8(canvas: np.ndarray) -> np.ndarray:
    """Min-max scaled to 0..255, as the prototype saved its images (scales ``canvas`` in place)."""
    lo, hi = canvas.min(), canvas.max()
    canvas -= lo
    canvas *= np.float32(255.0 / max(hi - lo, 1e-9))
    return np.rint(canvas, out=canvas).astype(np.uint8)


# -- data sets on disk -----------------------------------------------------------

SPLITS = ("train", "val")


def sample_paths(out: Path, split: str, index: int) -> dict[str, Path]:
    stem = f"synth_{index:05d}"
    return {
        "image": out / split / "images" / f"{stem}.png",
        "mask": out / split / "masks" / f"{stem}.png",
        "tracks": out / split / "tracks" / f"{stem}.csv",
    }


def _write_sample(task: tuple[Path, str, AnyRecipe, int, int]) -> int:
    from PIL import Image as PILImage

    from .files import atomic_write

    out, split, recipe, seed, index = task
    sample = make_sample(recipe, seed, index)
    paths = sample_paths(out, split, index)
    atomic_write(paths["image"], lambda fh: PILImage.fromarray(sample.image).save(fh, format="PNG"))
    atomic_write(paths["mask"], lambda fh: PILImage.fromarray(sample.mask).save(fh, format="PNG"))
    lines = ["row,col,snr"] + [f"{r:.3f},{c:.3f},{s:.3f}" for (r, c), s in zip(sample.centres, sample.snr, strict=True)]
    atomic_write(paths["tracks"], lambda fh: fh.write(("\n".join(lines) + "\n").encode()))
    return index


def generate_dataset(
    out: Path | str,
    count: int,
    seed: int,
    recipe: AnyRecipe | None = None,
    val_fraction: float = 0.2,
    workers: int | None = None,
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
) -> Path:
    """Write ``count`` synthetic images into the four-folder layout under ``out``.

    Images ``0 .. n_train-1`` go to ``train/``, the rest (``round(count *
    val_fraction)``) to ``val/``; each split has ``images/``, ``masks/`` (8-bit,
    0/255) and ``tracks/`` (true centres, CSV ``row,col,snr``). ``recipe.json``
    records the recipe, seed and counts. ``workers`` processes (default: all
    cores) give byte-identical output. Refuses to write into a non-empty folder.
    """
    from .files import atomic_write

    recipe = recipe or Recipe()
    out = Path(out)
    if count < 1:
        raise ValueError("count must be at least 1")
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} is not empty; choose a new folder so that no data is overwritten.")
    n_val = round(count * val_fraction)
    n_train = count - n_val
    for split in SPLITS:
        for sub in ("images", "masks", "tracks"):
            (out / split / sub).mkdir(parents=True, exist_ok=True)
    meta = {"seed": seed, "count": count, "train": n_train, "val": n_val, "recipe": recipe.to_dict()}
    atomic_write(out / "recipe.json", lambda fh: fh.write((json.dumps(meta, indent=2) + "\n").encode()))
    tasks = [(out, "train" if i < n_train else "val", recipe, seed, i) for i in range(count)]
    workers = workers or os.cpu_count() or 1
    done = 0
    if workers == 1:
        for task in tasks:
            if cancel:
                cancel.check()
            _write_sample(task)
            done += 1
            if progress:
                progress(done, count)
        return out
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        for _ in pool.imap_unordered(_write_sample, tasks):
            done += 1
            if progress:
                progress(done, count)
            if cancel and cancel.cancelled:
                pool.terminate()
                cancel.check()
    return out
