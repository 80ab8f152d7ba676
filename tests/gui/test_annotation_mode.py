"""Annotation mode, clicked as a user would (offscreen, with the default model): points are
added and removed by clicking in the views, detections accepted, edits undone, saved beside the
image and read back."""

import time

import numpy as np
import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from PySide6.QtCore import Qt  # noqa: E402
from PySide6.QtWidgets import QMessageBox  # noqa: E402

from cerber_gui import annotations  # noqa: E402
from cerber_model.runtime.points import read_points  # noqa: E402
from tests.gui.helpers import SHAPE, click_image, gaussian_spots, new_window, open_and_wait, spot_grid  # noqa: E402
from tests.gui.helpers import analyze_clicked as _analyze  # noqa: E402
from tests.gui.helpers import menu_action as _menu_action  # noqa: E402

# Places with no spot near them (the spots sit on a grid at rows 30, 75, 120 and columns 30,
# 78, 126, 174, give or take 3 px).
EMPTY = [(52.3, 54.6), (97.7, 150.25), (160.4, 100.1)]


@pytest.fixture
def questions(monkeypatch):
    """Answers QMessageBox.question with the answers queued (Cancel when none is left); records the texts."""
    asked, answers = [], []
    monkeypatch.setattr(QMessageBox, "question", lambda parent, title, text, *a, **k:
                        asked.append(text) or (answers.pop(0) if answers else QMessageBox.Cancel))
    return asked, answers


def shown_points(window, pane: int = 0) -> np.ndarray:
    """(row, col) of the crosses drawn in a pane."""
    x, y = window.viewer.point_items[pane].getData()
    return np.c_[y, x]


def nearest_distances(found: np.ndarray, true) -> np.ndarray:
    true = np.asarray(true, dtype=float)
    return np.hypot(*(found[:, None, :] - true[None]).transpose(2, 0, 1)).min(axis=1)


def test_click_points_accept_detections_undo_save_and_reopen(qtbot, bundle, tmp_path, spots, questions):
    image_path, centres = spots
    original = image_path.read_bytes()
    window = new_window(qtbot, bundle, tmp_path)
    bar = window.toolbar
    assert not bar.annotate_button.isEnabled()  # nothing open
    open_and_wait(qtbot, window, [image_path])
    assert bar.annotate_button.isEnabled() and not bar.accept_button.isEnabled()
    qtbot.mouseClick(bar.annotate_button, Qt.LeftButton)
    assert window.session.annotating and bar.annotate_button.isChecked()
    assert _menu_action(window, "&Points", "&Annotate").isChecked()
    assert window.points_label.text() == "0 points in spots_points.csv"
    # Two points, one clicked in each pane, where the user pointed (to within a screen pixel).
    step = click_image(qtbot, window, *EMPTY[0], pane="left")
    click_image(qtbot, window, *EMPTY[1], pane="right")
    points = window.session.annotations.centres
    assert len(points) == 2 and nearest_distances(points, EMPTY[:2]).max() <= step
    assert np.allclose(shown_points(window, 0), points) and np.allclose(shown_points(window, 1), points)
    assert window.points_label.text() == "2 points in spots_points.csv (not saved)"
    assert bar.save_points_button.isEnabled()
    # Clicking a point removes it; Undo (Edit menu, Ctrl+Z) brings it back, Redo takes it away again.
    click_image(qtbot, window, EMPTY[0][0] + 1, EMPTY[0][1] - 1)
    assert len(window.session.annotations) == 1 and len(shown_points(window)) == 1
    undo, redo = _menu_action(window, "&Edit", "&Undo"), _menu_action(window, "&Edit", "&Redo")
    assert undo.shortcut().toString() == "Ctrl+Z"
    undo.trigger()
    assert len(shown_points(window)) == 2 and redo.isEnabled()
    redo.trigger()
    undo.trigger()
    # Accept detections: analyze, then the 12 spots found become points beside the two clicked.
    _analyze(qtbot, window)
    qtbot.waitUntil(lambda: not window.session.busy)
    assert bar.accept_button.isEnabled() and window.session.annotating
    assert len(shown_points(window)) == 2  # the analysis result did not hide the points
    qtbot.mouseClick(bar.accept_button, Qt.LeftButton)
    points = window.session.annotations.centres
    assert len(points) == 14 and nearest_distances(points[2:], centres).max() < 2
    own, contrast = window.session.threshold, window.session.min_contrast
    assert (f"12 detections at threshold {own:.2f} and contrast {contrast:.1f} added as points"
            in window.statusBar().currentMessage())
    # A detection accepted is a point: clicking it removes it.
    click_image(qtbot, window, *points[5])
    assert len(window.session.annotations) == 13
    undo.trigger()
    qtbot.mouseClick(bar.save_points_button, Qt.LeftButton)
    saved = tmp_path / "spots_points.csv"
    assert np.allclose(read_points(saved, SHAPE).centres, points, atol=0.005)
    assert image_path.read_bytes() == original  # never written over the image
    assert window.points_label.text() == "14 points in spots_points.csv" and not bar.save_points_button.isEnabled()
    asked, _ = questions
    assert window.close() and asked == []  # all saved: nothing to ask
    # Reopened in a new window, annotating the image shows its points again.
    again = new_window(qtbot, bundle, tmp_path)
    open_and_wait(qtbot, again, [image_path])
    _menu_action(again, "&Points", "&Annotate").trigger()
    assert again.toolbar.annotate_button.isChecked()
    assert np.allclose(shown_points(again), points, atol=0.005) and not again.session.unsaved_points


