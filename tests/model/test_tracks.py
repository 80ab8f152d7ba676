"""Track extraction on synthetic spots with known centres."""

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

from cerber_model.runtime.analysis import analyze
from cerber_model.runtime.contrast import measure_contrast
from cerber_model.runtime.progress import Cancelled, CancelToken
from cerber_model.runtime.tracks import TRACK_COLUMNS, extract_tracks
from tests.model.helpers import gaussian_spots, tiny_bundle


def _spots(n, shape, rng, spacing=14):
    centres = []
    while len(centres) < n:
        c = rng.uniform(10, np.array(shape) - 10)
        if all(np.hypot(*(c - o)) > spacing for o in centres):
            centres.append(c)
    return np.array(centres)


def _match(found, truth):
    d = np.hypot(found[:, None, 0] - truth[None, :, 0], found[:, None, 1] - truth[None, :, 1])
    r, c = linear_sum_assignment(d)
    return d[r, c]


def test_every_spot_found_once_with_subpixel_centroids():
    rng = np.random.default_rng(7)
    shape = (200, 240)
    truth = _spots(40, shape, rng)
    sigma = rng.uniform(1.5, 3.0, len(truth))
    clean = gaussian_spots(shape, truth, sigmas=np.c_[sigma, sigma])
    image = (100 + 800 * clean + rng.normal(0, 5, shape)).clip(0, 65535).astype(np.uint16)
    probability = np.clip(clean * 1.2, 0, 1).astype(np.float32)
    tracks = extract_tracks(probability, image, threshold=0.5)
    assert len(tracks) == len(truth)
    found = np.c_[tracks.columns["row"], tracks.columns["col"]]
    assert _match(found, truth).max() < 0.2
    assert tuple(tracks.columns) == TRACK_COLUMNS
    assert (tracks.columns["track_id"] == np.arange(1, len(truth) + 1)).all()
    # Intensities are in the input's units: the brightest pixel is about 100 + 800.
    assert 700 < tracks.columns["max_intensity"].max() < 1000
    np.testing.assert_allclose(tracks.columns["integrated_intensity"],
                               tracks.columns["mean_intensity"] * tracks.columns["area_px"])
    assert (tracks.columns["max_probability"] >= 0.5).all()


def test_touching_tracks_are_split_at_their_maxima():
    shape = (60, 60)
    truth = np.array([[30.0, 25.0], [30.0, 33.0]])  # 8 px apart: one thresholded blob
    clean = gaussian_spots(shape, truth, sigma=2.5)
    probability = np.clip(clean, 0, 1).astype(np.float32)
    from scipy import ndimage

    assert ndimage.label(probability >= 0.3)[1] == 1
    tracks = extract_tracks(probability, (1000 * clean).astype(np.uint16), threshold=0.3)
    assert len(tracks) == 2
    found = np.c_[tracks.columns["row"], tracks.columns["col"]]
    assert _match(found, truth).max() < 0.5


def test_ripples_on_one_broad_track_do_not_split_it():
    """A wide plateau of probability 0.85-0.9 with ripples (one bright spot under a model trained on
    wide masks) is one track; two maxima 0.3 above the saddle between them are two."""
    rr, cc = np.indices((50, 50))
    plateau = 0.9 * np.exp(-0.5 * np.maximum(np.hypot(rr - 25, cc - 25) - 4, 0) ** 2 / 2.0**2)
    ripples = 0.04 * np.sin(rr * 1.3) * np.cos(cc * 1.1)
    probability = np.clip(plateau + ripples * (plateau > 0.5), 0, 1).astype(np.float32)
    image = (1000 * plateau).astype(np.uint16)
    assert len(extract_tracks(probability, image, threshold=0.5)) == 1
    two = np.maximum(probability, np.roll(probability, 12, axis=1)) * np.where(np.abs(cc - 31) <= 1, 0.6, 1)
    assert len(extract_tracks(two.astype(np.float32), image, threshold=0.5)) == 2


