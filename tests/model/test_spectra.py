"""Spectra: histograms of track intensity and size, acquisition sidecars, the spectra CSV."""

import csv
import json

import numpy as np
import pytest

from cerber_model.runtime.spectra import (
    POOLED,
    Acquisition,
    AcquisitionError,
    Spectrum,
    acquisition_for,
    acquisition_path_beside,
    common_edges,
    folder_spectra,
    histogram_edges,
    load_acquisition,
    quantity_label,
    save_acquisition,
    spectra_csv_name,
    spectrum,
    track_spectra,
    track_values,
    write_spectra_csv,
)
from cerber_model.runtime.tracks import extract_tracks


def test_counts_on_given_edges_with_values_outside_counted_apart():
    s = spectrum([0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.0, 7.0, -1.0, np.nan], bins=[1.0, 2.0, 3.0])
    np.testing.assert_array_equal(s.counts, [2, 4])  # 3.0, the last edge, is in the last bin
    assert (s.underflow, s.overflow, s.total) == (2, 1, 6)
    assert s.counts.dtype == np.int64


def test_bad_edges_are_refused():
    with pytest.raises(ValueError, match="increasing"):
        spectrum([1.0], bins=[2.0, 1.0])


def test_log_edges_span_the_positive_values_in_equal_ratios():
    values = [10.0, 100.0, 1000.0, 0.0, -5.0]
    edges = histogram_edges(values, bins=3, log=True)
    np.testing.assert_allclose(edges, [10, 10 ** (5 / 3), 10 ** (7 / 3), 1000])
    s = spectrum(values, bins=3, log=True)
    assert s.is_log
    np.testing.assert_array_equal(s.counts, [1, 1, 1])
    assert s.underflow == 2  # zero and negative intensities have no place on a log axis
    assert not spectrum(values, bins=3).is_log


def test_integer_edges_give_each_area_its_bin_until_there_are_too_many():
    areas = np.array([1, 2, 2, 3, 5, 5, 5])
    edges = histogram_edges(areas, bins=40, integer=True)
    np.testing.assert_array_equal(edges, [0.5, 1.5, 2.5, 3.5, 4.5, 5.5])
    np.testing.assert_array_equal(spectrum(areas, edges).counts, [1, 2, 1, 0, 3])
    wide = np.arange(1, 101)
    edges = histogram_edges(wide, bins=40, integer=True)
    assert len(edges) - 1 <= 40
    widths = np.diff(edges)
    assert np.all(widths == widths[0]) and widths[0] == 3
    assert edges[0] == 0.5 and edges[-1] >= 100.5
    assert spectrum(wide, edges).total == 100


def test_equal_and_missing_values_still_get_edges():
    np.testing.assert_allclose(histogram_edges([4.0, 4.0], bins=2), [3.5, 4.0, 4.5])
    assert histogram_edges([], bins=4, log=True)[[0, -1]].tolist() == [1.0, 10.0]
    assert spectrum([], bins=4).total == 0


def test_folder_spectra_share_edges_and_pool_last():
    rng = np.random.default_rng(1)
    a = rng.lognormal(8, 0.3, 200)
    b = rng.lognormal(9, 0.3, 150)  # brighter: the two images cover different ranges
    spectra = folder_spectra({"a.tif": a, "b.tif": b}, bins=20, log=True)
    assert list(spectra) == ["a.tif", "b.tif", POOLED]
    edges = spectra[POOLED].edges
    np.testing.assert_array_equal(spectra["a.tif"].edges, edges)
    np.testing.assert_array_equal(edges, common_edges([a, b], bins=20, log=True))
    assert (edges[0], edges[-1]) == (min(a.min(), b.min()), max(a.max(), b.max()))
    assert (spectra["a.tif"].total, spectra["b.tif"].total, spectra[POOLED].total) == (200, 150, 350)
    np.testing.assert_array_equal(spectra[POOLED].counts, spectra["a.tif"].counts + spectra["b.tif"].counts)
    # The brighter image's spectrum peaks in a higher bin.
    assert np.argmax(spectra["b.tif"].counts) > np.argmax(spectra["a.tif"].counts)
    with pytest.raises(ValueError, match="pooled"):
        folder_spectra({POOLED: a})


def test_spectra_on_other_edges_do_not_add():
    with pytest.raises(ValueError, match="common_edges"):
        spectrum([1.0], bins=[0.0, 2.0]) + spectrum([1.0], bins=[0.0, 3.0])
    with pytest.raises(ValueError, match="edges"):
        Spectrum(np.array([0.0, 1.0]), np.array([1, 2]))


def _disk_tracks(radii, pixel_size_um=None):
    from skimage.draw import disk

    shape = (60, 60 * len(radii))
    prob = np.zeros(shape, np.float32)
    for i, r in enumerate(radii):
        prob[disk((30, 30 + 60 * i), r, shape=shape)] = 0.9
    image = (100 * (prob > 0) + 10).astype(np.uint16)
    return extract_tracks(prob, image, threshold=0.5, pixel_size_um=pixel_size_um)


def test_track_values_are_the_track_table_and_its_equivalent_diameter():
    tracks = _disk_tracks([3, 6], pixel_size_um=0.5)
    area = tracks.columns["area_px"].astype(float)
    np.testing.assert_array_equal(track_values(tracks, "area_px"), area)
    diameter = track_values(tracks, "diameter_px")
    np.testing.assert_allclose(np.sort(diameter), [6, 12], atol=0.6)  # disks of radius 3 and 6
    np.testing.assert_allclose(track_values(tracks, "diameter_um"), diameter * 0.5)
    np.testing.assert_array_equal(track_values(tracks, "integrated_intensity"), 110 * area)
    acq = Acquisition(laser_power_mw=2.0, dwell_time_us=5.0)
    np.testing.assert_allclose(track_values(tracks, "integrated_intensity", acq), 110 * area / 10)
    with pytest.raises(ValueError, match="pixel size"):
        track_values(_disk_tracks([3]), "diameter_um")
    with pytest.raises(ValueError, match="unknown quantity 'let'"):
        track_values(tracks, "let")