def test_fitting_the_setting_to_marked_spots_finds_the_faint_ones(qtbot, bundle, tmp_path, questions, monkeypatch):
    """Spots from barely visible to clear: at the model's own setting the faint ones are missed. The
    user marks every spot and asks for the setting that matches the marks; the tracks follow."""
    import tifffile

    from cerber_model.runtime.analysis import analyze
    from cerber_model.runtime.evaluation import match_points
    from cerber_model.runtime.images import read_image

    rng = np.random.default_rng(1)
    centres = spot_grid(4, 4, rng)
    data = gaussian_spots(centres, np.linspace(20, 160, 16), sigma=1.5) + 400 + rng.normal(0, 20, SHAPE)
    faint = tmp_path / "faint.tif"
    tifffile.imwrite(faint, data.clip(0, 65535).astype(np.uint16))
    window = new_window(qtbot, bundle, tmp_path)
    open_and_wait(qtbot, window, [faint])
    fit = _menu_action(window, "&Points", "&Fit threshold and contrast to points")
    assert not fit.isEnabled()  # nothing analyzed or annotated
    _analyze(qtbot, window)
    qtbot.mouseClick(window.toolbar.annotate_button, Qt.LeftButton)
    assert fit.isEnabled()
    # No points yet: the message says what to do, and nothing changes.
    fit.trigger()
    assert "no points: mark every spot" in window.last_error[1] and window.session.at_own_setting
    for r, c in centres:
        click_image(qtbot, window, r, c)
    assert len(window.session.annotations) == 16

    def f1() -> float:
        tracks = window.session.results[faint.resolve()].tracks
        return match_points(np.c_[tracks.columns["row"], tracks.columns["col"]], centres).f1

    before, found_before = f1(), window.track_panel.table.model().rowCount()
    assert found_before < 16
    with qtbot.waitSignal(window.tracks_updated, timeout=30000):
        fit.trigger()
    qtbot.waitUntil(lambda: "Fitted to the 16 points of faint.tif" in window.statusBar().currentMessage())
    session = window.session
    assert not session.at_own_setting and f1() > before
    assert window.track_panel.table.model().rowCount() > found_before
    # The toolbar shows the setting, and a fresh analysis at it finds the same tracks.
    assert window.toolbar.contrast_box.value() == pytest.approx(session.min_contrast)
    assert window.toolbar.threshold_slider.value() == round(session.threshold * 100)
    expected = analyze(read_image(faint), bundle, threshold=session.threshold, min_contrast=session.min_contrast)
    assert window.track_panel.table.model().rowCount() == expected.tracks.count
    assert f"F1 {f1():.3f}" in window.statusBar().currentMessage()
    assert f"it was {before:.3f}" in window.statusBar().currentMessage()
    # Asked again, the setting stays: nothing matches the marks better.
    setting = (session.threshold, session.min_contrast)
    fit.trigger()
    qtbot.waitUntil(lambda: "already matches the 16 points" in window.statusBar().currentMessage())
    assert (session.threshold, session.min_contrast) == setting
    # A long fitting (as on a large image) shows how far it is, and the same entry stops it.
    from cerber_gui import jobs

    def slow(*args, progress, cancel, **kwargs):
        progress(1, 18)
        while True:
            cancel.check()
            time.sleep(0.01)

    monkeypatch.setattr(jobs, "fit_setting", slow)
    fit.trigger()
    qtbot.waitUntil(lambda: "1 of 18 thresholds" in window.statusBar().currentMessage())
    assert fit.text() == "Stop &fitting" and fit.isEnabled()
    fit.trigger()
    qtbot.waitUntil(lambda: "Fitting stopped; the setting is unchanged" in window.statusBar().currentMessage())
    assert fit.text() == "&Fit threshold and contrast to points"
    assert (session.threshold, session.min_contrast) == setting
    qtbot.mouseClick(window.toolbar.save_points_button, Qt.LeftButton)
    assert len(read_points(tmp_path / "faint_points.csv").centres) == 16


