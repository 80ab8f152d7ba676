"""Regions: include/exclude polygons, the usable area, filtering tracks, the file formats."""

import json
import os
import re

import numpy as np
import pytest
import roifile

from cerber_model.runtime.regions import (
    Regions,
    RegionsError,
    density_per_mm2,
    filter_tracks,
    find_regions_beside,
    load_regions,
    regions_path_beside,
    save_regions,
)
from cerber_model.runtime.tracks import extract_tracks
from tests.model.helpers import gaussian_spots

SQUARE = np.array([[2.0, 2.0], [2.0, 11.0], [11.0, 11.0], [11.0, 2.0]])  # rows and cols 2..11: 100 px
INNER = np.array([[5.0, 5.0], [5.0, 8.0], [8.0, 8.0], [8.0, 5.0]])  # rows and cols 5..8: 16 px


def test_usable_area_is_include_less_exclude_with_edges_counted():
    regions = Regions(include=[SQUARE], exclude=[INNER])
    mask = regions.mask((20, 30))
    assert mask.shape == (20, 30) and mask.dtype == bool
    assert regions.area_px((20, 30)) == 100 - 16
    expected = np.zeros((20, 30), bool)
    expected[2:12, 2:12] = True
    expected[5:9, 5:9] = False
    np.testing.assert_array_equal(mask, expected)


def test_no_include_means_the_whole_image_and_exclude_cuts_out_of_it():
    assert Regions().is_empty
    assert Regions().area_px((20, 30)) == 600
    assert Regions().mask((20, 30)).all()
    only_exclude = Regions(exclude=[INNER])
    assert not only_exclude.is_empty
    assert only_exclude.area_px((20, 30)) == 600 - 16
    assert Regions(include=[SQUARE, INNER]).area_px((20, 30)) == 100  # overlaps count once


def test_polygons_reaching_outside_the_image_are_clipped():
    regions = Regions(include=[np.array([[-10.0, -10.0], [-10.0, 4.0], [4.0, 4.0], [4.0, -10.0]])])
    assert regions.area_px((20, 30)) == 25


def test_area_in_mm2_follows_the_pixel_size():
    assert Regions(include=[SQUARE]).area_mm2((20, 30), pixel_size_um=10.0) == pytest.approx(100 * 1e-4)


def test_contains_rounds_centres_to_the_nearest_pixel():
    regions = Regions(include=[SQUARE])
    rows = np.array([1.6, 1.4, 11.4, 11.6, 6.0, -0.6, 25.0, np.nan])
    cols = np.array([6.0, 6.0, 6.0, 6.0, 6.0, 6.0, 6.0, 6.0])
    np.testing.assert_array_equal(regions.contains(rows, cols, (20, 30)),
                                  [True, False, True, False, True, False, False, False])
    # Without polygons every point in the image counts, points outside do not.
    np.testing.assert_array_equal(Regions().contains([0.0, -0.6, 19.4, 19.6], [0.0] * 4, (20, 30)),
                                  [True, False, True, False])


def test_polygons_need_three_vertices():
    with pytest.raises(ValueError, match="at least 3 vertices"):
        Regions(include=[np.array([[0.0, 0.0], [5.0, 5.0]])])
    # A closing vertex repeating the first is allowed and dropped.
    closed = Regions(include=[np.vstack([SQUARE, SQUARE[:1]])])
    assert len(closed.include[0]) == 4


def _three_tracks():
    shape = (64, 80)
    centres = [(16.0, 16.0), (16.0, 60.0), (48.0, 40.0)]
    clean = gaussian_spots(shape, centres, sigma=2.0)
    image = (100 + 1000 * clean).astype(np.uint16)
    return extract_tracks(np.clip(clean, 0, 1).astype(np.float32), image, threshold=0.5, pixel_size_um=2.0)


