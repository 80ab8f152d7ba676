"""Training data sets: images with masks or points, their inspection, and streaming patches.

A data set is a folder of training images, each with a mask or a points file, and
either a validation folder laid out the same way or a fraction of the training pairs
held out. ``DATA/train/images/<stem>.<ext>`` pairs by stem with
``DATA/train/masks/<stem>.<ext>`` (0 = background, anything else = track) and/or a
points CSV (:mod:`cerber_model.runtime.points`): ``DATA/train/points/<stem>.csv``, or
``<stem>_points.csv`` beside the image (where the app's annotation mode saves it).
Masks are rendered from points where there is no mask. BMP, PNG and TIFF, 8 or 16
bit; sizes may differ between pairs but not within one.

:func:`inspect_dataset` reports counts, sizes, the track-pixel fraction and every
problem by file, before any training starts. :class:`PatchSampler` draws random
patches (biased towards tracks), with the same geometric augmentation applied to
image and mask and photometric augmentation to the image only. Images are read
lazily into a small cache of raw arrays; the set is never held in RAM as float32.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .images import (
    Image,
    ImageReadError,
    Levels,
    Normalization,
    image_levels,
    list_images,
    read_image,
    reflect_index,
)
from .points import DEFAULT_POINT_RADIUS, PointsError, points_beside, read_points, render_mask
from .progress import CancelToken, ProgressFn


@dataclass(frozen=True)
class Pair:
    """One training example: an image with a mask, a points file (true centres, CSV row,col), or both."""

    image: Path
    mask: Path | None = None
    points: Path | None = None

    @property
    def name(self) -> str:
        return self.image.stem


@dataclass(frozen=True)
class DatasetSpec:
    """Where the data are. Without validation folders, ``val_fraction`` of the
    training pairs (chosen with ``seed``) is held out for validation."""

    train_images: Path
    train_masks: Path | None = None  # None: every training image needs a points file
    val_images: Path | None = None
    val_masks: Path | None = None
    val_fraction: float = 0.2
    seed: int = 0
    point_radius: float = DEFAULT_POINT_RADIUS  # px, for masks rendered from points without sd_px

    @classmethod
    def from_folder(cls, root: Path | str, **kwargs) -> DatasetSpec:
        """The layout ``root/{train,val}/{images,masks,points}`` (``val``, ``masks`` and ``points`` optional)."""
        root = Path(root)
        train, val = root / "train", root / "val"

        def masks(split: Path) -> Path | None:
            return split / "masks" if (split / "masks").is_dir() else None

        has_val = (val / "images").is_dir()
        return cls(train / "images", masks(train), val / "images" if has_val else None,
                   masks(val) if has_val else None, **kwargs)


@dataclass
class Problem:
    path: Path
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


@dataclass
class DatasetReport:
    """What :func:`inspect_dataset` found. Training refuses a set with problems."""

    train: list[Pair] = field(default_factory=list)
    val: list[Pair] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    unannotated: list[Path] = field(default_factory=list)  # images with neither mask nor points (left out)
    points: int = 0  # annotated points read
    point_radius: float = DEFAULT_POINT_RADIUS  # px, of the masks rendered from points (the spec's)
    sizes: dict[tuple[int, int], int] = field(default_factory=dict)
    track_pixels: int = 0
    total_pixels: int = 0
    train_pixels: int = 0  # pixels of the training pairs alone

    @property
    def ok(self) -> bool:
        return not self.problems and bool(self.train) and bool(self.val)

    @property
    def track_fraction(self) -> float:
        return self.track_pixels / self.total_pixels if self.total_pixels else 0.0

    def summary(self) -> str:
        sizes = ", ".join(f"{w}x{h} ({n})" for (h, w), n in sorted(self.sizes.items()))
        lines = [f"training pairs: {len(self.train)}, validation pairs: {len(self.val)}",
                 f"image sizes: {sizes or 'none'}",
                 f"track pixels: {100 * self.track_fraction:.4f}% of all pixels"]
        if self.points:
            lines.append(f"annotated points: {self.points}")
        if self.unannotated:
            lines.append(f"left out, neither mask nor points: {', '.join(p.name for p in self.unannotated)}")
        if self.problems:
            lines.append(f"{len(self.problems)} problem(s):")
            lines += [f"  {p}" for p in self.problems]
        return "\n".join(lines)


def points_file(image: Path) -> Path | None:
    """The points file of a training image, where there is one: ``../points/<stem>.csv``,
    ``<stem>_points.csv`` beside it, or the generator's ``../tracks/<stem>.csv``."""
    for candidate in (image.parent.parent / "points" / f"{image.stem}.csv", points_beside(image),
                      image.parent.parent / "tracks" / f"{image.stem}.csv"):
        if candidate.is_file():
            return candidate
    return None


