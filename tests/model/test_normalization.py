"""The background normalisation puts spots in units of their local noise, whatever the background."""

import numpy as np
import pytest

from cerber_model.runtime.images import Normalization, noise_sd, normalize

BACKGROUND = Normalization("background", block=32)


def _spot(shape, r, c, sd=1.5):
    rr, cc = np.indices(shape)
    return np.exp(-((rr - r) ** 2 + (cc - c) ** 2) / (2 * sd**2))


def _vignette(shape, centre_level, edge_level):
    rr, cc = np.indices(shape)
    r2 = (rr - shape[0] / 2) ** 2 + (cc - shape[1] / 2) ** 2
    return edge_level + (centre_level - edge_level) * np.exp(-r2 / (2 * (shape[0] / 3.5) ** 2))


@pytest.mark.parametrize("level, sd, dtype", [(20, 2.0, np.uint8), (3000, 40.0, np.uint16), (0.5, 0.01, np.float32)])
def test_pure_noise_stays_noise_of_sd_one(level, sd, dtype):
    """Plain noise comes out as noise of SD 1 around 0 at any level and scale (the percentile
    normalisation stretches it over its whole range, where spots live)."""
    image = np.random.default_rng(0).normal(level, sd, (256, 256)).astype(dtype)
    x = normalize(image, BACKGROUND)
    assert abs(float(np.median(x))) < 0.1
    assert 0.85 < x.std() < 1.15
    assert x.max() < 6.5
    assert noise_sd(image) == pytest.approx(sd, rel=0.15)


def test_a_spot_has_the_same_height_on_flat_and_vignetted_backgrounds():
    """A spot of SNR 3 reads about 3 at the centre of a strong vignette, in its corner and on a
    flat background; with the percentile normalisation its height changes by a factor of 10."""
    shape, rng = (384, 384), np.random.default_rng(1)
    places = [(192, 192), (50, 50), (330, 60)]
    heights = {}
    for name, background, noise in [("flat", np.full(shape, 100.0), 5.0),
                                    ("vignetted", _vignette(shape, 3000.0, 100.0), 5.0)]:
        plain = background + rng.normal(0, noise, shape)
        spots = sum(3 * noise * _spot(shape, r, c) for r, c in places)
        for norm in (BACKGROUND, Normalization()):
            diff = normalize(plain + spots, norm) - normalize(plain, norm)
            heights[name, norm.method] = [float(diff[r, c]) for r, c in places]
    flat = heights["flat", "background"]
    assert all(h == pytest.approx(3.0, rel=0.1) for h in flat + heights["vignetted", "background"])
    percentile = heights["flat", "percentile"] + heights["vignetted", "percentile"]
    assert max(percentile) / min(percentile) > 10


def test_flat_clipped_and_tiny_images_give_finite_values():
    for image in (np.full((64, 64), 255, np.uint8), np.zeros((5, 3), np.float32), np.full((1, 1), 7, np.uint16)):
        x = normalize(image, BACKGROUND)
        assert np.isfinite(x).all() and np.abs(x).max() < 1e-3
    # 8-bit with noise below a grey level: the quantisation floor keeps the units sane.
    image = np.full((128, 128), 30, np.uint8)
    image[64, 64] = 33
    x = normalize(image, BACKGROUND)
    assert 5 < x[64, 64] < 12


def test_validation():
    with pytest.raises(ValueError, match="block"):
        Normalization("background", block=4)
    with pytest.raises(ValueError, match="one of percentile, scale, background"):
        Normalization("zscore")
    assert Normalization.from_dict(BACKGROUND.to_dict()) == BACKGROUND
