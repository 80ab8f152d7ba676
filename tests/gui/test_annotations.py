"""Point annotation without a window, and without Qt: the model of one image's points and the
session that holds it."""

import numpy as np
import pytest

from cerber_gui import annotations as annotations_module
from cerber_gui.annotations import HIT_RADIUS_PX, AnnotationError, Annotations
from cerber_gui.session import Session
from cerber_model.runtime.analysis import analyze
from cerber_model.runtime.points import Points, read_points, write_points

from .test_session import record, spots_image

SHAPE = (96, 96)


def test_clicks_add_and_remove_points_with_undo_and_redo(tmp_path):
    changes = []
    a = Annotations(tmp_path / "a.tif", SHAPE, on_change=lambda: changes.append(len(a)))
    assert a.file == tmp_path / "a_points.csv" and len(a) == 0 and not a.dirty and not a.can_undo
    assert a.click(10.254, 20.5)  # sub-pixel, kept to 0.01 px as the file keeps it
    assert a.click(50, 60)
    np.testing.assert_array_equal(a.centres, [[10.25, 20.5], [50, 60]])
    assert a.dirty and changes == [1, 2]
    assert a.click(51, 61.5)  # within the hit radius of (50, 60): removes it
    np.testing.assert_array_equal(a.centres, [[10.25, 20.5]])
    assert not a.click(-0.6, 10) and not a.click(10, 95.6) and len(a) == 1  # off the image: nothing
    assert a.click(95.5, -0.5)  # the far edges of the corner pixels are on the image
    assert a.click(10.25 + HIT_RADIUS_PX + 0.1, 20.5)  # just beyond the radius: a second point
    assert len(a) == 3
    assert a.undo() and a.undo() and len(a) == 1
    assert a.undo()  # the removal is undone: (50, 60) is back
    np.testing.assert_array_equal(a.centres, [[10.25, 20.5], [50, 60]])
    assert a.redo() and len(a) == 1 and a.can_redo
    assert a.undo() and a.undo() and a.undo() and not a.undo()
    assert len(a) == 0 and not a.dirty  # back where it started
    assert a.redo() and a.click(30, 30)  # a new edit forgets what could be redone
    assert not a.can_redo and not a.redo()


def test_save_writes_beside_the_image_and_reads_back(tmp_path):
    image = spots_image(tmp_path / "cells.tif", [(40, 40)])
    before = image.read_bytes()
    a = Annotations.load(image, SHAPE)
    a.click(12.345, 7.5)
    a.click(80, 3)
    assert a.save() == tmp_path / "cells_points.csv" and not a.dirty
    assert image.read_bytes() == before
    back = read_points(tmp_path / "cells_points.csv", SHAPE)
    np.testing.assert_array_equal(back.centres, a.centres)
    again = Annotations.load(image, SHAPE)
    np.testing.assert_array_equal(again.centres, [[12.35, 7.5], [80, 3]])
    assert not again.dirty
    # Undo goes back past a save, and the points are unsaved again; a revert returns to the file.
    a.undo()
    assert a.dirty and len(a) == 1
    a.revert()
    assert not a.dirty and len(a) == 2 and not a.can_undo and not a.can_redo


def test_sizes_from_the_file_are_kept(tmp_path):
    image = spots_image(tmp_path / "sized.tif", [(40, 40)])
    write_points(Points.of([[10, 10], [20, 20]], [1.5, np.nan]), tmp_path / "sized_points.csv")
    a = Annotations.load(image, SHAPE)
    a.click(60, 60)
    a.click(10.5, 10.5)  # removes the first point
    a.save()
    back = read_points(tmp_path / "sized_points.csv")
    np.testing.assert_array_equal(back.centres, [[20, 20], [60, 60]])
    assert np.isnan(back.sd_px).all()
    a.undo()
    a.undo()
    a.save()
    assert read_points(tmp_path / "sized_points.csv").sd_px[0] == 1.5


def test_many_points_at_once_skip_those_already_marked(tmp_path):
    a = Annotations(tmp_path / "a.tif", SHAPE)
    a.click(20, 20)
    added = a.add_many([[21, 21], [40, 40], [40.5, 40.5], [70, 10], [200, 5]])
    assert added == 2  # near (20, 20), a second (40, 40) and off the image are skipped
    np.testing.assert_array_equal(a.centres, [[20, 20], [40, 40], [70, 10]])
    assert a.undo() and len(a) == 1  # one edit
    assert a.undo() and len(a) == 0 and not a.can_undo  # the click before it
    assert a.add_many([]) == 0 and a.can_redo  # nothing added is no edit


