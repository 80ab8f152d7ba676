"""Regions mode, clicked as a user would (offscreen, with the default model): include and exclude
polygons drawn on the input view limit the count, the usable area and the fluence the track panel
shows (checked against the library's own figures for the regions saved), are saved beside the
image and come back when it is opened again."""

import json

import numpy as np
import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from PySide6.QtCore import Qt  # noqa: E402

from cerber_gui.dose import number  # noqa: E402
from cerber_model.runtime.analysis import analyze  # noqa: E402
from cerber_model.runtime.dosimetry import image_fluence  # noqa: E402
from cerber_model.runtime.images import read_image  # noqa: E402
from cerber_model.runtime.regions import filter_tracks, load_regions  # noqa: E402
from tests.gui.helpers import SHAPE, analyze_clicked, click_image, menu_action, new_window, open_and_wait  # noqa: E402

# The spots sit on a grid at rows 30, 75, 120 and columns 30, 78, 126, 174, give or take 3 px.
LEFT_HALF = [(5, 5), (5, 100), (195, 100), (195, 5)]  # the 6 spots of the first two columns
AROUND_ONE = [(60, 62), (60, 94), (90, 94), (90, 62)]  # the spot near (75, 78)


def draw_polygon(qtbot, window, vertices, close: str = "enter", modifier=Qt.NoModifier) -> float:
    """Click the corners on the input view, then close the polygon as the user chooses: Enter,
    a double click on the last corner, or a click on the first corner. Returns the size of a screen
    pixel in image px (how near the clicks land)."""
    step = 0.0
    last = len(vertices) - 1 if close == "double" else len(vertices)
    for i, (row, col) in enumerate(vertices[:last]):
        step = click_image(qtbot, window, row, col, modifier=modifier if i == 0 else Qt.NoModifier)
    if close == "double":
        click_image(qtbot, window, *vertices[-1], double=True)
    elif close == "first":
        click_image(qtbot, window, *vertices[0])
    else:
        qtbot.keyClick(window.viewer.left.viewport(), Qt.Key_Return)
    return step


def expected_dose(image_path, regions_file, bundle, pixel_size):
    """The count and fluence the library gives for the image, the model and the saved regions."""
    tracks = analyze(read_image(image_path), bundle).tracks
    regions = load_regions(regions_file)
    inside = filter_tracks(tracks, regions)
    area = regions.area_px(SHAPE)
    return inside.count, area, image_fluence(inside.count, area, pixel_size)


def test_drawn_regions_set_the_count_area_and_fluence_and_are_kept_beside_the_image(qtbot, bundle, tmp_path,
                                                                                    spots):
    image_path, centres = spots
    window = new_window(qtbot, bundle, tmp_path)
    bar, panel = window.toolbar, window.track_panel
    assert not bar.regions_button.isEnabled()  # nothing open
    open_and_wait(qtbot, window, [image_path])
    bar.pixel_size.setValue(0.5)  # what typing 0.5 does
    analyze_clicked(qtbot, window)
    whole = image_fluence(12, SHAPE[0] * SHAPE[1], 0.5)
    assert "<b>12</b> tracks on the whole image" in panel.summary.text()
    assert f"fluence <b>{number(whole.fluence_per_cm2)}</b> per cm²" in panel.summary.text()
    assert "pixel size 0.5 µm (your setting)" in panel.summary.text()
    # Regions mode: an include polygon around the left half, closed with Enter.
    qtbot.mouseClick(bar.regions_button, Qt.LeftButton)
    assert window.session.drawing_regions and bar.regions_button.isChecked()
    assert menu_action(window, "&Regions", "&Draw regions").isChecked()
    assert window.regions_label.isVisible() and "spots_regions.json" in window.regions_label.text()
    step = draw_polygon(qtbot, window, LEFT_HALF)
    regions_file = tmp_path / "spots_regions.json"
    saved = load_regions(regions_file)
    assert len(saved.include) == 1 and saved.exclude == []
    assert np.abs(saved.include[0] - LEFT_HALF).max() <= step  # where the user clicked
    count, area, fluence = expected_dose(image_path, regions_file, bundle, 0.5)
    assert count == 6 and window.track_panel.table.model().rowCount() == 6
    text = panel.summary.text()
    assert "<b>6</b> tracks in the usable area (of 12 found)" in text and f"{area:,.0f} px" in text
    assert f"fluence <b>{number(fluence.fluence_per_cm2)}</b> per cm² (95% CI {number(fluence.fluence_ci95_low)}–" \
           f"{number(fluence.fluence_ci95_high)})" in text
    assert f"{number(fluence.area_cm2)} cm²" in text and "regions from spots_regions.json" in text
    # The outline is drawn on both panes, green; the tracks outside are grey rings.
    x, y = window.viewer.region_items["include"][0].getData()
    assert np.allclose(np.c_[y, x][:4], saved.include[0])
    assert len(window.viewer.markers.data) == 6 and len(window.viewer.outside_markers.data) == 6
    # An exclusion (the Exclude button) around one of them, closed by a double click.
    qtbot.mouseClick(bar.exclude_button, Qt.LeftButton)
    assert window.session.region_kind == "exclude"
    draw_polygon(qtbot, window, AROUND_ONE, close="double")
    saved = load_regions(regions_file)
    assert len(saved.include) == 1 and len(saved.exclude) == 1
    count, area, fluence = expected_dose(image_path, regions_file, bundle, 0.5)
    assert count == 5 and "<b>5</b> tracks in the usable area" in panel.summary.text()
    assert f"{area:,.0f} px" in panel.summary.text()
    assert f"fluence <b>{number(fluence.fluence_per_cm2)}</b>" in panel.summary.text()
    # Edit > Undo takes the exclusion back (and the file follows), Redo brings it again.
    undo, redo = menu_action(window, "&Edit", "&Undo"), menu_action(window, "&Edit", "&Redo")
    undo.trigger()
    assert "<b>6</b> tracks" in panel.summary.text() and load_regions(regions_file).exclude == []
    redo.trigger()
    assert "<b>5</b> tracks" in panel.summary.text() and len(load_regions(regions_file).exclude) == 1
    # Ending regions mode keeps the outlines; a new window reads the regions back with the image.
    qtbot.mouseClick(bar.regions_button, Qt.LeftButton)
    assert not window.session.drawing_regions and not window.regions_label.isVisible()
    assert len(window.viewer.region_items["exclude"][0].getData()[0]) > 0
    again = new_window(qtbot, bundle, tmp_path)
    open_and_wait(qtbot, again, [image_path])
    x, _ = again.viewer.region_items["exclude"][0].getData()
    assert len(x) == 6  # 4 corners, the first again to close it, the gap
    analyze_clicked(qtbot, again)
    assert "<b>5</b> tracks in the usable area (of 12 found)" in again.track_panel.summary.text()
    assert again.track_panel.table.model().rowCount() == 5


