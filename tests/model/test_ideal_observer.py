"""benchmarks/ideal_observer.py: the matched-filter SNR of a spot, the noise threshold of a bank of
matched filters, and the ceiling they give."""

import math

import numpy as np

from cerber_model.runtime.synthesis import Sample, _add_gaussian
from tests.model.helpers import load_script


def _script():
    return load_script("benchmarks/ideal_observer.py")


def _sample(centres, snr, sds):
    n = len(centres)
    return Sample(np.zeros((64, 64), np.uint8), np.zeros((64, 64), np.uint8), np.asarray(centres, float),
                  np.full(n, snr), np.tile(np.asarray(sds, float), (n, 1)))


def test_matched_snr_is_the_spots_own_norm_in_unit_noise():
    """Under a filter matched to it (its own shape, unit norm) a spot rises above white noise of SD 1
    by its own norm: the formula has to agree with the rendered spot's."""
    script = _script()
    for sds, angle in (((3.0, 1.5), 0.7), ((1.2, 1.2), 0.0), ((5.0, 2.0), 2.0)):
        spot = np.zeros((96, 96), np.float64)
        _add_gaussian(spot, 48.3, 47.6, *sds, angle, 2.0)
        expected = float(script.matched_snr(_sample([(48.3, 47.6)], 2.0, sds))[0])
        assert math.isclose(np.linalg.norm(spot), expected, rel_tol=0.02), (sds, expected)


def test_noise_threshold_falls_with_the_false_peaks_allowed():
    script = _script()
    strict = script.noise_threshold((2.0, 6.0), megapixels=2, per_megapixel=1.0)
    loose = script.noise_threshold((2.0, 6.0), megapixels=2, per_megapixel=100.0)
    # Gaussian tails: one peak per megapixel over some 10^4-10^5 independent positions and sizes
    # lies 4-5 SDs out; a hundred lie about 1 SD lower.
    assert 4.0 < strict < 5.3
    assert 2.5 < loose < strict - 0.8


def test_ceiling_counts_what_stands_out_and_what_is_too_close():
    script = _script()
    bright = _sample([(10.0, 10.0), (40.0, 40.0)], 20.0, (2.0, 2.0))
    assert script.ceiling([bright], 4.7) == (1.0, 0.0)
    faint = _sample([(10.0, 10.0), (40.0, 40.0)], 0.1, (2.0, 2.0))
    assert script.ceiling([faint], 4.7)[0] < 1e-4
    pair = _sample([(30.0, 30.0), (30.0, 33.0)], 20.0, (3.0, 2.0))  # 3 px apart, SD 3: one blob
    assert script.ceiling([pair], 4.7) == (1.0, 1.0)
