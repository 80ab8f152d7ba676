"""Exports for ImageJ/Fiji (ROI sets) and napari (points CSV), read back as those tools read them."""

import csv
import math
import os
import struct
import zipfile

import numpy as np
import pytest
import roifile
from skimage.draw import polygon2mask

from cerber_model.runtime.interop import (
    imagej_rois_path,
    napari_points_path,
    write_imagej_rois,
    write_napari_points,
)
from cerber_model.runtime.tracks import extract_tracks
from tests.model.helpers import gaussian_spots

CENTRES = [(20.0, 20.0), (20.0, 70.0), (60.0, 30.0), (60.0, 75.0)]
ANGLES = [0.0, math.radians(30), math.radians(90), math.radians(-50)]  # counter-clockwise as displayed


def _elongated_tracks():
    shape = (84, 100)
    clean = gaussian_spots(shape, CENTRES, sigmas=[(5.0, 2.0)] * 4, angles=ANGLES)
    image = (100 + 1000 * clean).astype(np.uint16)
    # A one-pixel track: its axes have length 0.
    prob = np.clip(clean, 0, 1).astype(np.float32)
    prob[5, 95] = 0.9
    return extract_tracks(prob, image, threshold=0.5)


def _entries(path):
    with zipfile.ZipFile(path) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


def test_imagej_roi_set_has_one_ellipse_per_track_where_the_track_is(tmp_path):
    tracks = _elongated_tracks()
    assert len(tracks) == 5
    path = write_imagej_rois(tracks, tmp_path / "scan_rois.zip")
    rois = roifile.roiread(path)
    assert len(rois) == len(tracks)
    assert [r.name for r in rois] == [f"track-{i:04d}" for i in tracks.columns["track_id"]]
    entries = _entries(path)
    assert sorted(entries) == sorted(f"{r.name}.roi" for r in rois)
    c = tracks.columns
    for i, roi in enumerate(rois):
        assert roi.roitype == roifile.ROI_TYPE.FREEHAND and roi.subtype == roifile.ROI_SUBTYPE.ELLIPSE
        # ImageJ rebuilds the ellipse from the major axis' end points (x1, y1, x2, y2) and the
        # aspect ratio, a float at byte 52; its pixel corners are at integers.
        aspect = struct.unpack(">f", entries[f"{roi.name}.roi"][52:56])[0]
        assert (roi.x1 + roi.x2) / 2 - 0.5 == pytest.approx(c["col"][i], abs=1e-4)
        assert (roi.y1 + roi.y2) / 2 - 0.5 == pytest.approx(c["row"][i], abs=1e-4)
        major = math.hypot(roi.x2 - roi.x1, roi.y2 - roi.y1)
        assert major == pytest.approx(max(c["major_axis_px"][i], 1.0), abs=1e-4)
        assert aspect * major == pytest.approx(max(c["minor_axis_px"][i], 1.0), abs=1e-4)
        angle = math.degrees(math.atan2(-(roi.y2 - roi.y1), roi.x2 - roi.x1))  # y grows downwards
        assert (angle - c["orientation_deg"][i] + 90) % 180 - 90 == pytest.approx(0, abs=1e-3)
    # The elongated spots' ellipses lie along them: 0, 30, 90 and -50 degrees as drawn.
    assert sorted(c["orientation_deg"][c["area_px"] > 1]) == pytest.approx([-50, 0, 30, 90], abs=3)


def test_imagej_outlines_cover_their_tracks(tmp_path):
    tracks = _elongated_tracks()
    rois = roifile.roiread(write_imagej_rois(tracks, tmp_path / "scan_rois.zip"))
    for i, roi in enumerate(rois):
        outline = np.asarray(roi.coordinates(), dtype=np.float64)  # (x, y), as readers without the subtype see it
        assert len(outline) == 72
        mask = polygon2mask(tracks.labels.shape, outline[:, ::-1] - 0.5)
        track = tracks.labels == tracks.columns["track_id"][i]
        overlap = (mask & track).sum() / (mask | track).sum()
        assert overlap > (0.6 if track.sum() > 1 else 0.0), roi.name
        r, c = np.round(tracks.columns["row"][i]).astype(int), np.round(tracks.columns["col"][i]).astype(int)
        assert mask[r, c]


def test_one_pixel_track_gets_a_one_pixel_ellipse(tmp_path):
    tracks = _elongated_tracks()
    single = int(np.flatnonzero(tracks.columns["area_px"] == 1)[0])
    assert tracks.columns["major_axis_px"][single] == 0
    path = write_imagej_rois(tracks, tmp_path / "r.zip")
    roi = roifile.roiread(path)[single]
    assert math.hypot(roi.x2 - roi.x1, roi.y2 - roi.y1) == pytest.approx(1.0)
    assert struct.unpack(">f", _entries(path)[roi.name + ".roi"][52:56])[0] == pytest.approx(1.0)


def test_no_tracks_give_an_empty_roi_set(tmp_path):
    empty = extract_tracks(np.zeros((10, 10), np.float32), np.zeros((10, 10), np.uint16), threshold=0.5)
    path = write_imagej_rois(empty, tmp_path / "empty_rois.zip")
    assert roifile.roiread(path) == []


def test_files_are_written_whole_with_the_umask(tmp_path):
    tracks = _elongated_tracks()
    old = os.umask(0o022)
    try:
        rois = write_imagej_rois(tracks, tmp_path / "a_rois.zip")
        points = write_napari_points(tracks, tmp_path / "a_napari.csv")
    finally:
        os.umask(old)
    assert rois.stat().st_mode & 0o777 == 0o644 and points.stat().st_mode & 0o777 == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_napari.csv", "a_rois.zip"]


def test_napari_points_csv_reads_back_as_napari_writes_it(tmp_path):
    tracks = _elongated_tracks()
    path = write_napari_points(tracks, tmp_path / "scan_napari.csv")
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    header, body = rows[0], rows[1:]
    assert header[:3] == ["index", "axis-0", "axis-1"]
    assert "track_id" in header and "integrated_intensity" in header
    assert "row" not in header and "col" not in header
    assert len(body) == len(tracks)
    table = np.array(body, dtype=np.float64)
    np.testing.assert_array_equal(table[:, 0], np.arange(len(tracks)))
    np.testing.assert_array_equal(table[:, 1], tracks.columns["row"])  # exact: full precision
    np.testing.assert_array_equal(table[:, 2], tracks.columns["col"])
    np.testing.assert_array_equal(table[:, header.index("track_id")], tracks.columns["track_id"])


def test_napari_points_with_chosen_features(tmp_path):
    tracks = _elongated_tracks()
    path = write_napari_points(tracks, tmp_path / "p.csv", features=("max_probability",))
    with open(path, newline="", encoding="utf-8") as fh:
        assert next(csv.reader(fh)) == ["index", "axis-0", "axis-1", "max_probability"]
    with pytest.raises(ValueError, match="no track column let"):
        write_napari_points(tracks, tmp_path / "q.csv", features=("let",))


def test_export_paths_sit_beside_the_image(tmp_path):
    assert imagej_rois_path(tmp_path / "scan.1.tif") == tmp_path / "scan.1_rois.zip"
    assert napari_points_path(tmp_path / "scan.1.tif") == tmp_path / "scan.1_napari.csv"
