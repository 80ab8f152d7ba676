"""Track contrast: noise SDs above the image's own background, at the track's own size."""

import numpy as np
import pytest
from scipy import ndimage

from cerber_model.runtime.contrast import CONTRAST_SCALES, measure_contrast
from cerber_model.runtime.tracks import extract_tracks


def _spot(shape, centre, sd, amplitude):
    rr, cc = np.indices(shape)
    return amplitude * np.exp(-((rr - centre[0]) ** 2 + (cc - centre[1]) ** 2) / (2 * sd**2))


def test_a_spot_stands_out_by_its_amplitude_and_size_in_noise_units():
    rng = np.random.default_rng(0)
    noise = rng.normal(0, 1, (300, 300))
    image = 100 + noise + _spot(noise.shape, (100, 100), 1.5, 8) + _spot(noise.shape, (200, 200), 1.5, 4)
    contrast = measure_contrast(image)
    bright, faint, empty = contrast.of(image, np.array([[100, 100], [200, 200], [150, 40]]))
    assert bright > 2 * faint * 0.8 and faint > 5 > empty  # about proportional to the amplitude
    # In other units (gain and offset of another camera) the contrast is the same.
    again = measure_contrast(7 * image + 500).of(7 * image + 500, np.array([[100, 100], [200, 200]]))
    np.testing.assert_allclose(again, [bright, faint], rtol=1e-3)
    assert len(contrast.scale_noise) == len(CONTRAST_SCALES)


def test_the_network_input_levels_give_the_same_contrast_as_its_own():
    """Analysis measures the contrast with the levels it normalises the network's input with
    (noise counted at the model's noise scale), rather than estimating them twice: the scale
    divides every response alike, so the contrast stays what it is with the pixel noise."""
    from cerber_model.runtime.images import background_levels

    rng = np.random.default_rng(5)
    shape = (400, 400)
    smooth = ndimage.gaussian_filter(rng.normal(0, 1, shape), 0.8)
    rr, cc = np.indices(shape)
    image = 300 + 0.3 * rr + 12 * smooth / smooth.std() + _spot(shape, (100, 100), 1.0, 90) + \
        _spot(shape, (300, 250), 3.0, 60)
    image = np.round(image).astype(np.uint16)
    centres = np.array([[100, 100], [300, 250], [200, 60]])
    levels = background_levels(image, 16, 1.5)
    assert levels.inverse_noise.mean() < 0.6 * background_levels(image, 16).inverse_noise.mean()  # a real factor
    own = measure_contrast(image).of(image, centres)
    shared = measure_contrast(image, levels=levels).of(image, centres)
    np.testing.assert_allclose(shared, own, rtol=1e-3)
    assert own[0] > 5 and own[1] > 5 > own[2]


def test_texture_at_the_size_of_a_blob_lowers_the_blob_not_a_sharp_spot():
    """The same broad blob and the same sharp spot, on white noise and on noise with texture
    of the blob's size: the texture makes blobs like it common, and the blob's contrast drops
    far more than the spot's."""
    rng = np.random.default_rng(1)
    shape = (320, 320)
    white = rng.normal(0, 1, shape)
    texture = ndimage.gaussian_filter(rng.normal(0, 1, shape), 4)
    texture *= 1.5 / texture.std()
    objects = _spot(shape, (100, 100), 4, 4) + _spot(shape, (220, 220), 1.0, 10)
    centres = np.array([[100, 100], [220, 220]])
    plain = white + objects
    textured = white + texture + objects
    blob_plain, spot_plain = measure_contrast(plain).of(plain, centres)
    blob_textured, spot_textured = measure_contrast(textured).of(textured, centres)
    assert blob_plain > spot_plain  # on white noise the broad blob stands out most (26 and 15)
    assert blob_textured < 0.3 * blob_plain  # 4.9: one bump of the texture's kind among many
    assert spot_textured > 0.7 * spot_plain  # 11.9: still far above the texture at its size


def test_small_and_flat_images_give_finite_values():
    flat = np.full((20, 30), 7, np.uint8)
    assert np.isfinite(measure_contrast(flat).of(flat, np.array([[10, 15], [0, 0], [19, 29]]))).all()
    tiny = np.random.default_rng(2).normal(0, 1, (9, 9)).astype(np.float32)
    assert np.isfinite(measure_contrast(tiny).of(tiny, np.array([[4, 4]]))).all()
    assert measure_contrast(tiny).of(tiny, np.zeros((0, 2))).shape == (0,)


