"""Regions, counts, fluence and spectra in the app's session, driven without a window or Qt."""

import json

import numpy as np
import pytest
import tifffile

from cerber_gui.dose import USER_SETTING
from cerber_gui.exports import ExportKind, summary_rows, write_export
from cerber_gui.region_editor import RegionEditor
from cerber_gui.session import Session
from cerber_model.runtime.analysis import analyze
from cerber_model.runtime.dosimetry import dispersion_test, image_fluence, pooled_fluence
from cerber_model.runtime.regions import Regions, filter_tracks, load_regions, save_regions
from tests.gui.test_session import record, spots_image

# Spots at the corners of a 96 x 96 image and one in the middle.
CENTRES = [(20, 20), (20, 75), (75, 20), (75, 75), (48, 48)]
LEFT_HALF = [(-0.5, -0.5), (-0.5, 47.5), (95.5, 47.5), (95.5, -0.5)]  # columns 0..47
AROUND_MIDDLE = [(38, 38), (38, 58), (58, 58), (58, 38)]


def analyzed(session: Session, paths) -> None:
    """Open and analyze ``paths`` as the app's jobs would, on this thread."""
    session.open(paths)
    session.queue_unanalyzed()
    while (job := session.next_job()) is not None:
        session.add_result(job, analyze(job.image, job.bundle, threshold=job.threshold,
                                        pixel_size_um=job.pixel_size_um))


def retrack_all(session: Session) -> list:
    """Re-track as the app's jobs would until every result is at the current settings; the paths, in order."""
    order = []
    for _ in range(20):
        job = session.retrack_job()
        if job is None:
            return order
        order.append(job.path)
        session.set_tracks(job, job.result.tracks_at(job.threshold, job.min_area_px, job.pixel_size_um,
                                                     job.min_contrast, job.clean))
    raise AssertionError(f"re-tracking does not end: {order}")


def draw(session: Session, vertices, kind: str = "include") -> None:
    """Click the vertices in regions mode, then close the polygon as Enter does."""
    session.set_region_kind(kind)
    for row, col in vertices:
        assert session.region_click(row, col) == "vertex"
    assert session.region_editor.close_polygon()


def test_regions_drawn_limit_the_count_and_area_and_are_saved_beside_the_image(tmp_path, bundle):
    path = spots_image(tmp_path / "five.tif", CENTRES).resolve()
    session = Session(bundle, pixel_size_um=0.5)
    analyzed(session, [path])
    whole = session.dose(path)
    assert whole.count == whole.found == 5 and whole.area_px == 96 * 96 and not whole.has_regions
    assert whole.fluence == image_fluence(5, 96 * 96, 0.5, session.resolving_distance_px)
    seen = record(session)
    assert session.draw_regions(True) and session.drawing_regions
    draw(session, LEFT_HALF)
    file = tmp_path / "five_regions.json"
    assert ("regions_changed", (path,)) in seen and ("regions_saved", (file,)) in seen
    # What the library says of the same regions and tracks, computed here on its own.
    regions = Regions([np.array(LEFT_HALF)])
    tracks = session.results[path].tracks
    inside = filter_tracks(tracks, regions)
    dose = session.dose(path)
    assert dose.count == inside.count == 2 and dose.found == 5 and dose.has_regions
    assert dose.area_px == regions.area_px((96, 96)) == 96 * 48
    assert dose.fluence == image_fluence(2, 96 * 48, 0.5, session.resolving_distance_px)
    assert dose.pixel_size_source == USER_SETTING and dose.regions_file == file
    # An exclusion inside it: the spot in the middle is still outside the include; one around a corner spot.
    draw(session, [(10, 10), (10, 30), (30, 30), (30, 10)], kind="exclude")
    dose = session.dose(path)
    assert dose.count == 1 and dose.area_px == 96 * 48 - 21 * 21
    saved = load_regions(file)
    assert len(saved.include) == 1 and len(saved.exclude) == 1
    assert np.allclose(saved.include[0], LEFT_HALF)
    # Undo takes the exclusion back, and the file follows; redo brings it again.
    assert session.region_editor.undo()
    assert session.dose(path).count == 2 and load_regions(file).exclude == []
    assert session.region_editor.redo() and len(load_regions(file).exclude) == 1
    # Select the exclusion by clicking its outline, delete it.
    assert session.region_click(30, 20) == "selected" and session.regions_state().can_delete
    assert session.region_editor.delete_selected()
    assert session.dose(path).count == 2 and load_regions(file).exclude == []
    assert session.draw_regions(False) is False and not session.drawing_regions
    # A new session reads them back when the image is opened.
    again = Session(bundle, pixel_size_um=0.5)
    report = again.open([path])
    assert report.problems == [] and again.regions_files[path] == file
    assert np.allclose(again.regions[path].include[0], LEFT_HALF)


