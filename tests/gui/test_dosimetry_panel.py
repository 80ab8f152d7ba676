"""Fluence, spectra and the dosimetry exports in the main window (offscreen, with the default model):
the figures shown are the library's, computed here on their own; the spectra count the tracks in
the table; the exports write what the window shows and read back with the tools they are for."""

import csv

import numpy as np
import pytest
import tifffile

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from PySide6.QtWidgets import QFileDialog  # noqa: E402

from cerber_gui.dose import number  # noqa: E402
from cerber_model.runtime.analysis import analyze  # noqa: E402
from cerber_model.runtime.dosimetry import dispersion_test, image_fluence, pooled_fluence  # noqa: E402
from cerber_model.runtime.images import read_image  # noqa: E402
from cerber_model.runtime.tracks import TRACK_COLUMNS  # noqa: E402
from tests.gui.helpers import SHAPE, gaussian_spots, menu_action, open_and_wait, spot_grid  # noqa: E402


@pytest.fixture
def fewer(tmp_path):
    """A second image with 4 spots (the first has 12)."""
    rng = np.random.default_rng(5)
    data = gaussian_spots(spot_grid(1, 4, rng), [3000] * 4) + 400 + rng.normal(0, 30, SHAPE)
    path = tmp_path / "fewer.tif"
    tifffile.imwrite(path, data.clip(0, 65535).astype(np.uint16))
    return path


def analyze_all(qtbot, window) -> None:
    menu_action(window, "&Analysis", "Analyze &all").trigger()
    qtbot.waitUntil(lambda: not window.session.busy and len(window.session.results) == len(window.session.images),
                    timeout=60000)


def shown_spectrum(window) -> tuple[np.ndarray, np.ndarray]:
    """The edges and counts the spectra plot draws."""
    x, y = window.spectra_panel.curve.xData, window.spectra_panel.curve.yData
    return np.asarray(x), np.asarray(y)


def test_pooled_fluence_and_spectra_follow_the_analyzed_images(qtbot, window, bundle, spots, fewer):
    image_path, _ = spots
    open_and_wait(qtbot, window, [image_path, fewer])
    window.toolbar.pixel_size.setValue(0.5)
    analyze_all(qtbot, window)
    counts = [analyze(read_image(p), bundle).tracks.count for p in (image_path, fewer)]
    assert counts == [12, 4]
    # The library's figures, on their own.
    parts = [image_fluence(n, SHAPE[0] * SHAPE[1], 0.5) for n in counts]
    pooled = pooled_fluence(parts)
    dispersion = dispersion_test(counts, [p.area_cm2 for p in parts])
    text = window.track_panel.pooled.text()
    assert window.track_panel.pooled.isVisible()
    assert "<b>All analyzed</b> (2 images): <b>16</b> tracks" in text
    assert f"fluence <b>{number(pooled.fluence_per_cm2)}</b> per cm² (95% CI {number(pooled.fluence_ci95_low)}–" \
           f"{number(pooled.fluence_ci95_high)})" in text
    assert f"dispersion χ² {dispersion.chi2:.3g} on 1 dof, p = {dispersion.p_value:.3g}" in text
    assert ("not Poisson" in text) == dispersion.uneven
    # The spectrum of the selected image counts its tracks; pooled, both images'.
    panel = window.spectra_panel
    assert panel.quantity() == "integrated_intensity" and not panel.pooled()
    edges, heights = shown_spectrum(window)
    assert heights.sum() == 12 and len(edges) == len(heights) + 1
    assert "12 tracks" in panel.caption.text() and "integrated intensity" in panel.plot.getAxis("bottom").labelText
    panel.scope_box.setCurrentIndex(1)  # all analyzed
    assert shown_spectrum(window)[1].sum() == 16 and "in 2 images" in panel.caption.text()
    panel.quantity_box.setCurrentIndex(panel.quantity_box.findData("area_px"))
    edges, heights = shown_spectrum(window)
    assert heights.sum() == 16 and np.allclose(np.diff(edges) % 1, 0)  # whole pixels
    panel.quantity_box.setCurrentIndex(panel.quantity_box.findData("diameter_um"))
    assert shown_spectrum(window)[1].sum() == 16  # the pixel size is known
    # The threshold moves: both images are re-tracked, and the pooled figures follow.
    window.toolbar.threshold_slider.setValue(99)
    qtbot.waitUntil(lambda: all(window.session.tracks_current(p) for p in window.session.results), timeout=20000)
    high = [analyze(read_image(p), bundle, threshold=0.99).tracks.count for p in (image_path, fewer)]
    qtbot.waitUntil(lambda: f"<b>{sum(high)}</b> tracks" in window.track_panel.pooled.text(), timeout=5000)
    assert shown_spectrum(window)[1].sum() == sum(high)