def test_tracks_below_the_smallest_contrast_are_dropped_and_the_rest_renumbered():
    rng = np.random.default_rng(3)
    shape = (200, 200)
    image = 50 + rng.normal(0, 1, shape) + _spot(shape, (50, 50), 1.5, 12) + _spot(shape, (150, 150), 1.5, 1.5)
    prob = np.clip(_spot(shape, (50, 50), 2, 1) + _spot(shape, (150, 150), 2, 1) + _spot(shape, (50, 150), 2, 1), 0, 1)
    contrast = measure_contrast(image)
    every = extract_tracks(prob, image, 0.5, contrast=contrast)
    assert every.count == 3 and np.isfinite(every.columns["contrast"]).all()
    faint = every.columns["contrast"] < 5
    assert faint.sum() == 2  # the faint spot and the empty place
    kept = extract_tracks(prob, image, 0.5, contrast=contrast, min_contrast=5)
    assert kept.count == 1 and kept.columns["contrast"][0] >= 5
    assert (kept.min_contrast, every.min_contrast) == (5, 0)  # what the table was found at
    assert list(kept.columns["track_id"]) == [1] and set(np.unique(kept.labels)) == {0, 1}
    assert abs(kept.columns["row"][0] - 50) < 1 and abs(kept.columns["col"][0] - 50) < 1
    plain = extract_tracks(prob, image, 0.5)
    assert plain.count == 3 and np.isnan(plain.columns["contrast"]).all()


def test_retracking_at_another_threshold_drops_the_same_tracks_as_analyzing_at_it():
    """What the app does when the threshold slider moves (tracks from the kept probability map and
    contrast) gives the tracks of analyzing afresh at that threshold."""
    from dataclasses import replace

    from cerber_model.runtime.analysis import analyze
    from tests.model.helpers import tiny_bundle

    base = tiny_bundle(width=1, seed=3)
    bundle = replace(base, config=replace(base.config, min_contrast=4.0))
    rng = np.random.default_rng(4)
    image = (300 + rng.normal(0, 5, (128, 128)) + _spot((128, 128), (40, 40), 1.5, 60)).astype(np.float32)
    result = analyze(image, bundle)
    assert result.contrast is not None and (result.tracks.columns["contrast"] >= 4).all()
    for threshold in (0.3, 0.6):
        again = result.tracks_at(threshold, bundle.config.min_area_px, None, bundle.config.min_contrast)
        fresh = analyze(image, bundle, threshold=threshold).tracks
        assert again.count == fresh.count
        np.testing.assert_array_equal(again.labels, fresh.labels)
        np.testing.assert_allclose(again.columns["contrast"], fresh.columns["contrast"])


def _patchy(shape, rng):
    """Patchy texture (sparse bumps and dips of SD 2.5 px, heavy-tailed like autofluorescence,
    unlike Gaussian noise), SD 1."""
    texture = ndimage.gaussian_filter(np.where(rng.random(shape) < 0.002, rng.laplace(0, 1, shape), 0.0), 2.5)
    return texture / texture.std()


def test_texture_counts_dark_dips_of_the_background_not_the_rings_of_bright_spots():
    """Camera noise has almost no dips of 5 noise SDs at spot size; patchy texture of that size
    (sparse bumps and dips, heavy-tailed like autofluorescence, unlike Gaussian noise) makes many.
    Bright spots, however many, add none: the dark ring around each is left out."""
    rng = np.random.default_rng(6)
    shape = (700, 700)
    white = 200 + rng.normal(0, 3, shape)
    textured = white + 8 * _patchy(shape, rng)
    spots = white.copy()
    for r in range(30, 700, 40):
        for c in range(30, 700, 40):
            spots += _spot(shape, (r, c), rng.uniform(1, 3), 60)
    clean, busy, bright = (measure_contrast(x).texture for x in (white, textured, spots))
    assert clean <= 10 and bright <= 10
    assert busy >= 40


def test_the_rings_of_neighbouring_spots_that_meet_are_not_texture():
    """Three bright spots of SD 3 px, 12 px around a point, leave a dip there where their rings
    meet, deeper than a third of any one of them (the prototype's crowded broad tracks do): on a
    clean background that dip is theirs, not texture (86 dips per megapixel when each spot was
    compared with the dip alone)."""
    rng = np.random.default_rng(1)
    shape = (600, 600)
    image = 200 + rng.normal(0, 3, shape)
    for r in range(50, 560, 60):
        for c in range(50, 560, 60):
            for k in range(3):
                angle = 2 * np.pi * k / 3 + rng.uniform(0, 2)
                image += _spot(shape, (r + 12 * np.sin(angle), c + 12 * np.cos(angle)), 3, 12)
    assert measure_contrast(image).texture <= 15


@pytest.mark.parametrize("seed", [0, 2, 4])
def test_a_strongly_curved_smooth_background_is_not_texture(seed):
    """Broad glows 15-30 noise SDs high on little noise, in 8 bit: the background estimate (medians of
    16 px blocks, interpolated) leaves undulations that the largest scale reads as dark dips (35-90
    per megapixel counted at every scale); they are broader than any spot, so not texture."""
    from cerber_model.runtime.images import background_levels
    from cerber_model.runtime.synthesis import add_smooth

    rng = np.random.default_rng(seed)
    canvas = rng.normal(0, 1, (512, 512)).astype(np.float32)
    add_smooth(canvas, [(*rng.uniform(0, 512, 2), *rng.uniform(20, 60, 2), rng.uniform(0, np.pi), rng.uniform(15, 30))
                        for _ in range(6)])
    image = np.clip(np.rint(100 + 2 * canvas), 0, 255).astype(np.uint8)
    assert measure_contrast(image, levels=background_levels(image, 16, 1.5)).texture <= 10