def find_pairs(images: Path, masks: Path | None = None) -> tuple[list[Pair], list[Problem], list[Path]]:
    """Pair images with masks (by file stem) and points files; report folders and files that do not pair.

    Returns the pairs, the problems, and the images left out because they have neither a
    mask nor points while no masks folder was given (an annotation in progress).
    """
    problems: list[Problem] = []
    for folder in (images, masks):
        if folder is not None and not folder.is_dir():
            problems.append(Problem(folder, "folder does not exist"))
    if problems:
        return [], problems, []
    image_files = {p.stem: p for p in list_images(images)}
    mask_files = {p.stem: p for p in list_images(masks)} if masks is not None else {}
    if not image_files:
        problems.append(Problem(images, "folder holds no BMP, PNG or TIFF images"))
    if masks is not None and not mask_files:
        problems.append(Problem(masks, "folder holds no BMP, PNG or TIFF masks"))
    pairs, unannotated = [], []
    for stem, image in image_files.items():
        mask, points = mask_files.get(stem), points_file(image)
        if mask is None and points is None:
            if masks is None:
                unannotated.append(image)
            elif mask_files:
                problems.append(Problem(image, f"has no mask named {stem}.* in {masks} and no points file "
                                               f"(points/{stem}.csv or {stem}_points.csv)"))
            continue
        pairs.append(Pair(image, mask, points))
    for stem, mask in mask_files.items():
        if stem not in image_files and image_files:
            problems.append(Problem(mask, f"has no image named {stem}.* in {images}"))
    if masks is None and image_files and not pairs:
        problems.append(Problem(images, "no image has a mask or points: annotate some (the app's annotation "
                                        "mode saves <name>_points.csv beside each image) or give a masks folder"))
    return pairs, problems, unannotated


def pair_mask(pair: Pair, shape: tuple[int, int], point_radius: float = DEFAULT_POINT_RADIUS) -> np.ndarray:
    """The pair's boolean track mask: its mask file, or discs rendered from its points."""
    if pair.mask is not None:
        return read_image(pair.mask).data > 0
    assert pair.points is not None
    return render_mask(shape, read_points(pair.points, shape), point_radius) > 0


def _check_pair(pair: Pair, report: DatasetReport, point_radius: float) -> int:
    """Check one pair, adding what it holds or what is wrong with it to ``report``; its pixel count
    (0 for a pair with problems)."""
    try:
        image = read_image(pair.image)
        mask = read_image(pair.mask) if pair.mask is not None else None
    except ImageReadError as exc:
        report.problems.append(Problem(exc.path, f"{exc.problem} {exc.fix}".strip()))
        return 0
    points = None
    if pair.points is not None:
        try:
            points = read_points(pair.points, image.shape)
        except PointsError as exc:
            report.problems += [Problem(pair.points, f"line {line}: {what}" if line else what)
                                for line, what in exc.problems]
            return 0
        report.points += len(points)
    if mask is None:
        assert points is not None
        mask_data = render_mask(image.shape, points, point_radius)
    else:
        if image.shape != mask.shape:
            report.problems.append(Problem(mask.path or pair.image, f"is {mask.shape[1]}x{mask.shape[0]} px but "
                                           f"its image {pair.image.name} is {image.shape[1]}x{image.shape[0]} px"))
            return 0
        mask_data = mask.data
    values = np.unique(mask_data)
    if values.size > 2 or (values.size == 2 and values[0] != 0):
        report.problems.append(Problem(pair.mask or pair.image, f"is not a binary mask (it has {values.size} "
                                       "distinct values; expected 0 for background and one value for tracks)"))
        return 0
    report.sizes[image.shape] = report.sizes.get(image.shape, 0) + 1
    report.track_pixels += int(np.count_nonzero(mask_data))
    report.total_pixels += mask_data.size
    return mask_data.size


