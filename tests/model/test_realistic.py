"""The realistic recipe (generator v2): every feature present and labelled as it should be."""

import json
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image as PILImage
from scipy import ndimage

from cerber_model.runtime.images import noise_sd, read_image
from cerber_model.runtime.realistic import RealisticRecipe, remove_spots
from cerber_model.runtime.synthesis import generate_dataset, make_sample, named_recipe, recipe_from_dict

SMALL = RealisticRecipe(height=160, width=144, tracks=(15, 25), ring_radius=(12, 40))


def _components(mask):
    return ndimage.label(mask > 0, structure=np.ones((3, 3)))


def test_each_spot_is_one_mask_component_holding_its_centre():
    for index in range(6):
        sample = make_sample(SMALL, 1, index)
        labels, n = _components(sample.mask)
        c = np.rint(sample.centres).astype(int)
        inside = labels[c[:, 0], c[:, 1]]
        assert n == len(sample.centres) > 0
        assert (inside > 0).all() and len(set(inside)) == n
        # Each component's centroid lies near its spot's centre (cut ones at the edge excepted).
        centroids = np.array(ndimage.center_of_mass(sample.mask > 0, labels, inside))
        away = ((c > 6) & (c < np.array(sample.mask.shape) - 7)).all(axis=1)
        assert np.abs(centroids - sample.centres)[away].max() < 2.5


def test_clutter_is_never_in_the_mask():
    """An image with every kind of clutter and no spots: strong structure, an empty mask, no centres."""
    recipe = replace(SMALL, tracks=(0, 0), blobs=(4, 4), rings=(2, 2), filaments=(2, 2), texture_probability=1.0,
                     dust=(1, 1), scratch_probability=1.0, hot_pixels=(1e-3, 1e-3), clutter_snr=(10, 20),
                     cells=(2, 2), cell_radius=(20, 40))
    for index in range(3):
        sample = make_sample(recipe, 2, index)
        assert sample.mask.max() == 0 and len(sample.centres) == 0
        x = sample.image.astype(np.float64)
        pixel_noise = 1.4826 * np.median(np.abs(x - ndimage.median_filter(x, 3)))
        assert ndimage.gaussian_filter(x, 3).std() > 5 * pixel_noise


def test_mask_pixels_lie_only_around_spots():
    sample = make_sample(replace(SMALL, clutter_snr=(20, 40), blobs=(6, 8)), 3, 0)
    rr, cc = np.nonzero(sample.mask)
    distance = np.hypot(rr[:, None] - sample.centres[:, 0], cc[:, None] - sample.centres[:, 1]).min(axis=1)
    assert distance.max() <= 2 * 5.0 + 1.5  # the widest mask ellipse (2 SD of 5 px) plus a pixel
    assert SMALL.mask_sigmas == 2.0


def test_spot_sizes_snr_and_saturation_span_their_ranges():
    recipe = replace(SMALL, saturated_fraction=0.1)
    samples = [make_sample(recipe, 4, i) for i in range(8)]
    sds = np.concatenate([s.sds for s in samples])
    snr = np.concatenate([s.snr for s in samples])
    assert sds.min() >= 0.6 and sds.max() <= 5.0
    assert (sds < 1.0).any() and (sds > 3.5).any()
    assert snr.min() >= 0.69 and (snr < 1.5).any() and ((snr > 10) & (snr <= 30.01)).any()
    assert (snr > 30.01).any()  # saturated spots: their unclipped peak is far above the range
    full = {np.dtype(np.uint8): 255}
    clipped = [s for s in samples if s.image.max() in (full.get(s.image.dtype, -1), 4095, 65535)]
    assert clipped


def test_bit_depths_and_16_bit_png(tmp_path):
    recipe = replace(SMALL, tracks=(2, 4))
    depths = set()
    for index in range(12):
        image = make_sample(recipe, 5, index).image
        depths.add(8 if image.dtype == np.uint8 else 12 if image.max() <= 4095 else 16)
    assert depths == {8, 12, 16}
    out = generate_dataset(tmp_path / "d", 4, seed=5, recipe=replace(recipe, bit_depths=(16,)), workers=1)
    path = out / "train" / "images" / "synth_00000.png"
    assert PILImage.open(path).mode == "I;16"
    assert np.array_equal(read_image(path).data, make_sample(replace(recipe, bit_depths=(16,)), 5, 0).image)
    eight = make_sample(replace(recipe, bit_depths=(8,), noise_grey_levels=(0.4, 0.6), cells=(0, 0)), 5, 1).image
    assert len(np.unique(eight)) < 40  # only a few grey levels for faint spots on an 8-bit camera