def test_a_clean_background_gets_the_models_setting_for_it_unless_a_threshold_is_given():
    """A bundle with a setting for clean backgrounds uses it on an image whose texture allows, in
    analysis and in re-tracking from the kept map alike; a threshold given overrides it, and a
    textured image keeps the bundle's own."""
    from dataclasses import replace

    from cerber_model.runtime.analysis import analyze
    from cerber_model.runtime.bundle import CleanBackground
    from tests.model.helpers import tiny_bundle

    base = tiny_bundle(width=1, seed=3)
    clean = CleanBackground(threshold=0.2, min_contrast=3.0, max_texture=30.0)
    bundle = replace(base, config=replace(base.config, threshold=0.6, min_contrast=4.0, clean_background=clean))
    rng = np.random.default_rng(4)
    image = (300 + rng.normal(0, 5, (320, 320)) + _spot((320, 320), (40, 40), 1.5, 60)).astype(np.float32)
    result = analyze(image, bundle)
    assert result.contrast is not None and result.contrast.texture <= 30
    assert result.tracks.clean_background and (result.tracks.threshold, result.tracks.min_contrast) == (0.2, 3.0)
    # On an image too small for one window of 256 px the texture is counted on too few pixels to
    # call the background clean: the bundle's own setting.
    small = analyze(image[:200, :200], bundle)
    assert small.contrast is not None and small.contrast.texture <= 30 and small.contrast.texture_px < 256 * 256
    assert not small.tracks.clean_background and small.tracks.threshold == 0.6
    again = result.tracks_at(0.6, bundle.config.min_area_px, None, 4.0, clean)
    np.testing.assert_array_equal(again.labels, result.tracks.labels)
    given = analyze(image, bundle, threshold=0.6).tracks
    assert not given.clean_background and (given.threshold, given.min_contrast) == (0.6, 4.0)
    strict = replace(bundle, config=replace(bundle.config, clean_background=replace(clean, max_texture=0.0)))
    textured = analyze(image + 8 * _patchy(image.shape, rng), strict)
    assert textured.contrast is not None and textured.contrast.texture > 0
    assert not textured.tracks.clean_background and textured.tracks.threshold == 0.6


def test_a_clean_background_may_run_the_network_of_another_bundled_model(tmp_path, monkeypatch):
    """A setting for clean backgrounds that names a bundled model's network: on a clean image that
    network makes the probability map, in analysis, in a batch run and on a named engine alike; a
    textured image gets the model's own; a model that is not shipped is named when loading."""
    from dataclasses import replace

    import tifffile

    from cerber_model.runtime import bundle as bundle_module
    from cerber_model.runtime.analysis import analyze, predict_probability
    from cerber_model.runtime.batch import BatchSettings, analyze_file, predict, read_input
    from cerber_model.runtime.bundle import BundleError, CleanBackground, describe_bundle, load_bundle, save_bundle
    from tests.model.helpers import tiny_bundle

    other = save_bundle(tiny_bundle(width=1, seed=5), tmp_path / "other")
    monkeypatch.setattr(bundle_module, "bundled_models", lambda: {"other": other})
    base = tiny_bundle(width=1, seed=3)
    clean = CleanBackground(threshold=0.2, min_contrast=3.0, max_texture=30.0, network="other")
    folder = save_bundle(replace(base, config=replace(base.config, threshold=0.6, min_contrast=4.0,
                                                      clean_background=clean)), tmp_path / "model")
    bundle = load_bundle(folder)
    assert bundle.config.clean_background == clean and bundle.clean_network().path == other
    assert "the network of the model 'other'" in describe_bundle(bundle)
    rng = np.random.default_rng(4)
    image = (300 + rng.normal(0, 5, (320, 320)) + _spot((320, 320), (40, 40), 1.5, 60)).astype(np.float32)
    norm = bundle.config.normalization
    theirs = predict_probability(image, bundle.clean_network().engine(), norm)
    ours = predict_probability(image, bundle.engine(), norm)
    assert np.abs(theirs - ours).max() > 1e-3  # two different networks
    result = analyze(image, bundle)
    assert result.tracks.clean_background and result.network == "other"
    np.testing.assert_allclose(result.probability, theirs, atol=1e-6)
    named = analyze(image, bundle, engine=bundle.engine("onnxruntime")).probability  # engines agree to about 1e-6
    np.testing.assert_allclose(named, predict_probability(image, bundle.clean_network().engine("onnxruntime"), norm),
                               atol=1e-7)
    tifffile.imwrite(tmp_path / "clean.tif", image)
    prepared = read_input(tmp_path / "clean.tif", "clean", BatchSettings(tmp_path / "out"), bundle=bundle)
    np.testing.assert_allclose(predict(prepared, bundle)[0], theirs, atol=1e-6)
    (tmp_path / "out").mkdir()
    summary = analyze_file(tmp_path / "clean.tif", "clean", BatchSettings(tmp_path / "out"), bundle).summary
    assert (summary["network"], summary["min_contrast"], summary["threshold"]) == ("other", 3.0, 0.2)
    textured = (image + 8 * _patchy(image.shape, rng)).astype(np.float32)
    strict = replace(bundle, config=replace(bundle.config, clean_background=replace(clean, max_texture=0.0)))
    busy = analyze(textured, strict)
    assert not busy.tracks.clean_background and busy.network == ""
    np.testing.assert_allclose(busy.probability, predict_probability(textured, bundle.engine(), norm), atol=1e-6)

    monkeypatch.setattr(bundle_module, "bundled_models", lambda: {})
    with pytest.raises(BundleError, match="runs the network of the model 'other', which this Cerber does not ship"):
        load_bundle(folder)