def test_filter_tracks_keeps_tracks_inside_and_only_their_labels():
    tracks = _three_tracks()
    assert len(tracks) == 3
    dust = np.array([[8.0, 52.0], [8.0, 70.0], [24.0, 70.0], [24.0, 52.0]])  # around the track at (16, 60)
    dropped_id = int(tracks.labels[16, 60])
    kept = filter_tracks(tracks, Regions(exclude=[dust]))

    assert len(kept) == 2
    assert dropped_id not in kept.columns["track_id"]
    assert set(tracks.columns) == set(kept.columns)
    assert all(len(v) == 2 for v in kept.columns.values())
    assert set(np.unique(kept.labels)) == {0, *kept.columns["track_id"].tolist()}
    assert kept.labels[16, 60] == 0
    # The kept tracks' pixels and measurements are untouched.
    for tid in kept.columns["track_id"]:
        np.testing.assert_array_equal(kept.labels == tid, tracks.labels == tid)
    i = np.flatnonzero(np.isin(tracks.columns["track_id"], kept.columns["track_id"]))
    np.testing.assert_array_equal(kept.columns["integrated_intensity"], tracks.columns["integrated_intensity"][i])
    assert (kept.threshold, kept.image_shape, kept.pixel_size_um) == (tracks.threshold, tracks.image_shape, 2.0)
    assert tracks.labels[16, 60] == dropped_id  # the input is left as it was


def test_density_divides_by_the_usable_area():
    tracks = _three_tracks()
    half = Regions(include=[np.array([[0.0, 0.0], [0.0, 79.0], [31.0, 79.0], [31.0, 0.0]])])  # rows 0..31
    kept = filter_tracks(tracks, half)
    assert len(kept) == 2
    area_mm2 = 32 * 80 * (2.0e-3) ** 2
    assert density_per_mm2(kept, half) == pytest.approx(2 / area_mm2)
    assert filter_tracks(tracks, Regions()) is tracks


def test_regions_file_round_trip(tmp_path):
    regions = Regions(include=[SQUARE + 0.25], exclude=[INNER])
    path = save_regions(regions, tmp_path / "a_regions.json")
    data = json.loads(path.read_text())
    assert (data["format"], data["version"]) == ("cerber-regions", 1)
    back = load_regions(path)
    assert len(back.include) == 1 and len(back.exclude) == 1
    np.testing.assert_array_equal(back.include[0], SQUARE + 0.25)
    np.testing.assert_array_equal(back.exclude[0], INNER)
    assert back.area_px((20, 30)) == regions.area_px((20, 30))
    assert [p.name for p in tmp_path.iterdir()] == ["a_regions.json"]  # no temporary file left


def test_saved_regions_follow_the_umask(tmp_path):
    old = os.umask(0o027)
    try:
        path = save_regions(Regions(include=[SQUARE]), tmp_path / "r.json")
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o640


@pytest.mark.parametrize(("content", "message"), [
    ("{not json", "is not JSON (line 1"),
    ("[1, 2]", "JSON list, not an object"),
    ('{"format": "something-else", "version": 1}', "not a Cerber regions file"),
    ('{"format": "cerber-regions", "version": 7}', "version 7; this Cerber reads up to version 1"),
    ('{"format": "cerber-regions", "version": 1, "include": [[[0, 0], [5, 5]]]}',
     "include polygon 1: a polygon needs at least 3 vertices"),
    ('{"format": "cerber-regions", "version": 1, "exclude": [[[0, 0], [5, 5], [0, 9]], [[0, 0], ["a", 5], [0, 9]]]}',
     "exclude polygon 2: must be a list of [row, col] pairs of numbers"),
    ('{"format": "cerber-regions", "version": 1, "include": [[[0, 0], [5, NaN], [0, 9]]]}',
     "include polygon 1: vertices must be finite"),
    ('{"format": "cerber-regions", "version": 1, "include": {"a": 1}}', "'include' must be a list of polygons"),
])
def test_bad_regions_files_are_named_with_what_is_wrong(tmp_path, content, message):
    path = tmp_path / "scan_regions.json"
    path.write_text(content)
    with pytest.raises(RegionsError, match=re.escape(message)) as info:
        load_regions(path)
    assert str(path) in str(info.value)