def test_the_setting_is_fitted_to_the_points_of_every_analyzed_image_that_has_them(qtbot, bundle, tmp_path):
    """Points saved beside other analyzed images count too, inside the image's regions; a points file
    that cannot be read is left out and named."""
    import tifffile

    from cerber_model.runtime.points import Points, write_points
    from cerber_model.runtime.regions import Regions, regions_path_beside, save_regions

    rng = np.random.default_rng(1)
    centres = spot_grid(4, 4, rng)
    data = gaussian_spots(centres, np.linspace(20, 160, 16), sigma=1.5) + 400 + rng.normal(0, 20, SHAPE)
    names = ("faint", "other", "bad")
    for name in names:
        tifffile.imwrite(tmp_path / f"{name}.tif", data.clip(0, 65535).astype(np.uint16))
    for name in names[:2]:
        write_points(Points.of(centres), tmp_path / f"{name}_points.csv")
    (tmp_path / "bad_points.csv").write_text("row,col\n10,oops\n")
    # The other image's usable area is its top half: its 8 spots there count, the rest (marks and
    # tracks) not.
    save_regions(Regions(include=[np.array([[-1, -1], [-1, 230], [100, 230], [100, -1]])]),
                 regions_path_beside(tmp_path / "other.tif"))
    window = new_window(qtbot, bundle, tmp_path)
    open_and_wait(qtbot, window, [tmp_path / f"{name}.tif" for name in names])
    _menu_action(window, "&Analysis", "Analyze &all").trigger()
    qtbot.waitUntil(lambda: not window.session.busy and len(window.session.results) == 3, timeout=60000)
    assert window.session.selected == (tmp_path / "faint.tif").resolve()
    qtbot.mouseClick(window.toolbar.annotate_button, Qt.LeftButton)
    assert len(window.session.annotations) == 16
    with qtbot.waitSignal(window.tracks_updated, timeout=30000):
        _menu_action(window, "&Points", "&Fit threshold and contrast to points").trigger()
    qtbot.waitUntil(lambda: "Fitted to the 24 points of 2 images (faint.tif, other.tif)"
                    in window.statusBar().currentMessage())
    assert "Left out: bad.tif (" in window.statusBar().currentMessage()
    assert "bad_points.csv:2: not numeric" in window.statusBar().currentMessage()
    assert not window.session.at_own_setting
    assert (tmp_path / "bad_points.csv").read_text() == "row,col\n10,oops\n"  # nothing lost