def test_a_file_that_is_not_cerbers_is_never_written_over(tmp_path, bundle):
    path = spots_image(tmp_path / "img.tif", CENTRES).resolve()
    theirs = tmp_path / "img_regions.json"
    theirs.write_text('{"something": "else"}')
    session = Session(bundle)
    report = session.open([path])
    assert len(report.problems) == 1 and "img_regions.json" in report.problems[0]
    assert session.regions[path].is_empty  # the whole image counts
    refused = []
    session.events.regions_refused.connect(lambda message, details: refused.append(message))
    assert not session.draw_regions(True) and not session.drawing_regions
    assert "not a Cerber regions file" in refused[0]
    assert theirs.read_text() == '{"something": "else"}'
    # Appearing while drawing: the regions are used but the file is left alone.
    theirs.unlink()
    assert session.draw_regions(True)
    theirs.write_text("notes")
    draw(session, AROUND_MIDDLE)
    assert theirs.read_text() == "notes" and "not saved" in refused[-1]
    assert not session.regions[path].is_empty
    # A regions file of Cerber's own is replaced.
    theirs.unlink()
    save_regions(Regions([np.array(LEFT_HALF)]), theirs)
    session.region_editor.undo()
    assert load_regions(theirs).is_empty


def test_regions_from_an_imagej_roi_set_are_read_and_saved_as_json(tmp_path, bundle):
    import roifile

    path = spots_image(tmp_path / "fiji.tif", CENTRES).resolve()
    rect = roifile.ImagejRoi.frompoints(np.array([[0, 0], [48, 0], [48, 96], [0, 96]], dtype=np.float32),
                                        name="left")
    rect.tofile(tmp_path / "fiji_regions.zip")
    session = Session(bundle)
    analyzed(session, [path])
    assert session.regions_files[path] == tmp_path / "fiji_regions.zip"
    assert session.dose(path).count == 2
    session.draw_regions(True)
    draw(session, AROUND_MIDDLE, kind="exclude")
    assert session.dose(path).count == 2  # the middle spot was outside already
    assert (tmp_path / "fiji_regions.zip").is_file()  # left as it is; the JSON beside it wins from now on
    assert len(load_regions(tmp_path / "fiji_regions.json").include) == 1