def test_bad_files_twins_and_read_only_folders_are_refused_and_nothing_is_lost(tmp_path, monkeypatch):
    image = spots_image(tmp_path / "bad.tif", [(40, 40)])
    bad = tmp_path / "bad_points.csv"
    bad.write_text("row,col\n10,10\nten,5\n20,500\n")
    with pytest.raises(AnnotationError) as caught:
        Annotations.load(image, SHAPE)
    assert "bad_points.csv has problems" in caught.value.message
    assert f"{bad}:3: not numeric" in caught.value.details and f"{bad}:4:" in caught.value.details
    assert bad.read_text() == "row,col\n10,10\nten,5\n20,500\n"
    twin = spots_image(tmp_path / "twin.tif", [(40, 40)])
    (tmp_path / "twin.png").write_bytes(b"")
    with pytest.raises(AnnotationError, match="twin.png would share the points file twin_points.csv"):
        Annotations.load(twin, SHAPE)
    ok = spots_image(tmp_path / "ok.tif", [(40, 40)])
    monkeypatch.setattr(annotations_module, "folder_writable", lambda folder: False)
    with pytest.raises(AnnotationError, match="is read-only") as caught:
        Annotations.load(ok, SHAPE)
    assert "Copy the images to a folder you can write to" in caught.value.details
    assert not (tmp_path / "ok_points.csv").exists()


def test_a_folder_that_cannot_be_written_is_found_by_trying(tmp_path):
    assert annotations_module.folder_writable(tmp_path)
    assert not annotations_module.folder_writable(tmp_path / "not-there")
    assert list(tmp_path.iterdir()) == []  # the probe leaves nothing behind


def test_the_session_annotates_the_selected_image_and_guards_unsaved_points(tmp_path, bundle):
    first = spots_image(tmp_path / "first.tif", [(30, 30)]).resolve()
    second = spots_image(tmp_path / "second.tif", [(50, 50)]).resolve()
    write_points(Points.of([[5, 6]]), tmp_path / "second_points.csv")
    session = Session(bundle)
    assert not session.annotate(True)  # nothing selected
    session.open([first, second])
    seen = record(session)
    assert session.annotation_state().can_annotate and not session.annotation_state().annotating
    assert session.annotate(True) and seen == [("annotating_changed", (True,))]
    seen.clear()
    session.annotations.click(10, 10)
    assert seen == [("points_changed", (first,))] and session.unsaved_points
    state = session.annotation_state()
    assert state.unsaved and state.can_undo and not state.can_redo and not state.can_accept
    with pytest.raises(RuntimeError, match="not saved"):
        session.select(second)
    with pytest.raises(RuntimeError, match="not saved"):
        session.annotate(False)
    assert session.selected == first
    session.annotations.save()
    seen.clear()
    session.select(second)  # annotation goes on with the next image's own points
    assert session.annotations.image == second and session.annotations.centres.tolist() == [[5, 6]]
    assert seen == [("selected", (second,)), ("annotating_changed", (True,))]
    # An image whose points cannot be read: annotation ends and says why.
    (tmp_path / "first_points.csv").write_text("row\n1\n")
    seen.clear()
    session.select(first)
    assert not session.annotating
    assert [name for name, _ in seen] == ["selected", "annotating_changed", "annotation_refused"]
    assert "first_points.csv:1: needs the columns row,col" in seen[-1][1][1]


def test_accepting_detections_adds_them_at_the_threshold(tmp_path, bundle):
    import tifffile

    # Four spots from bright to faint (the faintest at SNR 2.7): the default model finds all four at
    # its threshold (0.30; on this clean background the network for clean backgrounds runs, and the
    # faintest peaks at 0.77, the others at 0.84-0.86), the brightest three at 0.8.
    centres = np.array([(20, 20), (20, 70), (70, 20), (70, 70)])
    rng = np.random.default_rng(0)
    shape = (320, 320)  # room for one window of 256 px, on which the background's texture is counted
    rr, cc = np.indices(shape)
    data = 400 + rng.normal(0, 30, shape)
    for (r, c), amplitude in zip(centres, [3000, 1500, 800, 80], strict=True):
        data += amplitude * np.exp(-0.5 * ((rr - r) ** 2 + (cc - c) ** 2) / 2.5**2)
    path = tmp_path / "four.tif"
    tifffile.imwrite(path, data.astype(np.uint16))
    session = Session(bundle)
    session.open([path])
    session.annotate(True)
    assert session.accept_detections() == 0  # not analyzed yet
    session.queue_selected()
    job = session.next_job()
    session.add_result(job, analyze(job.image, job.bundle, threshold=job.threshold))
    session.next_job()
    assert session.selected_result().tracks.count == 4 and session.annotation_state().can_accept
    session.annotations.click(20.4, 19.8)  # one spot marked by hand already
    assert session.accept_detections() == 3
    found = session.annotations.centres
    assert len(found) == 4
    assert np.hypot(*(found[:, None, :] - centres[None]).transpose(2, 0, 1)).min(axis=1).max() < 1.5
    session.annotations.undo()
    session.annotations.undo()
    # Before re-tracking at the new threshold has run, the stored tracks are still the model's.
    session.set_threshold(0.8)
    assert session.accept_detections() == 3
    assert np.hypot(*(session.annotations.centres - (70, 70)).T).min() > 10  # the faintest is left out