def test_noise_beside_a_bright_spot_does_not_borrow_its_contrast():
    """At large scales a bright spot's response reaches several pixels out; points 5-7 px from it
    count only what is theirs (a scale counts where its response peaks), as without the spot."""
    rng = np.random.default_rng(8)
    noise = 200 + rng.normal(0, 10, (256, 256))
    image = noise + _spot(noise.shape, (60, 60), 1.5, 400)
    beside = np.array([[60, 53], [67, 60], [55, 55], [63, 53], [60, 66]])
    alone = measure_contrast(noise).of(noise, beside)
    near = measure_contrast(image).of(image, beside)
    assert (near <= alone + 0.5).all() and near.max() < 5  # were 8.5-23.9 when borrowed
    assert measure_contrast(image).of(image, np.array([[60, 60]]))[0] > 50


def _one_region(shape, centres, radius):
    """A probability map that marks the spots at ``centres`` as one flat region (no dip between them),
    as the network does for two broad spots a few pixels apart."""
    rr, cc = np.indices(shape)
    near = np.zeros(shape, dtype=bool)
    for r, c in centres:
        near |= (rr - r) ** 2 + (cc - c) ** 2 <= radius**2
    return ndimage.binary_closing(near, np.ones((5, 5))).astype(np.float32)


def test_a_track_over_two_spots_of_the_image_is_split_between_them():
    rng = np.random.default_rng(5)
    shape = (120, 120)
    centres = [(60, 55), (60, 63)]  # 8 px apart, SD 2.5: hardly a dip in the image itself
    image = 100 + rng.normal(0, 1, shape) + sum(_spot(shape, c, 2.5, 6) for c in centres)
    prob = _one_region(shape, centres, 4.5)  # about 150 px, as the network marks such a pair
    assert extract_tracks(prob, image, 0.5).count == 1  # the map alone gives one track
    split = extract_tracks(prob, image, 0.5, contrast=measure_contrast(image), min_contrast=5)
    assert split.count == 2
    found = np.sort(np.c_[split.columns["row"], split.columns["col"]], axis=0)
    np.testing.assert_allclose(found[:, 1], [55, 63], atol=1.5)
    assert set(np.unique(split.labels)) == {0, 1, 2} and split.columns["area_px"].sum() == (prob > 0.5).sum()


@pytest.mark.parametrize("seed", range(4))
def test_one_broad_spot_or_a_ridge_stays_one_track(seed):
    rng = np.random.default_rng(seed)
    shape = (120, 120)
    spot = 100 + rng.normal(0, 1, shape) + _spot(shape, (60, 60), 4.0, 12)
    prob = _one_region(shape, [(60, 60)], 8)
    assert extract_tracks(prob, spot, 0.5, contrast=measure_contrast(spot)).count == 1
    # A ridge with bumps along it (a filament): elongated, never split into spots.
    rr, cc = np.indices(shape)
    ridge = 100 + rng.normal(0, 1, shape) + 6 * np.exp(-((rr - 60) ** 2) / 2.0) * (1 + 0.5 * np.sin(cc / 2.0))
    prob = ((np.abs(rr - 60) <= 1) & (np.abs(cc - 60) <= 25)).astype(np.float32)
    assert extract_tracks(prob, ridge, 0.5, contrast=measure_contrast(ridge)).count == 1