def test_a_flat_saturated_track_is_not_split():
    probability = np.zeros((40, 40), np.float32)
    probability[15:25, 12:28] = 1.0
    tracks = extract_tracks(probability, np.full((40, 40), 7, np.uint8), threshold=0.5)
    assert len(tracks) == 1
    assert tracks.columns["row"][0] == pytest.approx(19.5) and tracks.columns["col"][0] == pytest.approx(19.5)


@pytest.mark.parametrize("angle_deg", [0, 45, -45, 90, 30])
def test_orientation_and_axes(angle_deg):
    shape = (80, 80)
    clean = gaussian_spots(shape, [(40, 40)], sigmas=[(6.0, 2.0)], angles=[np.radians(angle_deg)])
    tracks = extract_tracks(clean.astype(np.float32), (clean * 1000).astype(np.uint16), threshold=0.3)
    assert len(tracks) == 1
    got = tracks.columns["orientation_deg"][0]
    diff = (got - angle_deg + 90) % 180 - 90  # orientation is defined modulo 180 degrees
    assert abs(diff) < 3
    assert tracks.columns["major_axis_px"][0] > 2.5 * tracks.columns["minor_axis_px"][0]
    assert tracks.columns["eccentricity"][0] > 0.9


def test_min_area_density_and_empty():
    probability = np.zeros((100, 100), np.float32)
    probability[10, 10] = 0.9  # a one-pixel speck
    probability[50:54, 50:54] = 0.9
    image = np.ones((100, 100), np.uint8)
    assert len(extract_tracks(probability, image, 0.5)) == 2
    tracks = extract_tracks(probability, image, 0.5, min_area_px=4, pixel_size_um=0.5)
    assert len(tracks) == 1 and tracks.columns["area_px"][0] == 16
    # 100 x 100 px at 0.5 um = 50 um x 50 um = 0.0025 mm^2
    assert tracks.density_per_mm2 == pytest.approx(1 / 0.0025)
    empty = extract_tracks(np.zeros((30, 30), np.float32), np.zeros((30, 30), np.uint8), 0.5)
    assert len(empty) == 0 and empty.density_per_mm2 is None
    assert all(len(v) == 0 for v in empty.columns.values())


def test_bad_arguments():
    with pytest.raises(ValueError, match="shape"):
        extract_tracks(np.zeros((5, 5)), np.zeros((5, 6)), 0.5)
    with pytest.raises(ValueError, match="threshold"):
        extract_tracks(np.zeros((5, 5)), np.zeros((5, 5)), 1.5)


class _CancelAtCheck(CancelToken):
    """Cancelled by its own ``at``-th check, as if Cancel were pressed while the tracks are found."""

    def __init__(self, at: int):
        super().__init__()
        self.at, self.checks = at, 0

    def check(self) -> None:
        self.checks += 1
        if self.checks >= self.at:
            self.cancel()
        super().check()


def test_cancel_stops_track_extraction_between_tracks():
    rng = np.random.default_rng(3)
    shape = (200, 240)
    truth = _spots(40, shape, rng)
    clean = gaussian_spots(shape, truth, sigma=2.0)
    image = (100 + 800 * clean + rng.normal(0, 5, shape)).clip(0, 65535).astype(np.uint16)
    probability = np.clip(clean * 1.2, 0, 1).astype(np.float32)
    token = _CancelAtCheck(5)
    with pytest.raises(Cancelled):
        extract_tracks(probability, image, threshold=0.5, contrast=measure_contrast(image), cancel=token)
    assert token.checks == 5  # it stopped at the check where it was cancelled, four tracks in
    # Not cancelled, the same call finds every track.
    assert len(extract_tracks(probability, image, threshold=0.5, contrast=measure_contrast(image),
                              cancel=CancelToken())) == len(truth)