def test_select_delete_shift_for_exclude_and_escape(qtbot, bundle, tmp_path, spots):
    image_path, _ = spots
    window = new_window(qtbot, bundle, tmp_path)
    open_and_wait(qtbot, window, [image_path])
    analyze_clicked(qtbot, window)
    menu_action(window, "&Regions", "&Draw regions").trigger()
    draw_polygon(qtbot, window, LEFT_HALF, close="first")  # a click on the first corner closes it
    # Shift held on the first corner: an exclusion, though the Exclude button is off.
    draw_polygon(qtbot, window, AROUND_ONE, modifier=Qt.ShiftModifier)
    session = window.session
    assert len(session.regions[image_path.resolve()].exclude) == 1 and session.region_kind == "include"
    assert "<b>5</b> tracks" in window.track_panel.summary.text()
    # Esc discards a polygon being drawn; nothing is saved for it.
    click_image(qtbot, window, 150, 150)
    click_image(qtbot, window, 150, 190)
    assert session.region_editor.drawing and len(window.viewer.draft) == 2
    qtbot.keyClick(window.viewer.left, Qt.Key_Escape)  # the view has the keyboard after a click
    assert not session.region_editor.drawing and len(window.viewer.draft) == 0
    # A click on the exclusion's outline selects it; Delete removes it.
    delete = menu_action(window, "&Regions", "D&elete region")
    assert not delete.isEnabled()
    click_image(qtbot, window, 60, 80)  # on its top edge
    assert session.region_editor.selected == ("exclude", 0) and delete.isEnabled()
    x, _ = window.viewer.selected_region_items[0].getData()
    assert len(x) == 6  # the selected outline is drawn over it
    qtbot.keyClick(window.viewer.left.viewport(), Qt.Key_Delete)
    assert session.regions[image_path.resolve()].exclude == []
    assert "<b>6</b> tracks" in window.track_panel.summary.text()
    saved = json.loads((tmp_path / "spots_regions.json").read_text())
    assert saved["format"] == "cerber-regions" and saved["exclude"] == [] and len(saved["include"]) == 1
    # Annotating ends regions mode (one mode at a time).
    qtbot.mouseClick(window.toolbar.annotate_button, Qt.LeftButton)
    assert window.session.annotating and not window.session.drawing_regions
    assert not window.toolbar.regions_button.isChecked()


def test_a_file_of_that_name_that_is_not_cerbers_is_left_alone(qtbot, bundle, tmp_path, spots):
    image_path, _ = spots
    theirs = tmp_path / "spots_regions.json"
    theirs.write_text('{"owner": "someone else"}')
    window = new_window(qtbot, bundle, tmp_path)
    open_and_wait(qtbot, window, [image_path])
    assert "could not be read" in window.last_error[0] and "spots_regions.json" in window.last_error[1]
    qtbot.mouseClick(window.toolbar.regions_button, Qt.LeftButton)
    assert not window.session.drawing_regions and not window.toolbar.regions_button.isChecked()
    assert "not a Cerber regions file" in window.last_error[0]
    assert theirs.read_text() == '{"owner": "someone else"}'
