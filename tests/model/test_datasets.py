"""Data sets: every problem reported by file, and patches that keep image and mask aligned."""

import numpy as np
import pytest
import tifffile
from PIL import Image as PILImage

from cerber_model.runtime.datasets import Augmentation, DatasetSpec, PatchSampler, find_pairs, inspect_dataset
from cerber_model.runtime.images import Normalization


def _write(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".tif":
        tifffile.imwrite(path, array)
    else:
        PILImage.fromarray(array).save(path)


def _good(root, names=("a", "b", "c", "d", "e")):
    rng = np.random.default_rng(0)
    for name in names:
        mask = np.zeros((40, 48), np.uint8)
        mask[10:14, 20:25] = 255
        _write(root / "train" / "images" / f"{name}.png", (rng.random((40, 48)) * 200).astype(np.uint8))
        _write(root / "train" / "masks" / f"{name}.png", mask)


def test_a_good_set_with_held_out_fraction(tmp_path):
    _good(tmp_path)
    report = inspect_dataset(DatasetSpec.from_folder(tmp_path, val_fraction=0.4))
    assert report.ok, report.summary()
    assert len(report.train) == 3 and len(report.val) == 2
    assert report.sizes == {(40, 48): 5}
    assert report.track_fraction == pytest.approx(20 / (40 * 48))


def test_every_problem_is_reported_by_file(tmp_path):
    _good(tmp_path)
    t = tmp_path / "train"
    _write(t / "images" / "lonely.png", np.zeros((40, 48), np.uint8))  # no mask
    _write(t / "masks" / "orphan.png", np.zeros((40, 48), np.uint8))  # no image
    _write(t / "images" / "big.tif", np.zeros((50, 50), np.uint16))
    _write(t / "masks" / "big.png", np.zeros((40, 48), np.uint8))  # size mismatch
    _write(t / "images" / "grey.png", np.zeros((40, 48), np.uint8))
    _write(t / "masks" / "grey.png", np.arange(40 * 48).reshape(40, 48).astype(np.uint8))  # not binary
    (t / "images" / "broken.png").write_bytes(b"\x89PNG broken")
    _write(t / "masks" / "broken.png", np.zeros((40, 48), np.uint8))
    (tmp_path / "val" / "images").mkdir(parents=True)
    (tmp_path / "val" / "masks").mkdir(parents=True)
    report = inspect_dataset(DatasetSpec.from_folder(tmp_path))
    assert not report.ok
    text = report.summary()
    for expected in ("lonely.png: has no mask", "orphan.png: has no image", "big.png: is 48x40 px but its image",
                     "grey.png: is not a binary mask", "broken.png: is not a readable image",
                     "holds no BMP, PNG or TIFF images"):
        assert expected in text, expected


def test_missing_folders(tmp_path):
    pairs, problems, _ = find_pairs(tmp_path / "x", tmp_path / "y")
    assert not pairs and len(problems) == 2 and "does not exist" in str(problems[0])


@pytest.mark.parametrize("aug", [
    Augmentation(brightness=0, contrast=(1, 1), gamma=(1, 1), noise_sd=0),
    Augmentation(small_rotation_deg=20, scale=(0.8, 1.25), brightness=0, contrast=(1, 1), gamma=(1, 1), noise_sd=0),
])
def test_augmentation_keeps_image_and_mask_aligned(tmp_path, aug):
    """The image is a scaled copy of an asymmetric mask: after any augmentation the bright
    pixels of the image must be exactly (flips) or almost exactly (rotation) the mask's."""
    mask = np.zeros((120, 100), np.uint8)
    mask[20:30, 10:60] = 255  # an asymmetric L shape: any misalignment shows
    mask[20:90, 10:18] = 255
    mask[70:75, 60:95] = 255
    _write(tmp_path / "i" / "x.png", (mask // 255 * 200 + 20).astype(np.uint8))
    _write(tmp_path / "m" / "x.png", mask)
    pairs, _, _ = find_pairs(tmp_path / "i", tmp_path / "m")
    sampler = PatchSampler(pairs, Normalization("scale", divisor=255), patch=64, track_bias=1.0, augmentation=aug)
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(20):
        x, y = sampler.sample(rng)
        assert x.shape == y.shape == (64, 64) and x.dtype == y.dtype == np.float32
        bright = x > (20 + 100) / 255
        agreement = np.mean(bright == (y > 0.5))
        assert agreement > (0.999 if not aug.small_rotation_deg else 0.97)
        assert y.sum() > 0
        seen.add(y.tobytes())
    assert len(seen) > 10  # the patches really vary


def test_mask_patches_come_from_the_source_mask(tmp_path):
    """Every image pixel carries its own source position (value = row * width + col + 1), so each
    patch says where each of its pixels came from: the mask patch must hold the source mask's
    value there, and the positions must form one rigid (flipped/rotated, reflect-padded) window."""
    h, w = 120, 100
    mask = np.zeros((h, w), np.uint8)
    mask[20:30, 10:60] = 255
    mask[20:90, 10:18] = 255
    mask[70:75, 60:95] = 255
    _write(tmp_path / "i" / "x.tif", (np.arange(h * w).reshape(h, w) + 1).astype(np.uint16))
    _write(tmp_path / "m" / "x.png", mask)
    pairs, _, _ = find_pairs(tmp_path / "i", tmp_path / "m")
    none = dict(brightness=0, contrast=(1, 1), gamma=(1, 1), noise_sd=0)
    sampler = PatchSampler(pairs, Normalization("scale", divisor=1), patch=64, track_bias=0.5,
                           augmentation=Augmentation(**none))
    rng = np.random.default_rng(5)
    orientations = set()
    for _ in range(40):
        x, y = sampler.sample(rng)
        index = np.rint(x).astype(np.int64) - 1
        assert np.array_equal(x, index + 1)  # no interpolation without rotation or zoom
        r, c = np.divmod(index, w)
        assert np.array_equal(y > 0.5, mask[r, c] > 0)
        # Neighbours are one source pixel apart along exactly one axis (reflection keeps steps of 1).
        for axis in (0, 1):
            step = np.abs(np.diff(r, axis=axis)) + np.abs(np.diff(c, axis=axis))
            assert (step == 1).all()
        orientations.add((np.sign(r[1, 0] - r[0, 0]), np.sign(c[1, 0] - c[0, 0]),
                          np.sign(r[0, 1] - r[0, 0]), np.sign(c[0, 1] - c[0, 0])))
    assert len(orientations) >= 6  # flips and quarter turns really happen


def test_photometric_changes_only_the_image(tmp_path):
    mask = np.zeros((64, 64), np.uint8)
    mask[30:34, 30:34] = 255
    _write(tmp_path / "i" / "x.png", np.full((64, 64), 100, np.uint8))
    _write(tmp_path / "m" / "x.png", mask)
    pairs, _, _ = find_pairs(tmp_path / "i", tmp_path / "m")
    sampler = PatchSampler(pairs, Normalization("scale", divisor=255), patch=32, track_bias=1.0,
                           augmentation=Augmentation(flips=False))
    x, y = sampler.sample(np.random.default_rng(1))
    assert x.std() > 0  # noise was added to the flat image
    assert set(np.unique(y)) <= {0.0, 1.0}


def test_background_normalised_patches_are_crops_of_the_normalised_image(tmp_path):
    """With the background normalisation (levels estimated once per image), a patch holds exactly
    the whole normalised image's values at its source pixels, reflected beyond the edges."""
    from cerber_model.runtime.images import normalize

    h, w = 150, 130
    rng = np.random.default_rng(3)
    rr, cc = np.indices((h, w))
    image = (200 + rr * 2 + 60 * np.exp(-((rr - 70) ** 2 + (cc - 40) ** 2) / 800) + rng.normal(0, 4, (h, w)))
    image = image.astype(np.uint16)
    mask = np.zeros((h, w), np.uint8)
    mask[60:66, 30:36] = 255
    _write(tmp_path / "where" / "images" / "x.tif", (np.arange(h * w).reshape(h, w) + 1).astype(np.uint16))
    _write(tmp_path / "real" / "images" / "x.tif", image)
    for folder in ("where", "real"):
        _write(tmp_path / folder / "masks" / "x.png", mask)
    where = PatchSampler(find_pairs(tmp_path / "where" / "images", tmp_path / "where" / "masks")[0],
                         Normalization("scale", divisor=1), patch=64, track_bias=0.5)
    norm = Normalization("background", block=32)
    real = PatchSampler(find_pairs(tmp_path / "real" / "images", tmp_path / "real" / "masks")[0],
                        norm, patch=64, track_bias=0.5)
    whole = normalize(image, norm)
    edges = 0
    for seed in range(12):
        index = np.rint(where.sample(np.random.default_rng(seed))[0]).astype(np.int64) - 1
        r, c = np.divmod(index, w)
        x, _ = real.sample(np.random.default_rng(seed))
        assert np.array_equal(x, whole[r, c])
        edges += r.min() == 0 or c.min() == 0 or r.max() == h - 1 or c.max() == w - 1
    assert edges > 0  # some patches reach beyond the image


def _old_photometric(x, aug, rng):
    """The photometric augmentation as it was before it knew about noise units."""
    g = rng.uniform(*aug.gamma)
    x = np.where(x > 0, np.abs(x) ** g, x)
    x = x * rng.uniform(*aug.contrast) + rng.uniform(-aug.brightness, aug.brightness)
    if aug.noise_sd:
        x = x + rng.normal(0.0, rng.uniform(0, aug.noise_sd), x.shape)
    return x.astype(np.float32)


@pytest.mark.parametrize("method", ["percentile", "scale"])
def test_range_normalisations_keep_their_augmentation_bit_for_bit(method):
    """Models trained on 0..1 inputs (the default model) get the same augmentation as before,
    down to the bits and the random draws, also with gamma off."""
    from cerber_model.runtime.datasets import _photometric

    norm = Normalization(method)
    assert Augmentation.for_normalization(norm) == Augmentation()
    x = np.random.default_rng(0).normal(0.3, 0.4, (48, 48)).astype(np.float32)
    for aug in (Augmentation(), Augmentation(gamma=(1, 1)), Augmentation(brightness=0, noise_sd=0)):
        new_rng, old_rng = np.random.default_rng(7), np.random.default_rng(7)
        assert np.array_equal(_photometric(x, aug, new_rng), _old_photometric(x, aug, old_rng))
        assert new_rng.random() == old_rng.random()  # the same draws, so the next patches are the same too


def test_noise_unit_augmentation_keeps_spots_and_noise_in_noise_units(tmp_path):
    """Normalised to noise units, a spot 30 noise SDs high on a sloping background must stay a spot
    of about 30 (within the contrast range) on a background near 0 with noise near 1. The 0..1
    defaults' gamma would make it 15 to 70."""
    from cerber_model.runtime.images import noise_sd

    h, w = 200, 200
    rr, cc = np.indices((h, w))
    rng = np.random.default_rng(4)
    spot = np.exp(-((rr - 100) ** 2 + (cc - 100) ** 2) / (2 * 1.5**2))
    image = (1000 + 2 * rr + 8 * 30 * spot + rng.normal(0, 8, (h, w))).astype(np.uint16)
    mask = (spot > 0.2).astype(np.uint8) * 255
    _write(tmp_path / "i" / "x.tif", image)
    _write(tmp_path / "m" / "x.png", mask)
    pairs, _, _ = find_pairs(tmp_path / "i", tmp_path / "m")
    norm = Normalization("background")
    aug = Augmentation.for_normalization(norm)
    assert aug.gamma == (1.0, 1.0)
    sampler = PatchSampler(pairs, norm, patch=64, track_bias=1.0, augmentation=aug)
    old = PatchSampler(pairs, norm, patch=64, track_bias=1.0, augmentation=Augmentation())
    rng = np.random.default_rng(0)
    peaks, old_peaks = [], []
    for _ in range(30):
        x, y = sampler.sample(rng)
        background = x[y == 0]
        assert abs(np.median(background)) < 0.5
        assert 0.7 < noise_sd(np.where(y > 0, np.median(background), x)) < 1.45
        peaks.append(x[y > 0].max())
        old_peaks.append(old.sample(rng)[0].max())
    assert 20 < min(peaks) and max(peaks) < 45
    assert max(old_peaks) > 45 or min(old_peaks) < 20  # what the test guards against
