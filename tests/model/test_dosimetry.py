"""Counts to fluence: exact Poisson intervals, the overlap correction and the dispersion test."""

import math

import numpy as np
import pytest
from scipy import stats
from scipy.optimize import brentq

from cerber_model.runtime.dosimetry import (
    DISPERSION_ALPHA,
    area_cm2,
    dispersion_test,
    image_fluence,
    observed_count,
    overlap_corrected_count,
    poisson_interval,
    pooled_fluence,
)

# 95% limits of a Poisson mean, from published tables (Gehrels 1986, Garwood 1936).
GARWOOD_95 = {0: (0.0, 3.689), 1: (0.0253, 5.572), 5: (1.624, 11.668), 10: (4.795, 18.390),
              100: (81.364, 121.627)}


@pytest.mark.parametrize("count", sorted(GARWOOD_95))
def test_poisson_interval_matches_the_tables(count):
    low, high = poisson_interval(count)
    assert low == pytest.approx(GARWOOD_95[count][0], abs=6e-4)
    assert high == pytest.approx(GARWOOD_95[count][1], abs=6e-4)


@pytest.mark.parametrize("count", [1, 3, 17, 250, 4000])
def test_poisson_interval_is_where_the_tails_hold_two_and_a_half_percent(count):
    """Found independently: the means at which P(X >= n) and P(X <= n) are 2.5%, by bisection."""
    low = brentq(lambda mu: stats.poisson.sf(count - 1, mu) - 0.025, 1e-9, 10 * count + 10)
    high = brentq(lambda mu: stats.poisson.cdf(count, mu) - 0.025, 1e-9, 10 * count + 10)
    assert poisson_interval(count) == pytest.approx((low, high), rel=1e-7)
    assert poisson_interval(count, 0.9) == pytest.approx(
        (stats.chi2.ppf(0.05, 2 * count) / 2, stats.chi2.ppf(0.95, 2 * count + 2) / 2), rel=1e-9)


def test_poisson_interval_refuses_what_is_not_a_count():
    for bad in (-1, 2.5):
        with pytest.raises(ValueError, match="whole number"):
            poisson_interval(bad)


def test_fluence_of_one_image():
    # 10 tracks on 1000 x 1000 px of 0.5 um: 0.0025 cm^2, 4000 per cm^2.
    f = image_fluence(10, 1e6, 0.5, resolving_distance_px=0)
    assert f.area_cm2 == pytest.approx(0.0025) and area_cm2(1e6, 0.5) == pytest.approx(0.0025)
    assert f.fluence_per_cm2 == pytest.approx(4000)
    assert (f.fluence_ci95_low, f.fluence_ci95_high) == pytest.approx((4.795 / 0.0025, 18.390 / 0.0025), rel=1e-4)
    assert f.corrected_count == 10 and f.corrected_fluence_per_cm2 == pytest.approx(4000)
    assert "4000 per cm^2 (95% CI 1918-7356)" in f.describe()
    empty = image_fluence(0, 1e6, 0.5)
    assert (empty.fluence_per_cm2, empty.fluence_ci95_low) == (0, 0)
    assert empty.fluence_ci95_high == pytest.approx(3.689 / 0.0025, rel=1e-4)
    unknown = image_fluence(10, 1e6)
    assert unknown.area_cm2 is None and unknown.fluence_per_cm2 is None and unknown.describe() == ""
    assert unknown.fluence_ci95_high is None and unknown.corrected_count > 10


def test_pooled_fluence_sums_counts_and_areas():
    parts = [image_fluence(10, 1e6, 0.5), image_fluence(30, 4e6, 0.25)]  # 0.0025 cm^2 each
    pooled = pooled_fluence(parts)
    assert (pooled.track_count, pooled.images, pooled.area_px) == (40, 2, 5e6)
    assert pooled.area_cm2 == pytest.approx(0.005) and pooled.fluence_per_cm2 == pytest.approx(8000)
    assert pooled.fluence_ci95_low == pytest.approx(poisson_interval(40)[0] / 0.005)
    assert pooled.corrected_count == pytest.approx(parts[0].corrected_count + parts[1].corrected_count)
    no_size = pooled_fluence([parts[0], image_fluence(5, 1e6)])
    assert no_size.track_count == 15 and no_size.fluence_per_cm2 is None