def test_counted_by_rarity_broad_and_small_scales_pass_a_contrast_about_as_often_on_noise():
    """Noise makes fewer bumps at larger scales: counted plainly, the peaks at 4 px reach a contrast
    of 4 several times less often than those at 1 px; counted by their rarity, about as often."""
    from cerber_model.runtime.contrast import log_filter, rarity_contrast

    rng = np.random.default_rng(1)
    plain, rare = {1.0: 0, 4.0: 0}, {1.0: 0, 4.0: 0}
    for _ in range(2):
        image = 100 + rng.normal(0, 3, (1024, 1024))
        contrast = measure_contrast(image)
        x = contrast.levels.apply(image.astype(np.float32))
        for scale in plain:
            ratio = (log_filter(x, scale) / contrast.scale_noise[CONTRAST_SCALES.index(scale)])[30:-30, 30:-30]
            peaks = ratio[ratio == ndimage.maximum_filter(ratio, 3)]
            plain[scale] += int((peaks >= 4).sum())
            rare[scale] += int((rarity_contrast(peaks, scale) >= 4).sum())
    assert rare[1.0] == plain[1.0] > 3 * plain[4.0]
    assert 0.5 < rare[4.0] / rare[1.0] < 2


def test_on_a_clean_background_a_broad_faint_spot_may_count_by_its_rarity():
    """With ``rarity`` in the setting for clean backgrounds a broad faint spot passes a smallest
    contrast that it misses counted plainly, and a small spot above it stays; a textured image,
    which does not get the setting, keeps the same tracks either way."""
    from dataclasses import replace

    from cerber_model.runtime.analysis import tracks_in
    from cerber_model.runtime.bundle import CleanBackground

    rng = np.random.default_rng(2)
    shape = (320, 320)
    image = 300 + rng.normal(0, 5, shape) + _spot(shape, (100, 100), 4.0, 6.5) + _spot(shape, (220, 220), 1.0, 20)
    contrast = measure_contrast(image)
    centres = np.array([[100, 100], [220, 220]])
    broad, small = contrast.of(image, centres)
    broad_rare, small_rare = replace(contrast, rarity=True).of(image, centres)
    assert broad < 5.8 < broad_rare < broad + 0.5 and 5.8 < small <= small_rare < small + 0.2
    rr, cc = np.indices(shape)
    probability = np.where(((rr - 100) ** 2 + (cc - 100) ** 2 <= 16) | ((rr - 220) ** 2 + (cc - 220) ** 2 <= 4),
                           np.float32(0.9), np.float32(0.0))
    setting = CleanBackground(threshold=0.5, min_contrast=5.8, max_texture=30.0)

    def tracks(data, rarity):
        return tracks_in(probability, data, measure_contrast(data), 0.5, 4, None, 5.8, replace(setting, rarity=rarity))

    plain, rare = tracks(image, False), tracks(image, True)
    assert plain.clean_background and rare.clean_background
    assert (plain.count, rare.count) == (1, 2)
    textured = image + 8 * _patchy(shape, rng)
    plain, rare = tracks(textured, False), tracks(textured, True)
    assert not rare.clean_background
    np.testing.assert_array_equal(rare.labels, plain.labels)


def _beads(shape, rng, count, amplitudes, min_gap=10):
    """Bead-like spots (SD 1-1.8 px, the given amplitudes in photons) at least ``min_gap`` px apart on
    20 photons of background, with shot noise, read noise of 3 and an offset of 100: what a camera
    records of fluorescent beads. Returns the image and the centres."""
    centres = []
    while len(centres) < count:
        c = rng.uniform(12, np.array(shape) - 12)
        if all(np.hypot(*(c - o)) >= min_gap for o in centres):
            centres.append(c)
    expected = 20 + sum(_spot(shape, c, rng.uniform(1.0, 1.8), a) for c, a in zip(centres, amplitudes, strict=True))
    image = rng.poisson(expected) + 100 + rng.normal(0, 3, shape)
    return np.rint(image).astype(np.uint16), np.array(centres)


def _pair_region(shape, first, second, radius=4):
    """A track over two spots: the pixels within ``radius`` px of either centre."""
    rr, cc = np.indices(shape)
    return (np.hypot(rr - first[0], cc - first[1]) <= radius) | (np.hypot(rr - second[0], cc - second[1]) <= radius)


def test_a_faint_bead_beside_a_bright_one_gets_its_own_track():
    """A bead 5.5 px from one 12 times as bright rises far less than a third of the bright one's
    peak above the way between them, and the network marks one track over both; each spot's peak
    is judged by its own height, so the track is split. Bright beads alone, shot noise on them and
    all, stay one track each."""
    rng = np.random.default_rng(3)
    shape = (200, 200)
    bright, faint = np.array([100.0, 100.0]), np.array([100.0, 105.5])
    expected = 20 + _spot(shape, bright, 1.4, 2400) + _spot(shape, faint, 1.4, 200)
    image = np.rint(rng.poisson(expected) + 100 + rng.normal(0, 3, shape)).astype(np.uint16)
    prob = _pair_region(shape, bright, faint).astype(np.float32)
    assert extract_tracks(prob, image, 0.5).count == 1
    split = extract_tracks(prob, image, 0.5, contrast=measure_contrast(image))
    assert split.count == 2
    found = np.c_[split.columns["row"], split.columns["col"]]
    assert min(np.hypot(*(found - faint).T)) <= 1.5 and min(np.hypot(*(found - bright).T)) <= 1.5

    lone, centres = _beads((400, 400), rng, 40, np.exp(rng.uniform(np.log(500), np.log(3000), 40)), min_gap=30)
    rr, cc = np.indices(lone.shape)
    prob = (np.min([np.hypot(rr - r, cc - c) for r, c in centres], axis=0) <= 5).astype(np.float32)
    assert extract_tracks(prob, lone, 0.5, contrast=measure_contrast(lone)).count == 40