def inspect_dataset(spec: DatasetSpec, progress: ProgressFn | None = None,
                    cancel: CancelToken | None = None) -> DatasetReport:
    """Pair, read and check every file of a data set (see :class:`DatasetReport`)."""
    report = DatasetReport(point_radius=spec.point_radius)

    def optional(folder: Path | str | None) -> Path | None:
        return Path(folder) if folder is not None and str(folder) else None

    train, problems, left_out = find_pairs(Path(spec.train_images), optional(spec.train_masks))
    report.problems += problems
    report.unannotated += left_out
    if spec.val_images is not None or spec.val_masks is not None:
        val_images = optional(spec.val_images)
        if val_images is None:
            report.problems.append(Problem(Path(str(spec.val_masks)), "validation masks need a validation "
                                                                      "images folder"))
            val: list[Pair] = []
        else:
            val, problems, left_out = find_pairs(val_images, optional(spec.val_masks))
            report.problems += problems
            report.unannotated += left_out
    else:
        if not 0 < spec.val_fraction < 1:
            report.problems.append(Problem(Path(spec.train_images), "no validation folders and no held-out fraction"))
        order = np.random.default_rng(spec.seed).permutation(len(train))
        n_val = max(1, round(len(train) * spec.val_fraction)) if len(train) > 1 else 0
        held = set(order[:n_val].tolist())
        val = [p for i, p in enumerate(train) if i in held]
        train = [p for i, p in enumerate(train) if i not in held]
        if not val and train:
            report.problems.append(Problem(Path(spec.train_images), "too few pairs to hold some out for validation"))
    everything = train + val
    for i, pair in enumerate(everything):
        if cancel:
            cancel.check()
        pixels = _check_pair(pair, report, spec.point_radius)
        if i < len(train):
            report.train_pixels += pixels
        if progress:
            progress(i + 1, len(everything))
    report.train, report.val = train, val
    return report


@dataclass(frozen=True)
class Augmentation:
    """Random changes applied to training patches (validation patches get none).

    The photometric settings act on the normalised image, so their units are the
    normalisation's: the defaults suit "percentile" and "scale" (the image spans
    about 0..1); :meth:`for_normalization` gives those that suit "background"
    (one unit is the local noise SD).
    """

    flips: bool = True  # horizontal/vertical flips and 90-degree rotations (image and mask)
    small_rotation_deg: float = 0.0  # extra rotation up to +- this (image and mask), 0 = off
    scale: tuple[float, float] = (1.0, 1.0)  # zoom range (image and mask)
    brightness: float = 0.1  # added offset up to +- this (image only, normalised units)
    contrast: tuple[float, float] = (0.8, 1.25)  # multiplied
    gamma: tuple[float, float] = (0.8, 1.25)  # positive values x become x**gamma; (1, 1) = off
    noise_sd: float = 0.03  # extra Gaussian noise up to this SD (normalised units)

    @classmethod
    def for_normalization(cls, normalization: Normalization) -> Augmentation:
        """The default augmentation for inputs normalised with ``normalization``.

        In noise units (method "background": background 0, noise SD 1, spots at tens) a
        0..1 offset and noise would be negligible and a gamma would turn a spot of 30
        into 70 or 15, which no camera does. There the offset stands for an error of
        the background estimate, the contrast for one of the noise estimate (both in
        noise SDs), and the added noise for noise the estimate missed.
        """
        if normalization.method == "background":
            return cls(brightness=0.25, contrast=(0.8, 1.25), gamma=(1.0, 1.0), noise_sd=0.3)
        return cls()


class _ImageCache:
    """The last few images read, as raw arrays (not float32), with their
    normalisation levels (estimated once per image) and the coordinates of their track pixels."""

    def __init__(self, normalization: Normalization, capacity: int = 16, point_radius: float = DEFAULT_POINT_RADIUS):
        self.normalization = normalization
        self.capacity = capacity
        self.point_radius = point_radius
        self._items: OrderedDict[Path, tuple[Image, np.ndarray, Levels, np.ndarray]] = OrderedDict()

    def get(self, pair: Pair):
        if pair.image in self._items:
            self._items.move_to_end(pair.image)
            return self._items[pair.image]
        image = read_image(pair.image)
        mask = pair_mask(pair, image.shape, self.point_radius)
        item = (image, mask, image_levels(image.data, self.normalization), np.argwhere(mask))
        self._items[pair.image] = item
        while len(self._items) > self.capacity:
            self._items.popitem(last=False)
        return item


