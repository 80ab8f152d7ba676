"""The coarse look on clean backgrounds: the network again on the image binned 2 x 2."""

from dataclasses import replace

import numpy as np
import pytest

from cerber_model.runtime.analysis import bin_image, progress_in_turn
from cerber_model.runtime.regions import Regions, filter_tracks
from cerber_model.runtime.tracks import add_coarse_tracks, extract_tracks


def _disc(shape, centre, radius):
    rr, cc = np.indices(shape)
    return ((rr - centre[0]) ** 2 + (cc - centre[1]) ** 2 <= radius**2).astype(np.float32)


def test_binning_averages_blocks_and_leaves_out_a_last_odd_row_and_column():
    data = np.arange(5 * 7, dtype=np.uint16).reshape(5, 7)
    binned = bin_image(data)
    assert binned.shape == (2, 3) and binned.dtype == np.float32
    assert binned[0, 0] == np.mean(data[:2, :2]) and binned[1, 2] == np.mean(data[2:4, 4:6])


def test_coarse_tracks_that_overlap_none_at_full_resolution_are_added_after_them():
    """A spot found at full resolution keeps its own track; a coarse track elsewhere is added with
    the next number, its outline enlarged, its centre where the binned pixels lie, measured on the
    image itself."""
    shape = (64, 80)
    image = (100 + 50 * _disc(shape, (20, 20), 3) + 20 * _disc(shape, (41, 61), 4)).astype(np.float32)
    full = extract_tracks(_disc(shape, (20, 20), 3), image, 0.5)
    coarse_image = bin_image(image)
    coarse_map = _disc(coarse_image.shape, (10, 10), 2) + _disc(coarse_image.shape, (20.5, 30.5), 2)
    coarse = extract_tracks(coarse_map, coarse_image, 0.5)
    assert len(full) == 1 and len(coarse) == 2
    before = full.labels.copy()
    merged = add_coarse_tracks(full, coarse, image, 2)
    assert len(merged) == 2 and list(merged.columns["track_id"]) == [1, 2]
    assert (merged.columns["row"][0], merged.columns["col"][0]) == (full.columns["row"][0], full.columns["col"][0])
    np.testing.assert_allclose((merged.columns["row"][1], merged.columns["col"][1]),
                               (2 * coarse.columns["row"][1] + 0.5, 2 * coarse.columns["col"][1] + 0.5))
    assert merged.columns["area_px"][1] == 4 * coarse.columns["area_px"][1]
    assert np.count_nonzero(merged.labels == 2) == merged.columns["area_px"][1]
    assert merged.columns["max_intensity"][1] == 120.0  # measured on the image, not the binned one
    np.testing.assert_array_equal(merged.labels == 1, before == 1)
    assert full.coarse_count == 0 and merged.coarse_count == 1
    assert filter_tracks(merged, Regions(exclude=[[(30, 50), (30, 75), (55, 75), (55, 50)]])).coarse_count == 0
    assert filter_tracks(merged, Regions(exclude=[[(10, 10), (10, 30), (30, 30)]])).coarse_count == 1
    assert add_coarse_tracks(full, extract_tracks(np.zeros_like(coarse_map), coarse_image, 0.5), image, 2) is full


def test_a_coarse_track_replaces_the_one_small_fragment_it_covers_but_never_joins_two_tracks():
    """The brightest part of a broad spot, found alone and less surely at full resolution, gives way
    to the coarse track of the whole spot; a track of a third of its area or more, one the network
    was surer of, and two tracks under it (a crowded pair) stay."""
    shape = (64, 96)
    image = (100 + 20 * _disc(shape, (41, 61), 8) + 50 * _disc(shape, (20, 20), 3)).astype(np.float32)
    coarse_image = bin_image(image)
    coarse = extract_tracks(_disc(coarse_image.shape, (20.5, 30.5), 4), coarse_image, 0.5)
    fragment_map = _disc(shape, (20, 20), 3) + 0.6 * _disc(shape, (39, 63), 1.5)
    merged = add_coarse_tracks(extract_tracks(fragment_map, image, 0.5), coarse, image, 2, fragment=3.0)
    assert len(merged) == 2 and merged.coarse_count == 1
    np.testing.assert_allclose((merged.columns["row"][1], merged.columns["col"][1]),
                               (2 * coarse.columns["row"][0] + 0.5, 2 * coarse.columns["col"][0] + 0.5))
    assert merged.labels.max() == 2 and np.count_nonzero(merged.labels == 2) == 4 * coarse.columns["area_px"][0]
    kept = add_coarse_tracks(extract_tracks(fragment_map, image, 0.5), coarse, image, 2)  # no replacing asked
    assert len(kept) == 2 and kept.coarse_count == 0 and kept.columns["area_px"][1] < 20
    large = add_coarse_tracks(extract_tracks(0.6 * _disc(shape, (41, 61), 6), image, 0.5), coarse, image, 2,
                              fragment=3.0)
    assert large.coarse_count == 0  # over a third of the coarse track's area: a track of its own
    sure = add_coarse_tracks(extract_tracks((fragment_map > 0).astype(np.float32), image, 0.5), coarse, image, 2,
                             fragment=3.0)
    assert len(sure) == 2 and sure.coarse_count == 0  # the network was as sure of it as of the coarse track
    pair_map = _disc(shape, (38, 58), 1.5) + _disc(shape, (44, 64), 1.5)
    pair = add_coarse_tracks(extract_tracks(pair_map, image, 0.5), coarse, image, 2, fragment=3.0)
    assert len(pair) == 2 and pair.coarse_count == 0