def test_identical_for_any_number_of_workers_and_recipe_json(tmp_path):
    one = generate_dataset(tmp_path / "one", 4, seed=3, recipe=SMALL, val_fraction=0.25, workers=1)
    two = generate_dataset(tmp_path / "two", 4, seed=3, recipe=SMALL, val_fraction=0.25, workers=2)
    files = sorted(p.relative_to(one) for p in one.rglob("*") if p.is_file())
    assert len(files) == 1 + 4 * 3
    for f in files:
        assert (one / f).read_bytes() == (two / f).read_bytes(), f
    meta = json.loads((one / "recipe.json").read_text())
    assert meta["recipe"]["kind"] == "realistic" and recipe_from_dict(meta) == SMALL
    lines = (one / "train" / "tracks" / "synth_00000.csv").read_text().splitlines()
    assert lines[0] == "row,col,snr" and len(lines) - 1 == len(make_sample(SMALL, 3, 0).centres)


def test_named_recipes():
    assert named_recipe("prototype").to_dict() == recipe_from_dict(named_recipe("prototype").to_dict()).to_dict()
    assert isinstance(named_recipe("realistic"), RealisticRecipe)
    with pytest.raises(ValueError, match="prototype, training, realistic, clean, mixed"):
        named_recipe("fancy")
    with pytest.raises(ValueError, match="unknown recipe settings"):
        RealisticRecipe.from_dict({"kind": "realistic", "colour": 1})


def test_the_clean_recipe_is_the_realistic_one_without_clutter():
    """Its spots, backgrounds and cameras are the realistic recipe's; on a flat background with no
    spots its images are noise alone, where the realistic recipe's often show structure."""
    clean, realistic = named_recipe("clean"), named_recipe("realistic")
    # (cells are off in both)
    clutter = {"blobs", "rings", "filaments", "texture_probability", "dust", "scratch_probability"}
    assert {k for k, v in clean.to_dict().items() if realistic.to_dict()[k] != v} == clutter
    flat = dict(height=128, width=128, tracks=(0, 0), vignetting=(0.0, 0.0), gradient=(0.0, 0.0),
                inhomogeneities=(0, 0), hot_pixels=(0.0, 0.0), background_photons=(500.0, 500.0),
                smoothed_fraction=0.0)  # smoothed noise is structure of its own, tested apart

    def structure(recipe, index):  # SD of the smoothed image over the image's: about 0.1 for pure noise
        x = make_sample(replace(recipe, **flat), 3, index).image.astype(np.float64)
        return ndimage.gaussian_filter(x, 3).std() / x.std()

    assert max(structure(clean, i) for i in range(6)) < 0.3
    assert max(structure(realistic, i) for i in range(6)) > 0.6


def test_mixed_recipe_draws_each_image_from_one_part():
    from cerber_model.runtime.synthesis import MixedRecipe, Recipe

    mixed = named_recipe("mixed").with_settings({"height": 48, "width": 40, "tracks": (2, 4)})
    assert isinstance(mixed, MixedRecipe) and [w for w, _ in mixed.parts] == [0.7, 0.3]
    assert all((r.height, r.width, r.tracks) == (48, 40, (2, 4)) for _, r in mixed.parts)
    assert recipe_from_dict(json.loads(json.dumps(mixed.to_dict()))) == mixed
    realistic, prototype = mixed.parts[0][1], mixed.parts[1][1]
    kinds = []
    for index in range(40):
        sample = make_sample(mixed, 5, index)
        same = [r for r in (realistic, prototype)
                if np.array_equal(make_sample(r, 5, index).image, sample.image)]
        assert len(same) == 1, index  # exactly the image its part draws for that index
        kinds.append(isinstance(same[0], Recipe))
    assert 4 <= sum(kinds) <= 20  # about 3 in 10 of the prototype's kind
    with pytest.raises(ValueError, match="one size"):
        MixedRecipe(((1.0, realistic), (1.0, Recipe(height=32, width=32))))
    with pytest.raises(ValueError, match="positive weight"):
        MixedRecipe(((0.0, realistic),))