def test_a_bead_on_the_flank_of_a_brighter_one_gets_its_own_track(monkeypatch):
    """A bead 4 px from one 5 times as bright, under one track of the network's (one maximum of
    probability, 110 px): at the scales the track's size allows (1.5 px and above) the LoG shows no
    second peak that stands out. The image less its reflection through the bright bead's centre
    shows it, and the track is split there."""
    import cerber_model.runtime.contrast as contrast_module

    rng = np.random.default_rng(5)
    shape = (200, 200)
    bright, faint = np.array([100.0, 100.0]), np.array([100.0, 104.0])
    expected = 20 + _spot(shape, bright, 1.4, 3000) + _spot(shape, faint, 1.4, 600)
    image = np.rint(rng.poisson(expected) + 100 + rng.normal(0, 3, shape)).astype(np.uint16)
    rr, cc = np.indices(shape)
    prob = np.exp(-((rr - 100) ** 2 + (cc - 101.3) ** 2) / (2 * 5.0**2)).astype(np.float32)
    contrast = measure_contrast(image)
    split = extract_tracks(prob, image, 0.5, contrast=contrast)
    assert split.count == 2
    found = np.c_[split.columns["row"], split.columns["col"]]
    assert min(np.hypot(*(found - faint).T)) <= 1.5 and min(np.hypot(*(found - bright).T)) <= 1.5

    monkeypatch.setattr(contrast_module, "_shoulder_peaks", lambda x, region: None)
    assert extract_tracks(prob, image, 0.5, contrast=contrast).count == 1


@pytest.mark.parametrize("seed", [1, 2])
def test_elliptic_spots_of_a_few_grey_levels_are_not_split_by_their_reflection(seed):
    """On an 8-bit image whose noise is a fifth of a grey level, a spot's top is a plateau of equal
    values with no single highest pixel. Mirrored through the first of them, an elliptic spot leaves
    a residual as high as the spot's slope and was split (50-55 tracks for 49 spots); mirrored
    through the centre of its upper half it leaves nothing."""
    rng = np.random.default_rng(seed)
    shape = (300, 300)
    rr, cc = np.indices(shape)
    centres = [(r + rng.uniform(-0.5, 0.5), c + rng.uniform(-0.5, 0.5)) for r in range(30, 280, 40)
               for c in range(30, 280, 40)]
    image = 3 + rng.normal(0, 0.2, shape)
    for r, c in centres:
        angle = rng.uniform(0, np.pi)
        u = (rr - r) * np.cos(angle) + (cc - c) * np.sin(angle)
        v = -(rr - r) * np.sin(angle) + (cc - c) * np.cos(angle)
        image += rng.uniform(3, 6) * np.exp(-((u / 2.5) ** 2) / 2 - (v / 1.5) ** 2 / 2)
    image = np.clip(np.rint(image), 0, 255).astype(np.uint8)
    prob = (np.min([np.hypot(rr - r, cc - c) for r, c in centres], axis=0) <= 5).astype(np.float32)
    assert extract_tracks(prob, image, 0.5, contrast=measure_contrast(image)).count == len(centres)


def test_two_small_spots_3_5_px_apart_are_split_at_1_px():
    """Spots of SD 1 px 3.5 px apart show no peak of each at 1.5 px and above; at 1 px they do."""
    rng = np.random.default_rng(2)
    shape = (200, 200)
    a, b = np.array([100.0, 100.0]), np.array([100.0, 103.5])
    image = 100 + rng.normal(0, 1, shape) + _spot(shape, a, 1.0, 40) + _spot(shape, b, 1.0, 40)
    prob = _pair_region(shape, a, b, radius=3).astype(np.float32)
    split = extract_tracks(prob, image, 0.5, contrast=measure_contrast(image))
    assert split.count == 2
    np.testing.assert_allclose(np.sort(split.columns["col"]), [100, 103.5], atol=1.0)