def test_two_runs_report_their_tiles_as_one():
    seen = []
    first, second = progress_in_turn(lambda done, total: seen.append((done, total)), 2)
    for done in (1, 2, 3):
        first(done, 3)
    for done in (1, 2):
        second(done, 2)
    assert seen == [(1, 5), (2, 5), (3, 5), (4, 5), (5, 5)]
    assert progress_in_turn(None, 2) == (None, None)


@pytest.fixture(scope="module")
def faint_broad_spots():
    """16 spots of SD 4 px whose amplitude is 1.2 times the noise's SD, on a flat background."""
    rng = np.random.default_rng(3)
    shape = (512, 512)
    rr, cc = np.indices(shape)
    centres = np.array([(r, c) for r in range(64, 512, 128) for c in range(64, 512, 128)], float)
    centres += rng.uniform(-8, 8, centres.shape)
    image = 100 + rng.normal(0, 10, shape)
    for r, c in centres:
        image += 12 * np.exp(-((rr - r) ** 2 + (cc - c) ** 2) / (2 * 4.0**2))
    return image.astype(np.float32), centres


def test_the_coarse_look_finds_broad_faint_spots_that_full_resolution_misses(faint_broad_spots, tmp_path):
    """With the default model: more of the spots found, hardly a false one more; the same tracks
    when re-tracked from the result at the model's setting and from a batch run; the progress
    counts the coarse look's tiles too; a model without the coarse look makes none."""
    import tifffile

    from cerber_model.runtime.analysis import analyze
    from cerber_model.runtime.batch import BatchSettings, analyze_file
    from cerber_model.runtime.bundle import load_model
    from cerber_model.runtime.evaluation import match_points

    image, centres = faint_broad_spots
    bundle = load_model("default")
    clean = bundle.config.clean_background
    assert clean is not None and clean.coarse
    without = replace(bundle, config=replace(bundle.config, clean_background=replace(clean, coarse=False)))
    seen = []
    result = analyze(image, bundle, progress=lambda done, total: seen.append((done, total)))
    plain = analyze(image, without)
    assert result.tracks.clean_background and result.coarse is not None and plain.coarse is None
    assert seen == [(1, 2), (2, 2)]  # one tile at full resolution, one binned
    on = match_points(np.c_[result.tracks.columns["row"], result.tracks.columns["col"]], centres)
    off = match_points(np.c_[plain.tracks.columns["row"], plain.tracks.columns["col"]], centres)
    assert on.tp >= off.tp + 3 and on.fp <= off.fp + 1, (on, off)
    again = result.tracks_at(bundle.config.threshold, bundle.config.min_area_px, None, bundle.config.min_contrast,
                             clean)
    np.testing.assert_array_equal(again.labels, result.tracks.labels)
    at_own = result.tracks_at(bundle.config.threshold, bundle.config.min_area_px, None, bundle.config.min_contrast)
    assert at_own.count < result.tracks.count  # a threshold of the user's own: no setting for clean images
    tifffile.imwrite(tmp_path / "faint.tif", image)
    (tmp_path / "out").mkdir()
    done = analyze_file(tmp_path / "faint.tif", "faint", BatchSettings(tmp_path / "out"), bundle)
    assert done.summary["track_count"] == result.tracks.count
    assert done.line.startswith(f"{result.tracks.count} tracks ({result.tracks.coarse_count} found on the image "
                                   "binned 2 x 2)")