@pytest.mark.parametrize("d", [2.0, 4.5, 9.0])
def test_overlap_correction_inverts_the_dead_area_model(d):
    area = 1024.0 * 1024
    for true in (0, 1, 50, 400, 1600, 3000):
        seen = observed_count(true, area, d)
        assert seen <= true
        assert overlap_corrected_count(seen, area, d) == pytest.approx(true, rel=1e-9, abs=1e-9)
        # The same root found without the Lambert W function.
        if true:
            root = brentq(lambda n, seen=seen: observed_count(n, area, d) - seen, 0, area / (math.pi * d * d))
            assert root == pytest.approx(true, rel=1e-9)
    assert overlap_corrected_count(500, area, 0.0) == 500


def test_overlap_correction_has_a_limit():
    area, d = 1e6, 5.0
    most = area / (math.pi * d * d) / math.e  # the largest count the model can produce
    assert math.isfinite(overlap_corrected_count(0.999 * most, area, d))
    assert math.isnan(overlap_corrected_count(1.001 * most, area, d))
    assert image_fluence(int(1.01 * most), area, 1.0, d).saturated
    assert "too dense" in image_fluence(int(1.01 * most), area, 1.0, d).describe()


def test_the_dead_area_model_holds_for_random_positions():
    """Of N tracks at random positions, those with no other within d: N exp(-N pi d^2 / A) on
    average, and the correction recovers N from their number (periodic image: no edges)."""
    from scipy.spatial import cKDTree

    rng = np.random.default_rng(7)
    side, d = 1024.0, 6.0
    for true in (200, 800, 1600):
        isolated = []
        for _ in range(20):
            points = rng.uniform(0, side, (true, 2))
            neighbours = cKDTree(points, boxsize=side).query(points, k=2)[0][:, 1]
            isolated.append(np.count_nonzero(neighbours > d))
        seen = float(np.mean(isolated))
        assert seen == pytest.approx(observed_count(true, side * side, d), rel=0.01)
        assert overlap_corrected_count(seen, side * side, d) == pytest.approx(true, rel=0.015)


def test_dispersion_of_known_counts():
    result = dispersion_test([10, 20])
    assert (result.chi2, result.dof) == (pytest.approx(2 * 25 / 15), 1)
    assert result.p_value == pytest.approx(stats.chi2.sf(10 / 3, 1))
    assert result.p_value == pytest.approx(0.0679, abs=1e-4)
    assert dispersion_test([7]) is None
    assert dispersion_test([0, 0, 0]).p_value == 1.0


def test_dispersion_passes_poisson_counts_and_flags_uneven_irradiation():
    rng = np.random.default_rng(11)
    # Poisson counts of one fluence: flagged about as often as the significance level says.
    flagged = sum(dispersion_test(rng.poisson(400, 12)).uneven for _ in range(400))
    assert flagged <= 4 * 400 * DISPERSION_ALPHA
    assert not dispersion_test(rng.poisson(400, 12)).uneven
    # One image of the twelve with 30% more tracks (a hot spot in the beam, a doubled image).
    counts = rng.poisson(400, 12)
    counts[5] = rng.poisson(520)
    result = dispersion_test(counts)
    assert result.uneven and result.worst == 5 and result.worst_z > 3
    assert "not Poisson" in result.describe()
    # A gradient across the detector: every image a little different.
    assert dispersion_test(rng.poisson(np.linspace(300, 500, 12))).uneven


def test_dispersion_expects_counts_in_proportion_to_area():
    """Images of different areas (regions cut out, other pixel sizes): the expected counts follow
    the areas, so counts that do are not flagged, and counts equal despite the areas are."""
    rng = np.random.default_rng(3)
    areas = np.array([1.0, 0.5, 1.0, 0.25, 0.8, 1.0])
    counts = rng.poisson(600 * areas)
    assert not dispersion_test(counts, areas).uneven
    assert dispersion_test(counts).uneven  # as if the areas were equal
    assert dispersion_test(np.full(6, 400), areas).uneven
    with pytest.raises(ValueError, match="3 counts but 2 areas"):
        dispersion_test([1, 2, 3], [1.0, 2.0])


def test_a_bundle_may_carry_its_own_resolving_distance():
    """An optional key of config.json: bundles without it load as before (None: the documented
    default), and it is written only when set, so their config.json does not change."""
    from cerber_model.runtime.architecture import ConfigError
    from cerber_model.runtime.bundle import BundleConfig

    plain = BundleConfig()
    assert plain.resolving_distance_px is None and "resolving_distance_px" not in plain.to_dict()
    assert BundleConfig.from_dict(plain.to_dict()).resolving_distance_px is None
    own = BundleConfig(resolving_distance_px=3.2)
    assert own.to_dict()["resolving_distance_px"] == 3.2
    assert BundleConfig.from_dict(own.to_dict()).resolving_distance_px == 3.2
    with pytest.raises(ConfigError, match="resolving_distance_px"):
        BundleConfig(resolving_distance_px=-1)