def test_roi_napari_spectra_report_and_summary_exports(qtbot, window, bundle, spots, fewer, tmp_path, monkeypatch):
    import roifile

    image_path, centres = spots
    open_and_wait(qtbot, window, [image_path, fewer])
    window.toolbar.pixel_size.setValue(0.5)
    analyze_all(qtbot, window)
    window.image_list.setCurrentRow(0)
    model = window.track_panel.table.model()
    r, c = TRACK_COLUMNS.index("row"), TRACK_COLUMNS.index("col")
    table = np.array([[float(model.index(i, r).data()), float(model.index(i, c).data())]
                      for i in range(model.rowCount())])
    out = tmp_path / "out"
    out.mkdir()
    suggested = []

    def save_as(name):
        def answer(parent, title, start, file_filter):
            suggested.append(start)
            return str(out / name), file_filter
        monkeypatch.setattr(QFileDialog, "getSaveFileName", answer)

    save_as("rois.zip")
    menu_action(window, "&File", "Export ImageJ &ROI set…").trigger()
    assert suggested[-1] == str(tmp_path / "spots_rois.zip")
    rois = roifile.roiread(out / "rois.zip")
    assert len(rois) == len(table) == 12  # one ROI per row of the table
    assert [roi.name for roi in rois] == [f"track-{i:04d}" for i in range(1, 13)]
    ellipse_centres = np.array([np.asarray(roi.coordinates()).mean(axis=0)[::-1] - 0.5 for roi in rois])
    assert np.abs(np.sort(ellipse_centres, axis=0) - np.sort(table, axis=0)).max() < 0.02
    save_as("points.csv")
    menu_action(window, "&File", "Export &napari points CSV…").trigger()
    with open(out / "points.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 12 and list(rows[0])[:3] == ["index", "axis-0", "axis-1"]
    assert np.allclose(np.array([[float(p["axis-0"]), float(p["axis-1"])] for p in rows]), table, atol=0.01)
    save_as("spectrum.csv")
    menu_action(window, "&File", "Export sp&ectra CSV (all analyzed)…").trigger()
    assert suggested[-1].endswith("spectrum_integrated_intensity.csv")
    with open(out / "spectrum.csv", newline="") as fh:
        spectrum = list(csv.DictReader(fh))
    assert list(spectrum[0]) == ["bin_low", "bin_high", "spots.tif", "fewer.tif", "all"]
    assert sum(int(b["spots.tif"]) for b in spectrum) == 12 and sum(int(b["all"]) for b in spectrum) == 16
    save_as("summary.csv")
    menu_action(window, "&File", "Export &summary CSV (all analyzed)…").trigger()
    with open(out / "summary.csv", newline="") as fh:
        summary = list(csv.DictReader(fh))
    assert [s["track_count"] for s in summary] == ["12", "4", "16"] and summary[-1]["file"] == "ALL"
    expected = image_fluence(12, SHAPE[0] * SHAPE[1], 0.5)
    assert float(summary[0]["fluence_per_cm2"]) == pytest.approx(expected.fluence_per_cm2, rel=1e-6)
    assert summary[0]["pixel_size_source"] == "your setting" and summary[-1]["dispersion_p"] != ""
    save_as("report.html")
    with qtbot.waitSignal(window.exported, timeout=30000) as written:
        menu_action(window, "&File", "Export folder report &HTML (all analyzed)…").trigger()
    assert written.args == [str(out / "report.html")]
    page = (out / "report.html").read_text()
    assert "spots.tif" in page and "fewer.tif" in page and page.count("<svg") >= 2
    assert page.count("data:image/png;base64,") == 2  # an overlay per image


def test_the_pixel_size_the_file_gives_is_shown_with_where_it_came_from(qtbot, window, spots, tmp_path):
    image_path, _ = spots
    calibrated = tmp_path / "calibrated.tif"
    tifffile.imwrite(calibrated, tifffile.imread(image_path), imagej=True, resolution=(4.0, 4.0),
                     metadata={"unit": "um"})
    open_and_wait(qtbot, window, [calibrated])
    with qtbot.waitSignal(window.analysis_shown, timeout=60000):
        window.toolbar.analyze_button.click()
    text = window.track_panel.summary.text()
    assert "pixel size 0.25 µm (file: ImageJ metadata)" in text
    assert f"{number(SHAPE[0] * SHAPE[1] * 0.25**2 * 1e-8)} cm²" in text
    window.toolbar.pixel_size.setValue(0.5)  # the user's setting wins, and says what the file says
    qtbot.waitUntil(lambda: "pixel size 0.5 µm (your setting; the file says 0.25 µm)"
                    in window.track_panel.summary.text(), timeout=5000)