def test_pooled_fluence_and_dispersion_match_the_library(tmp_path, bundle):
    paths = [spots_image(tmp_path / f"{i}.tif", CENTRES[:n], seed=i).resolve() for i, n in enumerate((1, 5, 3))]
    session = Session(bundle, pixel_size_um=0.8)
    analyzed(session, paths)
    doses = session.doses()
    assert [d.count for d in doses] == [1, 5, 3]
    pooled = session.pooled_dose()
    d = session.resolving_distance_px
    assert pooled.fluence == pooled_fluence([image_fluence(n, 96 * 96, 0.8, d) for n in (1, 5, 3)])
    expected = dispersion_test([1, 5, 3], [d.fluence.area_cm2 for d in doses])
    assert pooled.dispersion == expected and pooled.updating == 0
    # The threshold moves: every analyzed image is re-tracked, the selected one first.
    session.set_threshold(0.99)
    assert session.pooled_dose().updating == 3
    order = retrack_all(session)
    assert order[0] == session.selected and sorted(order) == sorted(paths)
    assert session.pooled_dose().updating == 0
    # The summary: a row per image, then the pooled one with the dispersion test.
    session.set_threshold(session.bundle.config.threshold)
    retrack_all(session)
    rows = summary_rows(session)
    assert [r["track_count"] for r in rows] == [1, 5, 3, 9] and rows[-1]["file"] == "ALL"
    assert rows[-1]["dispersion_p"] == pytest.approx(expected.p_value)
    assert rows[0]["fluence_per_cm2"] == pytest.approx(1 / (96 * 96 * 0.8**2 * 1e-8))


def test_spectra_count_the_tracks_inside_the_regions(tmp_path, bundle):
    a = spots_image(tmp_path / "a.tif", CENTRES).resolve()
    b = spots_image(tmp_path / "b.tif", CENTRES[:2], seed=3).resolve()
    session = Session(bundle)
    analyzed(session, [a, b])
    session.select(a)
    session.draw_regions(True)
    draw(session, LEFT_HALF)
    one = session.spectra("integrated_intensity")
    assert list(one) == ["a.tif", "all"] and one["all"].total == 2
    both = session.spectra("area_px", pooled=True)
    assert list(both) == ["a.tif", "b.tif", "all"] and both["all"].total == 2 + 2
    with pytest.raises(ValueError, match="pixel size"):
        session.spectra("diameter_um", pooled=True)
    out = write_export(ExportKind.SPECTRA, session, tmp_path / "spectrum.csv", 0.6, quantity="area_px")
    lines = out.read_text().splitlines()
    assert lines[0] == "bin_low,bin_high,a.tif,b.tif,all"
    assert sum(int(line.split(",")[-1]) for line in lines[1:]) == 4


def test_the_files_pixel_size_is_used_unless_the_user_set_one(tmp_path, bundle):
    path = (tmp_path / "calibrated.tif").resolve()
    spots_image(tmp_path / "plain.tif", CENTRES)
    data = tifffile.imread(tmp_path / "plain.tif")
    tifffile.imwrite(path, data, imagej=True, resolution=(1 / 0.25, 1 / 0.25), metadata={"unit": "um"})
    session = Session(bundle)
    analyzed(session, [path])
    dose = session.dose(path)
    assert dose.pixel_size_um == pytest.approx(0.25) and dose.pixel_size_source == "file: ImageJ metadata"
    assert dose.fluence.area_cm2 == pytest.approx(96 * 96 * 0.25**2 * 1e-8)
    session.set_pixel_size(0.5)
    dose = session.dose(path)
    assert (dose.pixel_size_um, dose.pixel_size_source, dose.file_pixel_size_um) == (0.5, USER_SETTING,
                                                                                      pytest.approx(0.25))


def test_the_editor_closes_on_the_first_vertex_and_undoes_vertices(tmp_path):
    image = tmp_path / "x.tif"
    changes = []
    editor = RegionEditor(image, (50, 60), on_change=changes.append)
    assert editor.click(5, 5) == "vertex" and editor.click(5, 20) == "vertex"
    assert editor.click(99, 5) == "outside" and not editor.can_close
    assert editor.click(20, 20) == "vertex" and editor.can_close
    assert editor.undo() and len(editor.draft) == 2  # the last vertex
    editor.click(20, 20)
    assert editor.click(5.5, 5.5, radius=2) == "closed"
    assert len(editor.regions.include) == 1 and editor.selected == ("include", 0) and not editor.drawing
    assert changes.count("regions") == 1 and editor.dirty and editor.needs_saving
    assert json.loads(editor.save().read_text())["format"] == "cerber-regions" and not editor.dirty