@pytest.mark.parametrize("seed", range(2))
def test_spots_on_an_image_of_a_few_grey_levels_stay_one_track_each(seed):
    """On an 8-bit image whose noise is a fifth of a grey level, most pixels share one value and the
    background's response at small scales hardly varies: the steps of a spot's grey levels would
    count as thousands of noise SDs there and split it (7-8 of 49 spots were). Such scales are not
    used for splitting."""
    rng = np.random.default_rng(seed)
    shape = (300, 300)
    centres = [(r, c) for r in range(30, 280, 40) for c in range(30, 280, 40)]
    image = 3 + rng.normal(0, 0.2, shape) + sum(_spot(shape, p, 1.8, 3) for p in centres)
    image = np.clip(np.rint(image), 0, 255).astype(np.uint8)
    rr, cc = np.indices(shape)
    prob = (np.min([np.hypot(rr - r, cc - c) for r, c in centres], axis=0) <= 4).astype(np.float32)
    assert extract_tracks(prob, image, 0.5, contrast=measure_contrast(image)).count == len(centres)


@pytest.mark.parametrize("seed", range(2))
def test_a_lone_grey_level_on_an_image_of_a_few_grey_levels_is_not_a_spot(seed):
    """On an 8-bit image whose noise is 0.3 grey levels, a pixel one level above its neighbours is
    noise, but the background's response at 0.75 px hardly varies (most pixels share one value) and
    would count it as 10 noise SDs or more: two of three such pixels reached a contrast of 7. The
    contrast leaves out the scales where the noise is not measured; the spot keeps its contrast."""
    rng = np.random.default_rng(seed)
    shape = (300, 300)
    image = 3 + rng.normal(0, 0.3, shape) + _spot(shape, (150, 150), 1.8, 3)
    image = np.clip(np.rint(image), 0, 255).astype(np.uint8)
    far = np.hypot(*(np.indices(shape) - 150)) > 20
    lone = np.argwhere((image == 4) & far)[:200]
    contrast = measure_contrast(image)
    assert not contrast.measured()[0] and contrast.measured()[-1]
    spot, *others = contrast.of(image, np.r_[[[150, 150]], lone])
    assert spot > 20
    assert np.mean(np.asarray(others) >= 7) < 0.1


def _grid(shape, step=40):
    return [(r, c) for r in range(30, shape[0] - 20, step) for c in range(30, shape[1] - 20, step)]


@pytest.mark.parametrize("seed", range(2))
def test_crowded_saturated_spots_keep_their_contrast(seed):
    """Bright spots every 40 px reach, at the larger scales, most pixels of the image with their
    response, whose robust SD then counted them and not the noise (20 times the noise's at 5 px) and
    left every scale above 1.5 px out. A saturated spot's flat top peaks only at the larger ones, so
    it got contrast 0: the default model found none of these 49. The background's response is
    measured away from such objects."""
    from cerber_model.runtime.analysis import analyze
    from cerber_model.runtime.bundle import load_model

    rng = np.random.default_rng(seed)
    shape = (320, 320)
    centres = _grid(shape)
    spots = sum(_spot(shape, p, 2.5, 4000) for p in centres)
    image = np.minimum(1000 + rng.normal(0, 20, shape) + spots, 1000 + 0.3 * 4000)  # tops flat over ~4 px
    result = analyze(np.rint(image).astype(np.uint16), load_model("default"))
    assert result.tracks.count == len(centres)


@pytest.mark.parametrize("amplitude", [5, 10, 30])
def test_a_square_of_even_brightness_stays_one_track(amplitude):
    """A 5 x 5 px square, amplitude 5-30 noise SDs, curves most at its corners: the LoG at 1-2 px
    peaks there and on its noise, and 3 in 10 such squares were split in two (an 8000 x 8000 image
    of noise with 3000 of them gave 4,439 tracks). Its light spreads alike in every direction, so
    those peaks are its rim and it stays one track (two spots as close spread theirs along their
    line and are still split: above)."""
    rng = np.random.default_rng(amplitude)
    shape = (320, 320)
    centres = _grid(shape)
    image = 1000 + rng.normal(0, 20, shape)
    for r, c in centres:
        image[r - 2:r + 3, c - 2:c + 3] += amplitude * 20
    rr, cc = np.indices(shape)
    prob = (np.min([np.hypot(rr - r, cc - c) for r, c in centres], axis=0) <= 3.7).astype(np.float32)
    assert extract_tracks(prob, image, 0.5, contrast=measure_contrast(image), min_contrast=5).count == len(centres)