def test_unsaved_points_are_asked_about_before_they_could_go(qtbot, bundle, tmp_path, spots, questions):
    first, _ = spots
    second = tmp_path / "second.tif"
    second.write_bytes(first.read_bytes())
    asked, answers = questions
    window = new_window(qtbot, bundle, tmp_path)
    open_and_wait(qtbot, window, [first, second])
    qtbot.mouseClick(window.toolbar.annotate_button, Qt.LeftButton)
    click_image(qtbot, window, *EMPTY[0])
    # Another image: Cancel stays with the points (and the list says so too).
    window.image_list.setCurrentRow(1)
    assert asked == ["The points for spots_points.csv are not saved. Save them?"]
    assert window.session.selected == first.resolve() and window.image_list.currentRow() == 0
    # Discard: the points go, nothing is written, and annotation goes on with the next image.
    answers.append(QMessageBox.Discard)
    window.image_list.setCurrentRow(1)
    assert window.session.selected == second.resolve() and window.session.annotations.image == second.resolve()
    assert not (tmp_path / "spots_points.csv").exists() and len(shown_points(window)) == 0
    # Save: written, then the switch.
    click_image(qtbot, window, *EMPTY[1])
    answers.append(QMessageBox.Save)
    window.image_list.setCurrentRow(0)
    assert window.session.selected == first.resolve()
    assert len(read_points(tmp_path / "second_points.csv").centres) == 1
    # Ending annotation and closing the app ask too; Cancel keeps the window and the points.
    click_image(qtbot, window, *EMPTY[2])
    asked.clear()
    qtbot.mouseClick(window.toolbar.annotate_button, Qt.LeftButton)
    assert len(asked) == 1 and window.session.annotating and window.toolbar.annotate_button.isChecked()
    assert not window.close() and window.isVisible() and len(asked) == 2
    answers.append(QMessageBox.Save)
    assert window.close()
    assert len(read_points(tmp_path / "spots_points.csv").centres) == 1


def test_bad_files_read_only_folders_and_failed_saves_get_a_message(qtbot, bundle, tmp_path, spots, monkeypatch):
    image_path, _ = spots
    points_file = tmp_path / "spots_points.csv"
    points_file.write_text("row,col\n10,10\n10,oops\n")
    window = new_window(qtbot, bundle, tmp_path)
    open_and_wait(qtbot, window, [image_path])
    qtbot.mouseClick(window.toolbar.annotate_button, Qt.LeftButton)
    assert not window.session.annotating and not window.toolbar.annotate_button.isChecked()
    assert "spots_points.csv has problems" in window.last_error[0]
    assert f"{points_file}:3: not numeric" in window.last_error[1]
    assert points_file.read_text() == "row,col\n10,10\n10,oops\n"  # nothing lost
    points_file.unlink()
    monkeypatch.setattr(annotations, "folder_writable", lambda folder: False)
    qtbot.mouseClick(window.toolbar.annotate_button, Qt.LeftButton)
    assert not window.session.annotating and "is read-only" in window.last_error[0]
    monkeypatch.undo()
    qtbot.mouseClick(window.toolbar.annotate_button, Qt.LeftButton)
    click_image(qtbot, window, *EMPTY[0])

    def refuse(*args):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(annotations, "write_points", refuse)
    _menu_action(window, "&Points", "&Save points").trigger()
    assert "could not be written (Permission denied)" in window.last_error[0]
    assert window.session.unsaved_points and len(shown_points(window)) == 1 and not points_file.exists()
    monkeypatch.undo()  # the folder is writable again: saving works
    assert window.save_points() and len(read_points(points_file).centres) == 1