def _lab_image(rng, shape=(200, 180), rim=True):
    """A lab image: a smooth background, a bright rim, noise and 12 spots of SNR 8 at known places."""
    rr, cc = np.indices(shape)
    image = 300 + 0.5 * rr + rim * 400 * np.exp(-((np.hypot(rr - 145, cc - 90) - 30) ** 2) / 8)
    centres = np.array([(15 + 22 * (i // 4), 25 + 40 * (i % 4)) for i in range(12)], float)
    centres += rng.uniform(-3, 3, (12, 2))
    for r, c in centres:
        image += 8 * 10 * np.exp(-((rr - r) ** 2 + (cc - c) ** 2) / (2 * 1.6**2))
    return np.clip(image + rng.normal(0, 10, shape), 0, 65535).astype(np.uint16), centres


def test_remove_spots_paints_over_the_labs_spots_and_keeps_the_rim():
    image, centres = _lab_image(np.random.default_rng(0))
    cleaned, removed = remove_spots(image)
    c = np.rint(centres).astype(int)
    assert removed[c[:, 0], c[:, 1]].all()
    response = -(1.6**2) * ndimage.gaussian_laplace(cleaned, 1.6)
    before = -(1.6**2) * ndimage.gaussian_laplace(image.astype(np.float32), 1.6)
    assert before[c[:, 0], c[:, 1]].min() > 25  # the spots were there
    assert np.abs(response[c[:, 0], c[:, 1]]).max() < 12  # and are gone (noise response SD ~4)
    rim = np.abs(np.hypot(*(np.indices(image.shape) - np.array([145, 90])[:, None, None])) - 30) < 1
    assert cleaned[rim].mean() > image[rim].mean() - 60  # the rim (clutter) is mostly kept
    assert abs(cleaned[~removed].std() - image[~removed].std()) < 1e-3


def test_generate_on_lab_backgrounds_has_only_its_own_spots(tmp_path):
    """Every bright spot in an image made on the lab's backgrounds is one of the new, labelled ones."""
    rng = np.random.default_rng(1)
    (tmp_path / "lab").mkdir()
    for i in range(2):
        PILImage.fromarray(_lab_image(rng, rim=False)[0]).save(tmp_path / "lab" / f"lab{i}.png")
    recipe = replace(SMALL, height=128, width=128, tracks=(5, 8), snr=(10, 20), saturated_fraction=0.0,
                     backgrounds=str(tmp_path / "lab"))
    for index in range(3):
        sample = make_sample(recipe, 7, index)
        assert sample.image.dtype == np.uint16 and _components(sample.mask)[1] == len(sample.centres)
        x = sample.image.astype(np.float32)
        response = -(1.6**2) * ndimage.gaussian_laplace(x, 1.6)
        peaks = np.argwhere((response == ndimage.maximum_filter(response, 7)) & (response > 30))
        distance = np.hypot(*(peaks[:, None, :] - sample.centres[None, :, :]).transpose(2, 0, 1)).min(axis=1)
        assert len(peaks) >= len(sample.centres) // 2 and distance.max() < 3, index


def test_cerber_generate_realistic_with_lab_backgrounds(tmp_path):
    from cerber_model.cli import main

    (tmp_path / "lab").mkdir()
    PILImage.fromarray(_lab_image(np.random.default_rng(2), rim=False)[0]).save(tmp_path / "lab" / "a.png")
    out = tmp_path / "data"
    assert main(["generate", str(out), "--count", "2", "--seed", "1", "--recipe", "realistic", "--size", "96", "96",
                 "--backgrounds", str(tmp_path / "lab"), "--workers", "1", "--quiet"]) == 0
    recipe = recipe_from_dict(json.loads((out / "recipe.json").read_text()))
    assert isinstance(recipe, RealisticRecipe) and recipe.height == 96 and recipe.backgrounds.endswith("lab")
    assert read_image(out / "train" / "images" / "synth_00000.png").data.dtype == np.uint16
    assert main(["generate", str(tmp_path / "no"), "--count", "1", "--seed", "1", "--backgrounds",
                 str(tmp_path / "lab"), "--quiet"]) == 2  # the prototype's recipe has no backgrounds


def test_cerber_generate_smoothed_fraction(tmp_path, capsys):
    """--smoothed-fraction 0 makes the images of a recipe written before smoothing existed."""
    from cerber_model.cli import main

    for name, fraction in (("white", "0"), ("smooth", "1")):
        assert main(["generate", str(tmp_path / name), "--count", "1", "--seed", "5", "--recipe", "clean", "--size",
                     "96", "96", "--smoothed-fraction", fraction, "--workers", "1", "--quiet"]) == 0
        written = json.loads((tmp_path / name / "recipe.json").read_text())["recipe"]
        assert written["smoothed_fraction"] == float(fraction)
    old = {k: v for k, v in replace(named_recipe("clean"), height=96, width=96).to_dict().items()
           if k not in ("smoothed_fraction", "noise_smoothing")}
    expected = make_sample(recipe_from_dict(old), 5, 0).image
    image = read_image(next((tmp_path / "white" / "train" / "images").glob("*.png"))).data
    assert np.array_equal(image, expected)
    assert not np.array_equal(read_image(next((tmp_path / "smooth" / "train" / "images").glob("*.png"))).data,
                              expected)
    assert main(["generate", str(tmp_path / "no"), "--count", "1", "--seed", "1", "--smoothed-fraction", "0",
                 "--quiet"]) == 2
    assert "--smoothed-fraction needs the realistic recipe" in capsys.readouterr().err


def test_no_spot_is_too_faint_to_be_found():
    """Every spot's matched-filter SNR (peak SNR x sqrt(pi sd_u sd_v)) reaches min_detectability, while
    SNRs still start at the recipe's low end for spots large enough to be seen that faint."""
    recipe = replace(SMALL, snr=(0.7, 30.0), track_sd=(0.6, 5.0), tracks=(40, 40), saturated_fraction=0.0)
    snr, sds = [], []
    for index in range(8):
        sample = make_sample(recipe, 5, index)
        snr.append(sample.snr)
        sds.append(sample.sds)
    snr, sds = np.concatenate(snr), np.concatenate(sds)
    detectability = snr * np.sqrt(np.pi * sds[:, 0] * sds[:, 1])
    assert detectability.min() >= 0.98 * recipe.min_detectability
    assert snr.min() < 1.0 and snr.max() > 10.0
    # Without the floor, small faint spots are drawn: the floor is what keeps them out.
    loose = [make_sample(replace(recipe, min_detectability=0.0), 5, i) for i in range(8)]
    loose = np.concatenate([s.snr * np.sqrt(np.pi * s.sds[:, 0] * s.sds[:, 1]) for s in loose])
    assert (loose < 0.8 * recipe.min_detectability).sum() > 10
    with pytest.raises(ValueError, match="min_detectability"):
        RealisticRecipe(min_detectability=-1.0)
    with pytest.raises(ValueError, match="texture_grain"):
        RealisticRecipe(texture_grain=(0.0, 2.0))


def test_recipe_files_written_before_the_detectability_floor_make_the_same_images():
    """A recipe JSON without the settings added later (the detectability floor, the coarser texture,
    spots on structures, the SNR over clutter, cells) was drawn without them: it still is, while a
    current recipe's JSON round-trips its own values."""
    current = replace(SMALL, tracks=(30, 30))
    old = current.to_dict()
    for added in ("min_detectability", "texture_grain", "in_structure_fraction", "snr_over_clutter", "cells",
                  "smoothed_fraction", "noise_smoothing"):
        del old[added]
    loaded = recipe_from_dict(json.loads(json.dumps(old)))
    assert (loaded.min_detectability, loaded.texture_grain) == (0.0, (1.5, 6.0))
    assert (loaded.in_structure_fraction, loaded.snr_over_clutter, loaded.cells) == (0.0, False, (0, 0))
    assert loaded.smoothed_fraction == 0.0
    assert recipe_from_dict(json.loads(json.dumps(current.to_dict()))) == current
    faint = [make_sample(loaded, 2, i) for i in range(4)]
    detectability = np.concatenate([s.snr * np.sqrt(np.pi * s.sds[:, 0] * s.sds[:, 1]) for s in faint])
    assert detectability.min() < current.min_detectability


#: Big bright blobs, no other clutter, a flat dim background: where a spot sits is easy to tell.
_BLOBS = replace(SMALL, height=256, width=256, tracks=(30, 30), blobs=(3, 3), blob_sd=(15.0, 20.0), rings=(0, 0),
                 cells=(0, 0), filaments=(0, 0), texture_probability=0.0, dust=(0, 0), scratch_probability=0.0,
                 clutter_snr=(30.0, 40.0), inhomogeneities=(0, 0), vignetting=(0.0, 0.0), gradient=(0.0, 0.0),
                 hot_pixels=(0.0, 0.0), saturated_fraction=0.0, background_photons=(100.0, 100.0))


def _share_on_structure(recipe, seed):
    """Share of spots whose surroundings (a ring of 6-9 px) are brighter than the image's
    background by at least 5 noise SDs."""
    on = total = 0
    for index in range(6):
        sample = make_sample(recipe, seed, index)
        x = ndimage.median_filter(sample.image.astype(np.float64), 5)
        level = np.median(x)
        noise = noise_sd(sample.image)
        rr, cc = np.mgrid[-9:10, -9:10]
        ring = (np.hypot(rr, cc) >= 6) & (np.hypot(rr, cc) <= 9)
        for r, c in np.rint(sample.centres).astype(int):
            rows, cols = np.clip(r + rr[ring], 0, x.shape[0] - 1), np.clip(c + cc[ring], 0, x.shape[1] - 1)
            on += np.median(x[rows, cols]) > level + noise
            total += 1
    return on / total


def test_spots_are_placed_on_structures_at_the_share_asked():
    """Real spots sit in nuclei and on tissue: with in_structure_fraction 1 nearly every spot lies on
    a blob, with 0 only those that land there by chance."""
    anywhere = _share_on_structure(replace(_BLOBS, in_structure_fraction=0.0), 7)
    on_blobs = _share_on_structure(replace(_BLOBS, in_structure_fraction=1.0), 7)
    assert anywhere < 0.5 and on_blobs > 0.85, (anywhere, on_blobs)
    with pytest.raises(ValueError, match="in_structure_fraction"):
        RealisticRecipe(in_structure_fraction=1.5)
    with pytest.raises(ValueError, match="cell_radius"):
        RealisticRecipe(cell_radius=(0.0, 10.0))


def test_spots_on_texture_stand_out_from_it():
    """With snr_over_clutter a spot's SNR counts the texture around it as noise, so spots on a strong
    texture are brighter than the same SNRs on shot noise alone would make them."""
    textured = replace(_BLOBS, blobs=(0, 0), texture_probability=1.0, texture_grain=(3.0, 3.0), clutter_snr=(1.0, 1.0),
                       in_structure_fraction=1.0, snr=(5.0, 5.0), min_detectability=0.0, track_sd=(2.0, 2.0))

    def contrast(recipe):
        peaks = []
        for index in range(4):
            sample = make_sample(recipe, 8, index)
            x = sample.image.astype(np.float64)
            surround = ndimage.median_filter(x, 15)
            c = np.rint(sample.centres).astype(int)
            peaks.append(ndimage.maximum_filter(x, 3)[c[:, 0], c[:, 1]] - surround[c[:, 0], c[:, 1]])
        return np.median(np.concatenate(peaks))

    plain, counted = contrast(replace(textured, snr_over_clutter=False)), contrast(textured)
    assert counted > 1.5 * plain, (plain, counted)


def test_a_share_of_images_has_smoothed_noise():
    """Half of the images (the default) have noise smoothed over 0.4-1.2 px, as processing leaves
    real ones: their neighbouring pixels correlate; the others' do not. Spots stay where they were."""
    from cerber_model.runtime.images import noise_correlation

    flat = replace(SMALL, tracks=(0, 0), blobs=(0, 0), rings=(0, 0), filaments=(0, 0), texture_probability=0.0,
                   dust=(0, 0), scratch_probability=0.0, hot_pixels=(0.0, 0.0), inhomogeneities=(0, 0),
                   vignetting=(0.0, 0.0), gradient=(0.0, 0.0), background_photons=(200.0, 2000.0),
                   bit_depths=(16,))
    factors = [noise_correlation(make_sample(flat, 4, i).image, 1.5) for i in range(24)]
    smoothed = sum(f > 1.5 for f in factors)
    assert 6 <= smoothed <= 18 and sum(f < 1.15 for f in factors) == 24 - smoothed
    assert all(noise_correlation(make_sample(replace(flat, smoothed_fraction=0.0), 4, i).image, 1.5) < 1.15
               for i in range(6))
    assert all(noise_correlation(make_sample(replace(flat, smoothed_fraction=1.0), 4, i).image, 1.5) > 1.5
               for i in range(6))
    spots = replace(SMALL, smoothed_fraction=1.0)
    plain = make_sample(replace(spots, smoothed_fraction=0.0), 8, 0)
    assert np.array_equal(make_sample(spots, 8, 0).centres, plain.centres)
    with pytest.raises(ValueError, match="smoothed_fraction"):
        replace(SMALL, smoothed_fraction=1.5)
