"""Synthetic data: the prototype's recipe, reproducible, with masks oriented like their spots."""

import json
from dataclasses import replace

import numpy as np
import pytest

from cerber_model.runtime.synthesis import Recipe, generate_dataset, make_sample

SMALL = Recipe(height=96, width=128, tracks=(3, 6), inhomogeneity_sd=(10, 40), vignette_sd=(60, 90))


def test_same_seed_same_image_other_seed_other_image():
    a, b, c = make_sample(SMALL, 5, 0), make_sample(SMALL, 5, 0), make_sample(SMALL, 6, 0)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.mask, b.mask)
    assert not np.array_equal(a.image, c.image)
    assert a.image.dtype == np.uint8 and a.image.min() == 0 and a.image.max() == 255
    assert set(np.unique(a.mask)) <= {0, 255}
    assert 3 <= len(a.centres) <= 6


def test_mask_has_the_orientation_of_its_spot():
    """An elongated spot at 45 degrees: its mask covers its brightest pixels (the prototype's did not)."""
    recipe = Recipe(height=64, width=64, tracks=(1, 1), track_sd=(6, 6), inhomogeneities=(0, 0),
                    vignette_amplitude=(0, 0), offset=(50, 50), noise_sd_min=0.001, noise_sd_offset_factor=0)
    from cerber_model.runtime.synthesis import _add_gaussian

    for angle in (np.pi / 4, 3 * np.pi / 4, 0.3):
        canvas = np.zeros((64, 64))
        mask = np.zeros((64, 64), bool)
        _add_gaussian(canvas, 32, 32, 6.0, 2.0, angle, 1.0, mask, 1.0)
        # Inside the 1-sigma ellipse the spot is at least exp(-0.5) of its peak, and
        # every pixel that bright is inside the mask.
        assert canvas[mask].min() >= np.exp(-0.5) - 1e-9
        assert mask[canvas > np.exp(-0.5) + 1e-9].all()
        assert 25 < mask.sum() < 60  # about pi * 6 * 2 = 38 px
    assert recipe.tracks == (1, 1)


@pytest.mark.parametrize("shape", [(203, 157), (64, 64), (600, 517)])
def test_wide_gaussians_on_a_coarse_grid_match_the_exact_ones(shape):
    """The background's wide Gaussians, rendered on coarse grids and interpolated, stay within
    1/512 of their amplitude of the exact per-pixel values; sharp ones are rendered exactly."""
    from cerber_model.runtime.synthesis import _add_gaussian, add_smooth, grid_step

    h, w = shape
    gaussians = [(h * 0.3, w * 0.6, 90.0, 20.0, 0.7, 50.0), (h * 0.8, w * 0.1, 300.0, 70.0, 2.0, 80.0),
                 (h / 2, w / 2, 900.0, 900.0, 0.0, 150.0), (10.0, 20.0, 12.0, 7.0, 1.1, 30.0)]
    assert [grid_step(min(g[2], g[3])) for g in gaussians] == [2, 8, 16, 1]
    exact = np.zeros(shape, np.float32)
    for g in gaussians:
        _add_gaussian(exact, *g)
    fast = np.zeros(shape, np.float32)
    add_smooth(fast, gaussians)
    assert np.abs(fast - exact).max() <= sum(g[5] for g in gaussians[:3]) / 512 + 1e-3
    # A grid point of the coarsest grid is exact; a wrong grid offset would not be.
    assert abs(fast[16, 32] - exact[16, 32]) < 0.1 * (150 / 512)


def test_recipe_round_trip_and_validation():
    assert Recipe.from_dict(json.loads(json.dumps(SMALL.to_dict()))) == SMALL
    with pytest.raises(ValueError, match="low > high"):
        Recipe(track_sd=(6, 2))
    with pytest.raises(ValueError, match="unknown recipe"):
        Recipe.from_dict({"colour": 1})


def test_noise_clipped_at_zero_only_where_the_recipe_says_so():
    """The prototype clips noise and offset at 0 before the tracks are added; ``clip_noise`` False
    keeps the noise whole. The same seed draws the same tracks either way, and a recipe written
    before the setting existed still clips."""
    recipe = Recipe(height=128, width=128, tracks=(5, 5), offset=(10, 10), noise_sd_min=30,
                    noise_sd_offset_factor=0, inhomogeneities=(0, 0), vignette_amplitude=(0, 0))
    clipped, whole = make_sample(recipe, 4, 0), make_sample(replace(recipe, clip_noise=False), 4, 0)
    assert np.array_equal(clipped.centres, whole.centres)
    # Noise of SD 30 about an offset of 10: 37 % of the pixels fall below 0.
    assert 0.3 < np.mean(clipped.image == clipped.image.min()) < 0.4
    assert np.mean(whole.image == whole.image.min()) < 0.01
    old = {k: v for k, v in recipe.to_dict().items() if k != "clip_noise"}
    assert Recipe.from_dict(old).clip_noise


def test_dataset_is_identical_for_any_number_of_workers(tmp_path):
    one = generate_dataset(tmp_path / "one", 5, seed=3, recipe=SMALL, val_fraction=0.4, workers=1)
    two = generate_dataset(tmp_path / "two", 5, seed=3, recipe=SMALL, val_fraction=0.4, workers=2)
    files = sorted(p.relative_to(one) for p in one.rglob("*") if p.is_file())
    assert len(files) == 1 + 5 * 3
    assert sorted(p.relative_to(two) for p in two.rglob("*") if p.is_file()) == files
    for f in files:
        assert (one / f).read_bytes() == (two / f).read_bytes(), f
    assert len(list((one / "val" / "images").iterdir())) == 2
    meta = json.loads((one / "recipe.json").read_text())
    assert meta["seed"] == 3 and meta["recipe"]["height"] == 96
    centres = (one / "train" / "tracks" / "synth_00000.csv").read_text().splitlines()
    assert centres[0] == "row,col,snr" and len(centres) - 1 == len(make_sample(SMALL, 3, 0).centres)


def test_refuses_to_overwrite(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "mine.txt").write_text("keep")
    with pytest.raises(FileExistsError, match="not empty"):
        generate_dataset(tmp_path / "data", 2, seed=1, recipe=SMALL, workers=1)
    assert (tmp_path / "data" / "mine.txt").read_text() == "keep"