def test_cancel_after_the_last_tile_stops_the_analysis_while_it_finds_the_tracks():
    bundle = tiny_bundle(width=1, seed=4)
    rng = np.random.default_rng(5)
    image = (100 + rng.normal(0, 20, (160, 160))).astype(np.float32)
    # A low threshold: the untrained network's map has tracks to split and measure.
    assert analyze(image, bundle, threshold=0.05).tracks.count > 0
    token = CancelToken()

    def progress(done: int, total: int) -> None:
        if done == total:  # every tile is done: Cancel is pressed while the tracks are found
            token.cancel()

    with pytest.raises(Cancelled):
        analyze(image, bundle, threshold=0.05, progress=progress, cancel=token)


def test_a_broad_spot_on_a_steep_background_is_centred_on_the_spot():
    """A background that rises across a broad spot pulls a centroid weighted by the raw intensity
    towards its bright side; weighted by the intensity above the local background, it stays."""
    rng = np.random.default_rng(2)
    shape = (160, 160)
    truth = np.array([[80.3, 79.6]])
    spot = gaussian_spots(shape, truth, sigma=5.0)
    cols = np.arange(shape[1], dtype=np.float64)[None, :]
    image = 200 + 3 * cols + 40 * spot + rng.normal(0, 2, shape)  # 15 grey levels per spot SD
    probability = np.clip(1.2 * spot, 0, 1).astype(np.float32)
    centred = extract_tracks(probability, image, threshold=0.3, contrast=measure_contrast(image))
    raw = extract_tracks(probability, image, threshold=0.3)  # no levels: the old weights
    assert len(centred) == len(raw) == 1
    error = np.hypot(centred.columns["row"][0] - truth[0, 0], centred.columns["col"][0] - truth[0, 1])
    assert error < 0.5
    assert raw.columns["col"][0] - truth[0, 1] > 1.0  # pulled towards the brighter right


def _blob(shape, centre, sds, peak):
    rr, cc = np.indices(shape)
    return peak * np.exp(-((rr - centre[0]) ** 2 / (2 * sds[0] ** 2) + (cc - centre[1]) ** 2 / (2 * sds[1] ** 2)))


def test_tracks_grow_down_to_a_fraction_of_the_threshold_where_round():
    """A faint spot's probability reaches 0.3 on 1 px only, under the smallest track of 4 px, so at
    0.3 it is no track; grown down to 0.2 (two thirds) its region is large enough. A region as faint
    along the bright side of an edge (the rim of a nucleus) grows as well, but the image bends there
    across and not along, so it stays no track. A bright spot is one track either way."""
    shape = (120, 120)
    rng = np.random.default_rng(0)
    rr, cc = np.indices(shape)
    image = 100 + rng.normal(0, 1, shape) + _blob(shape, (30, 30), (1.5, 1.5), 20)
    image += _blob(shape, (90, 90), (1.5, 1.5), 60)
    image += np.where(cc > 60, 15.0, 0.0) * (rr < 60)  # an edge along rows 0-59 at column 60
    prob = _blob(shape, (30, 30), (1.2, 1.2), 0.31) + _blob(shape, (90, 90), (2.5, 2.5), 0.9)
    prob += _blob(shape, (30, 61), (4.0, 1.0), 0.31)  # along the edge
    prob = prob.astype(np.float32)
    plain = extract_tracks(prob, image, 0.3, min_area_px=4)
    grown = extract_tracks(prob, image, 0.3, min_area_px=4, grow_to=2 / 3)
    assert plain.count == 1
    assert grown.count == 2
    found = np.c_[grown.columns["row"], grown.columns["col"]]
    assert min(np.hypot(*(found - (30, 30)).T)) < 1.5 and min(np.hypot(*(found - (90, 90)).T)) < 1.5
    with pytest.raises(ValueError, match="grow_to"):
        extract_tracks(prob, image, 0.3, grow_to=1.5)
