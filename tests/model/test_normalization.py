"""The background normalisation puts spots in units of their local noise, whatever the background."""

import numpy as np
import pytest

from cerber_model.runtime.images import Normalization, noise_correlation, noise_sd, normalize

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


def test_noise_correlation_is_one_for_white_noise_and_grows_with_smoothing():
    """White noise of any bit depth gives 1 (never less); noise smoothed over 0.5, 0.7 and 1 px,
    whose neighbours correlate by 0.37, 0.6 and 0.78 as in real microscope images, gives more and
    more; 40 bright spots do not move it."""
    from scipy import ndimage

    rng = np.random.default_rng(3)
    for image in (rng.normal(100, 5, (300, 330)), rng.poisson(3, (256, 256)).astype(np.uint8),
                  rng.normal(3000, 40, (700, 650)).astype(np.uint16)):
        assert noise_correlation(image, 1.5) == pytest.approx(1.0, abs=0.05)
    white = rng.normal(100, 5, (512, 512))
    factors = [noise_correlation(ndimage.gaussian_filter(white, b), 1.5) for b in (0.5, 0.7, 1.0)]
    assert 1.4 < factors[0] < factors[1] < factors[2]
    spots = sum(30 * _spot(white.shape, r, c) for r, c in rng.uniform(10, 500, (40, 2)))
    assert noise_correlation(white + spots, 1.5) == pytest.approx(1.0, abs=0.05)
    assert noise_correlation(np.full((64, 64), 7, np.uint8), 1.5) == 1.0  # no noise at all


def test_with_a_noise_scale_smoothed_noise_looks_like_white_noise_at_spot_size():
    """Smoothed noise normalised with a noise scale of 1.5 px gives a Laplacian of Gaussian of that
    scale (a spot detector) the response that white noise gives (within 10%); with the pixel noise
    alone it is 5 times higher. White noise and the spots on it read the same with or without the scale."""
    from scipy import ndimage

    rng = np.random.default_rng(4)
    white = rng.normal(500, 10, (384, 384))
    scaled = Normalization("background", block=32, noise_scale=1.5)

    def bumps(x):  # SD of the normalised image's response at spot size
        return float(ndimage.gaussian_laplace(x, 1.5)[20:-20, 20:-20].std())

    reference = bumps(normalize(white, scaled))
    smoothed = ndimage.gaussian_filter(white, 0.8)
    assert bumps(normalize(smoothed, scaled)) == pytest.approx(reference, rel=0.1)
    assert bumps(normalize(smoothed, BACKGROUND)) > 4 * reference
    spot = 3 * 10 * _spot(white.shape, 192, 192)
    assert np.allclose(normalize(white + spot, scaled), normalize(white + spot, BACKGROUND), atol=0.05 * 3)


def test_validation():
    with pytest.raises(ValueError, match="block"):
        Normalization("background", block=4)
    with pytest.raises(ValueError, match="noise scale must be between 0 and 8 px"):
        Normalization("background", noise_scale=-1)
    with pytest.raises(ValueError, match="a noise scale needs the background normalisation"):
        Normalization("percentile", noise_scale=1.5)
    scaled = Normalization("background", block=24, noise_scale=1.5)
    assert Normalization.from_dict(scaled.to_dict()) == scaled
    assert "noise_scale" not in BACKGROUND.to_dict()  # as bundles before it wrote it
    with pytest.raises(ValueError, match="one of percentile, scale, background"):
        Normalization("zscore")
    assert Normalization.from_dict(BACKGROUND.to_dict()) == BACKGROUND