class PatchSampler:
    """Random (image, mask) patches from pairs, deterministic for a given seed and index.

    ``sample(rng)`` returns a float32 normalised image patch and a float32 0/1
    mask patch of ``patch`` x ``patch`` px. With probability ``track_bias`` the
    patch is centred near a random track pixel (tracks cover ~0.02% of an image).
    """

    def __init__(self, pairs: list[Pair], normalization: Normalization, patch: int = 256,
                 track_bias: float = 0.7, augmentation: Augmentation | None = None, cache_size: int = 16,
                 point_radius: float = DEFAULT_POINT_RADIUS):
        if not pairs:
            raise ValueError("no image/mask pairs to sample from")
        if patch % 4:
            raise ValueError(f"patch size must be a multiple of 4, got {patch}")
        self.pairs = pairs
        self.patch = patch
        self.track_bias = track_bias
        self.augmentation = augmentation
        self.cache = _ImageCache(normalization, cache_size, point_radius)

    def sample(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        pair = self.pairs[int(rng.integers(len(self.pairs)))]
        image, mask, levels, track_pixels = self.cache.get(pair)
        aug = self.augmentation
        # Cut a larger window when rotating or scaling, so the final crop has no empty corners.
        need = self.patch
        if aug and (aug.small_rotation_deg or aug.scale != (1.0, 1.0)):
            need = int(np.ceil(self.patch * 1.5 / min(aug.scale[0], 1.0))) + 2
        h, w = mask.shape
        if len(track_pixels) and rng.random() < self.track_bias:
            r, c = track_pixels[int(rng.integers(len(track_pixels)))]
            r += int(rng.integers(-self.patch // 3, self.patch // 3 + 1))
            c += int(rng.integers(-self.patch // 3, self.patch // 3 + 1))
        else:
            r, c = int(rng.integers(h)), int(rng.integers(w))
        rows, cols = _crop_indices(mask.shape, r, c, need)
        x = levels.apply(image.data[np.ix_(rows, cols)], rows, cols)
        y = mask[np.ix_(rows, cols)]
        y = y.astype(np.float32)
        if aug:
            x, y = _geometric(x, y, aug, rng, self.patch)
            x = _photometric(x, aug, rng)
        return x, y


def _crop_indices(shape: tuple[int, int], r: int, c: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Row and column indices of a size x size window centred near (r, c), reflected
    where it leaves the image (works for any image size)."""
    h, w = shape
    r0, c0 = r - size // 2, c - size // 2
    return reflect_index(np.arange(r0, r0 + size), h), reflect_index(np.arange(c0, c0 + size), w)


def _geometric(x: np.ndarray, y: np.ndarray, aug: Augmentation, rng: np.random.Generator, size: int):
    """The same random flips, 90-degree rotations, small rotation and zoom for image and mask."""
    if aug.small_rotation_deg or aug.scale != (1.0, 1.0):
        from scipy import ndimage

        angle = np.radians(rng.uniform(-aug.small_rotation_deg, aug.small_rotation_deg))
        zoom = rng.uniform(*aug.scale)
        cos, sin = np.cos(angle) / zoom, np.sin(angle) / zoom
        matrix = np.array([[cos, -sin], [sin, cos]])
        centre_in = (np.array(x.shape) - 1) / 2
        centre_out = (np.array([size, size]) - 1) / 2
        offset = centre_in - matrix @ centre_out
        x = ndimage.affine_transform(x, matrix, offset, output_shape=(size, size), order=1, mode="reflect")
        y = ndimage.affine_transform(y, matrix, offset, output_shape=(size, size), order=0, mode="reflect")
    elif x.shape[0] != size:
        s = (x.shape[0] - size) // 2
        x, y = x[s:s + size, s:s + size], y[s:s + size, s:s + size]
    if aug.flips:
        k = int(rng.integers(4))
        x, y = np.rot90(x, k), np.rot90(y, k)
        if rng.random() < 0.5:
            x, y = x[:, ::-1], y[:, ::-1]
    return np.ascontiguousarray(x), np.ascontiguousarray(y)


def _photometric(x: np.ndarray, aug: Augmentation, rng: np.random.Generator) -> np.ndarray:
    """Brightness, contrast, gamma and noise, on the image only."""
    g = rng.uniform(*aug.gamma)  # drawn even when off, so the other draws stay as they were
    if tuple(aug.gamma) != (1.0, 1.0):
        x = np.where(x > 0, np.abs(x) ** g, x)
    x = x * rng.uniform(*aug.contrast) + rng.uniform(-aug.brightness, aug.brightness)
    if aug.noise_sd:
        x = x + rng.normal(0.0, rng.uniform(0, aug.noise_sd), x.shape)
    return x.astype(np.float32)