def test_acquisition_normalises_by_what_is_known():
    assert Acquisition(2.0, 5.0).exposure == 10.0
    assert Acquisition(laser_power_mw=2.0).exposure == 2.0
    assert Acquisition().exposure is None
    np.testing.assert_array_equal(Acquisition().normalise([3, 4]), [3.0, 4.0])
    assert Acquisition(2.0, 5.0).intensity_unit == "image units per mW·µs"
    assert Acquisition(dwell_time_us=5.0).intensity_unit == "image units per µs"
    assert quantity_label("integrated_intensity", Acquisition(2.0, 5.0)) == \
        "integrated intensity (image units per mW·µs)"
    assert quantity_label("area_px") == "area (px)"
    with pytest.raises(ValueError, match="positive"):
        Acquisition(laser_power_mw=-1.0)


def test_acquisition_sidecar_round_trip_and_lookup(tmp_path):
    image = tmp_path / "scan.tif"
    assert acquisition_path_beside(image) == tmp_path / "scan_acquisition.json"
    assert acquisition_for(image) == Acquisition()
    (tmp_path / "acquisition.json").write_text('{"laser_power_mw": 3}')  # hand-written, for the folder
    assert acquisition_for(image) == Acquisition(laser_power_mw=3)
    save_acquisition(Acquisition(1.5, 4.0), acquisition_path_beside(image))
    assert json.loads(acquisition_path_beside(image).read_text())["format"] == "cerber-acquisition"
    assert acquisition_for(image) == Acquisition(1.5, 4.0)  # the image's own file wins
    assert acquisition_for(tmp_path / "other.tif") == Acquisition(laser_power_mw=3)


@pytest.mark.parametrize(("content", "message"), [
    ("laser 3 mW", "is not JSON"),
    ('{"laser_power": 3}', "unknown keys laser_power; known: laser_power_mw, dwell_time_us"),
    ('{"laser_power_mw": -3}', "laser_power_mw must be a positive number, found -3"),
    ('{"dwell_time_us": "4"}', "dwell_time_us must be a positive number, found '4'"),
    ('{"format": "cerber-regions", "version": 1}', "is not an acquisition file"),
    ('{"version": 2, "laser_power_mw": 1}', "has version 2"),
])
def test_bad_acquisition_files_are_named(tmp_path, content, message):
    path = tmp_path / "scan_acquisition.json"
    path.write_text(content)
    with pytest.raises(AcquisitionError, match=message) as info:
        load_acquisition(path)
    assert str(path) in str(info.value)
    with pytest.raises(AcquisitionError):
        acquisition_for(tmp_path / "scan.tif")


def test_track_spectra_use_the_quantity_binning_and_refuse_mixed_normalisation():
    a, b = _disk_tracks([2, 3, 4]), _disk_tracks([3, 5])
    areas = track_spectra({"a": a, "b": b}, "area_px")
    assert areas[POOLED].total == 5
    assert np.all(np.diff(areas[POOLED].edges) >= 1) and areas[POOLED].edges[0] % 1 == 0.5
    acq = Acquisition(2.0, 5.0)
    plain = track_spectra({"a": a, "b": b}, "integrated_intensity")
    scaled = track_spectra({"a": a, "b": b}, "integrated_intensity", acquisitions={"a": acq, "b": acq})
    assert plain[POOLED].is_log
    np.testing.assert_allclose(scaled[POOLED].edges, plain[POOLED].edges / 10)
    np.testing.assert_array_equal(scaled[POOLED].counts, plain[POOLED].counts)
    with pytest.raises(ValueError, match="normalised differently"):
        track_spectra({"a": a, "b": b}, "integrated_intensity", acquisitions={"a": acq})


def _read(path):
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.reader(fh))


def test_spectra_csv_wide_and_long(tmp_path):
    spectra = folder_spectra({"a, first.tif": [1, 2, 2, 3], "b.tif": [3, 3]}, bins=3, integer=True)
    wide = _read(write_spectra_csv(tmp_path / spectra_csv_name("area_px"), spectra, "area_px"))
    assert (tmp_path / "spectrum_area_px.csv").is_file()
    assert wide[0] == ["bin_low", "bin_high", "a, first.tif", "b.tif", "all"]
    assert [r[:2] for r in wide[1:]] == [["0.5", "1.5"], ["1.5", "2.5"], ["2.5", "3.5"]]
    assert [r[2:] for r in wide[1:]] == [["1", "0", "1"], ["2", "0", "2"], ["1", "2", "3"]]
    long = _read(write_spectra_csv(tmp_path / "long.csv", spectra, "area_px", layout="long"))
    assert long[0] == ["quantity", "image", "bin_low", "bin_high", "count"]
    assert len(long) == 1 + 3 * 3
    assert long[-1] == ["area_px", "all", "2.5", "3.5", "3"]


def test_spectra_csv_refuses_spectra_on_other_edges(tmp_path):
    spectra = {"a": spectrum([1.0], bins=[0.0, 2.0]), "b": spectrum([1.0], bins=[0.0, 3.0])}
    with pytest.raises(ValueError, match="other bin edges"):
        write_spectra_csv(tmp_path / "s.csv", spectra, "area_px")
    assert not (tmp_path / "s.csv").exists()