def _crowded(count, size, seed):
    """``count`` round spots of SD 1.2-2.5 px and 300-1500 photons at random places on 200 photons
    of background, shot noise, offset 100 (``benchmarks/bench_linearity.py``'s images); 16 bit."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(0, size - 1, (count, 2))
    photons = np.full((size, size), 200.0)
    rr, cc = np.indices(photons.shape)
    for (r, c), sd, peak in zip(centres, rng.uniform(1.2, 2.5, count), rng.uniform(300, 1500, count), strict=True):
        near = (slice(max(int(r) - 10, 0), int(r) + 11), slice(max(int(c) - 10, 0), int(c) + 11))
        photons[near] += peak * np.exp(-((rr[near] - r) ** 2 + (cc[near] - c) ** 2) / (2 * sd**2))
    return (rng.poisson(photons) + 100).astype(np.uint16), centres


def test_spots_crowded_everywhere_are_not_taken_for_the_noise():
    """With spots in every 16 px block (6,400 on a megapixel), the noise measured at a spot's scale
    counted them: 6.5 times the pixel noise's, and the LoG's response varied more at every larger
    scale. The network then saw the spots at a sixth of their height, the contrast was measured only
    at 5 px, and the default model counted 130 of 6,400. The noise is now bounded by what the
    correlation of neighbouring pixels says it is (spots of SD 1.2 px and more hardly touch it)."""
    from cerber_model.runtime.analysis import analyze
    from cerber_model.runtime.bundle import load_model
    from cerber_model.runtime.evaluation import match_points
    from cerber_model.runtime.images import CROWD_CORRELATION, noise_correlation, noise_model

    image, centres = _crowded(1600, 512, 1)
    model = noise_model([image[:256, :256], image[256:, 256:]])
    assert model is not None and model.blur <= 0.5  # shot noise is white (0); the spots blur it a little
    assert noise_correlation(image, 1.5) <= CROWD_CORRELATION * 1.8  # 6.7 uncapped
    contrast = measure_contrast(image)
    assert any(contrast.measured()[:2])  # the smallest scales, which the spots touch least
    tracks = analyze(image, load_model("default")).tracks
    match = match_points(np.c_[tracks.columns["row"], tracks.columns["col"]], centres)
    assert match.tp >= 0.5 * len(centres) and match.fp <= 0.02 * len(centres)


@pytest.mark.parametrize("blur", [0.0, 0.5, 0.8, 1.2])
def test_the_noise_model_predicts_the_response_of_blurred_noise(blur):
    """The blur of an image's noise, from how its high-pass correlates between neighbours, gives the
    LoG's response to that noise at every scale (what the contrast counts as noise); an image whose
    grey levels set its pixel noise has none."""
    from cerber_model.runtime.contrast import log_filter
    from cerber_model.runtime.images import noise_model

    rng = np.random.default_rng(int(blur * 10))
    white = rng.normal(0, 1, (512, 512))
    noise = 40 * (ndimage.gaussian_filter(white, blur) if blur else white)
    model = noise_model([noise[:256, :256], noise[256:, :256], noise[:256, 256:], noise[256:, 256:]])
    # Up to 0.3 px a blur hardly changes how the high-pass correlates (-0.401 to -0.396), nor anything else.
    assert model is not None and model.blur == pytest.approx(max(blur, 0.15), abs=0.15 if blur < 0.3 else 0.06)
    for scale in (0.75, 2.0, 5.0):
        measured = log_filter(noise, scale)[30:-30, 30:-30].std()
        assert model.sd(lambda x, s=scale: log_filter(x, s)) == pytest.approx(measured, rel=0.05)
    assert noise_model([np.rint(1000 + noise / 80).astype(np.uint16)]) is None  # under a grey level


@pytest.mark.parametrize(("sd", "spacing", "amplitude"), [(2.0, 12, 10.0), (5.0, 40, 20.0)])
def test_a_clean_image_crowded_with_spots_keeps_them(sd, spacing, amplitude):
    """Spots of SD 2 px every 12 px at 10 noise SDs, or of SD 5 px every 40 px at 20 (nothing else on
    the image): their response at the larger scales is 3-10 times what the noise makes there, and
    varies more at each larger scale, so only 0.75-1 px counted as measured, which keeps too little of
    such a spot: the default model found 2 of these 625, and 10 of these 49 broad ones.
    On a clean background each scale is judged by the noise model, and where spots crowd already at
    2 px or below, the noise between them is taken for what the noise model says it is."""
    from cerber_model.runtime.analysis import analyze
    from cerber_model.runtime.bundle import load_model
    from cerber_model.runtime.evaluation import match_points

    rng = np.random.default_rng(4)
    shape = (320, 320)
    axis = np.arange(spacing, shape[0] - spacing // 2, spacing)
    centres = np.array([(r, c) for r in axis for c in axis], float) + rng.uniform(-2, 2, (len(axis) ** 2, 2))
    rr, cc = np.indices(shape)
    image = 1000 + rng.normal(0, 20, shape)
    reach = int(5 * sd) + 1
    for r, c in centres:
        near = (slice(max(int(r) - reach, 0), int(r) + reach + 1), slice(max(int(c) - reach, 0), int(c) + reach + 1))
        image[near] += amplitude * 20 * np.exp(-((rr[near] - r) ** 2 + (cc[near] - c) ** 2) / (2 * sd**2))
    tracks = analyze(np.rint(image).astype(np.uint16), load_model("default")).tracks
    assert tracks.clean_background
    match = match_points(np.c_[tracks.columns["row"], tracks.columns["col"]], centres)
    assert match.tp >= 0.9 * len(centres) and match.fp <= 0.01 * len(centres)