def test_missing_regions_file_is_named(tmp_path):
    with pytest.raises(RegionsError, match="cannot be read") as info:
        load_regions(tmp_path / "nope_regions.json")
    assert "nope_regions.json" in str(info.value)


def test_regions_live_beside_the_image(tmp_path):
    image = tmp_path / "run.3" / "scan 1.tif"
    assert regions_path_beside(image) == tmp_path / "run.3" / "scan 1_regions.json"
    image.parent.mkdir()
    assert find_regions_beside(image) is None
    (tmp_path / "run.3" / "scan 1_regions.zip").write_bytes(b"")
    assert find_regions_beside(image) == tmp_path / "run.3" / "scan 1_regions.zip"
    save_regions(Regions(include=[SQUARE]), regions_path_beside(image))
    assert find_regions_beside(image) == regions_path_beside(image)  # Cerber's own file first


def _rect(left, top, right, bottom, name):
    roi = roifile.ImagejRoi(roitype=roifile.ROI_TYPE.RECT, left=left, top=top, right=right, bottom=bottom)
    roi.name = name
    return roi


def test_imagej_rectangles_and_named_exclusions_are_read(tmp_path):
    path = tmp_path / "scan_regions.zip"
    dust = roifile.ImagejRoi.frompoints(np.array([[4.5, 5.5], [7.5, 5.5], [7.5, 8.5], [4.5, 8.5]]),
                                        name="Exclude dust")
    dust.roitype = roifile.ROI_TYPE.POLYGON
    roifile.roiwrite(path, [_rect(2, 3, 12, 15, "crystal"), dust])
    regions = load_regions(path)
    assert len(regions.include) == 1 and len(regions.exclude) == 1
    # ImageJ's rectangle x 2..12, y 3..15 covers columns 2..11 and rows 3..14;
    # the polygon's corners x 4.5..7.5, y 5.5..8.5 are pixel centres: columns 4..7, rows 5..8.
    expected = np.zeros((20, 20), bool)
    expected[3:15, 2:12] = True
    expected[5:9, 4:8] = False
    np.testing.assert_array_equal(regions.mask((20, 20)), expected)


def test_imagej_oval_becomes_its_ellipse(tmp_path):
    path = tmp_path / "oval.roi"
    roifile.ImagejRoi(roitype=roifile.ROI_TYPE.OVAL, left=10, top=20, right=30, bottom=30).tofile(path)
    mask = load_regions(path).mask((50, 50))
    rows, cols = np.nonzero(mask)
    # Bounding box x 10..30, y 20..30: the ellipse centred at col 19.5, row 24.5, semi-axes 10 and 5.
    assert (cols.min(), cols.max(), rows.min(), rows.max()) == (10, 29, 20, 29)
    assert mask.sum() == pytest.approx(np.pi * 10 * 5, rel=0.06)
    np.testing.assert_array_equal(mask[20:30, 10:30], mask[20:30, 10:30][::-1, ::-1])  # symmetric


def test_imagej_line_selection_is_refused_by_name(tmp_path):
    path = tmp_path / "lines.zip"
    line = roifile.ImagejRoi(roitype=roifile.ROI_TYPE.LINE, x1=1, y1=1, x2=9, y2=9, name="scratch")
    roifile.roiwrite(path, [_rect(0, 0, 5, 5, "ok"), line])
    with pytest.raises(RegionsError, match="selection 'scratch': is a line selection, not an area") as info:
        load_regions(path)
    assert str(path) in str(info.value)


def test_damaged_imagej_file_is_refused(tmp_path):
    path = tmp_path / "broken.roi"
    path.write_bytes(b"not a roi at all, just some bytes to fill the header" * 2)
    with pytest.raises(RegionsError, match="is not an ImageJ ROI file"):
        load_regions(path)
