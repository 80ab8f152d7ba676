"""The main window, clicked as a user would (offscreen, with the default model)."""

import time

import numpy as np
import pytest
import tifffile

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from PySide6.QtCore import Qt, QTimer  # noqa: E402

from cerber_gui.main_window import MainWindow  # noqa: E402
from cerber_model.runtime.analysis import analyze  # noqa: E402
from cerber_model.runtime.tracks import TRACK_COLUMNS  # noqa: E402
from tests.gui.helpers import SHAPE, analyze_clicked, gaussian_spots, menu_action, open_and_wait, spot_grid  # noqa: E402


@pytest.fixture
def image_path(spots):
    return spots[0]


def table_positions(panel) -> np.ndarray:
    """(row, col) of every track as the table shows them, in the table's order."""
    model = panel.table.model()
    r, c = TRACK_COLUMNS.index("row"), TRACK_COLUMNS.index("col")
    return np.array([[float(model.index(i, r).data()), float(model.index(i, c).data())]
                     for i in range(model.rowCount())]).reshape(-1, 2)


def assert_match(found: np.ndarray, true: np.ndarray, tolerance: float = 2.0) -> None:
    """Every found position lies within ``tolerance`` px of its own true centre, and nearly all are found."""
    distances = np.hypot(*(found[:, None, :] - true[None, :, :]).transpose(2, 0, 1))
    nearest = distances.argmin(axis=1)
    assert (distances.min(axis=1) < tolerance).all(), distances.min(axis=1)
    assert len(set(nearest)) == len(found)  # no spot reported twice
    assert abs(len(found) - len(true)) <= 1


def test_open_analyze_and_see_the_spots_in_the_table(qtbot, window, spots):
    image_path, centres = spots
    assert not window.toolbar.analyze_button.isEnabled()  # nothing to analyze yet
    open_and_wait(qtbot, window, [image_path])
    assert window.image_list.count() == 1 and window.toolbar.analyze_button.isEnabled()
    analyze_clicked(qtbot, window)
    found = table_positions(window.track_panel)
    assert_match(found, centres)
    assert f"<b>{len(found)}</b> tracks" in window.track_panel.summary.text()
    # The default model drops tracks of low contrast, and the summary says so. This image is too
    # small (under a window of 256 px) for its background to count as clean: the model's own setting.
    config = window.session.bundle.config
    assert (f"threshold {config.threshold:.2f}, smallest contrast {config.min_contrast:g}, model default"
            in window.track_panel.summary.text())
    assert "clean background" not in window.track_panel.summary.text()
    assert window.viewer.markers.data.size == len(found)  # one marker per track


def test_the_summary_counts_the_tracks_found_on_the_binned_image(qtbot, window, tmp_path):
    """Broad faint spots on a clean background: some are found only by the coarse look, and the
    summary says how many."""
    rng = np.random.default_rng(3)
    rr, cc = np.indices((512, 512))
    data = 1000 + rng.normal(0, 10, rr.shape)
    for r in range(64, 512, 128):
        for c in range(64, 512, 128):
            data += 12 * np.exp(-((rr - r - rng.uniform(-8, 8)) ** 2 + (cc - c - rng.uniform(-8, 8)) ** 2) / 32)
    faint = tmp_path / "broad.tif"
    tifffile.imwrite(faint, np.rint(data).astype(np.uint16))
    open_and_wait(qtbot, window, [faint])
    analyze_clicked(qtbot, window)
    tracks = window.session.results[faint].tracks
    assert tracks.clean_background and tracks.coarse_count > 0
    clean = window.session.bundle.config.clean_background
    assert (f"threshold {clean.threshold:.2f}, smallest contrast {clean.min_contrast:g} (the model's setting for a "
            f"clean background), model default (on this clean background, the network of {clean.network})"
            ) in window.track_panel.summary.text()
    assert (f"; {tracks.coarse_count} of the tracks found on the image binned 2 x 2 (broad faint spots)"
            in window.track_panel.summary.text())


def test_threshold_slider_changes_the_count_without_rerunning(qtbot, window, tmp_path, bundle, monkeypatch):
    # Spots from barely visible to clear: the count depends on the threshold.
    rng = np.random.default_rng(0)
    data = gaussian_spots(spot_grid(4, 4, rng), np.linspace(10, 120, 16)) + 400 + rng.normal(0, 30, SHAPE)
    faint = tmp_path / "faint.tif"
    tifffile.imwrite(faint, data.clip(0, 65535).astype(np.uint16))
    open_and_wait(qtbot, window, [faint])
    analyze_clicked(qtbot, window)
    # What a fresh analysis at each threshold finds (as the command line would report it).
    from cerber_model.runtime.images import read_image

    image = read_image(faint)
    values = (15, 70)  # neither the model's own threshold, so that each move changes the slider
    assert round(bundle.config.threshold * 100) not in values
    expected = {v: analyze(image, bundle, threshold=v / 100).tracks.count for v in values}
    assert len(set(expected.values())) > 1
    calls = []
    import cerber_model.runtime.analysis as analysis

    real = analysis.predict_probability
    monkeypatch.setattr(analysis, "predict_probability", lambda *a, **k: calls.append(1) or real(*a, **k))
    for value in values:
        with qtbot.waitSignal(window.tracks_updated, timeout=20000):
            window.toolbar.threshold_slider.setValue(value)
        assert window.track_panel.table.model().rowCount() == expected[value]
        assert f"<b>{expected[value]}</b> tracks" in window.track_panel.summary.text()
    assert not calls  # the probability map was reused


def test_typing_a_smaller_contrast_finds_fainter_spots_without_rerunning(qtbot, window, tmp_path, bundle,
                                                                         monkeypatch):
    # Spots from barely visible to clear on noise: the count depends on the smallest contrast.
    rng = np.random.default_rng(1)
    data = gaussian_spots(spot_grid(4, 4, rng), np.linspace(20, 160, 16), sigma=1.5) + 400 + rng.normal(0, 20, SHAPE)
    faint = tmp_path / "faint.tif"
    tifffile.imwrite(faint, data.clip(0, 65535).astype(np.uint16))
    open_and_wait(qtbot, window, [faint])
    box = window.toolbar.contrast_box
    own = bundle.config.min_contrast
    assert box.isEnabled() and box.value() == pytest.approx(own)
    analyze_clicked(qtbot, window)
    from cerber_model.runtime.images import read_image

    image = read_image(faint)
    lower = 3.0
    expected = {c: analyze(image, bundle, min_contrast=c).tracks.count for c in (own, lower)}
    assert expected[lower] > expected[own] == window.track_panel.table.model().rowCount()
    calls = []
    import cerber_model.runtime.analysis as analysis

    real = analysis.predict_probability
    monkeypatch.setattr(analysis, "predict_probability", lambda *a, **k: calls.append(1) or real(*a, **k))
    qtbot.mouseClick(box, Qt.LeftButton)  # focus, as a click does
    box.selectAll()
    with qtbot.waitSignal(window.tracks_updated, timeout=20000):
        qtbot.keyClicks(box, "3")
        qtbot.keyClick(box, Qt.Key_Return)
    assert window.session.min_contrast == lower
    assert window.track_panel.table.model().rowCount() == expected[lower]
    assert f"smallest contrast {lower:g}, model default" in window.track_panel.summary.text()
    assert not calls  # the probability map was reused
    # A new analysis keeps the user's setting (and so the model's setting for clean backgrounds is off).
    monkeypatch.setattr(analysis, "predict_probability", real)
    analyze_clicked(qtbot, window)
    tracks = window.session.results[faint.resolve()].tracks
    assert tracks.min_contrast == lower and tracks.count == expected[lower] and not tracks.clean_background
    # Back to the model's own: the count it started with.
    box.selectAll()
    with qtbot.waitSignal(window.tracks_updated, timeout=20000):
        qtbot.keyClicks(box, f"{own:g}")
        qtbot.keyClick(box, Qt.Key_Return)
    assert window.session.at_own_setting and window.track_panel.table.model().rowCount() == expected[own]


def test_clicking_a_row_centres_both_views_on_that_spot(qtbot, window, spots):
    image_path, centres = spots
    open_and_wait(qtbot, window, [image_path])
    analyze_clicked(qtbot, window)
    table = window.track_panel.table
    for i in (0, table.model().rowCount() - 1):  # two different spots
        index = table.model().index(i, 0)
        table.scrollTo(index)
        qtbot.mouseClick(table.viewport(), Qt.LeftButton, pos=table.visualRect(index).center())
        row, col = table_positions(window.track_panel)[i]
        true = centres[np.hypot(*(centres - (row, col)).T).argmin()]
        for box in (window.viewer.left_box, window.viewer.right_box):
            (x0, x1), (y0, y1) = box.viewRange()
            assert abs((x0 + x1) / 2 - true[1]) < 2 and abs((y0 + y1) / 2 - true[0]) < 2


def test_analyze_all_then_another_model_drops_the_results(qtbot, window, spots, tmp_path):
    image_path, centres = spots
    other = tmp_path / "other.tif"
    other.write_bytes(image_path.read_bytes())
    open_and_wait(qtbot, window, [image_path, other])
    assert window.image_list.count() == 2 and window.image_list.currentItem().text() == "spots.tif"
    menu_action(window, "&Analysis", "Analyze &all").trigger()
    qtbot.waitUntil(lambda: not window.session.busy and len(window.session.results) == 2, timeout=60000)
    window.image_list.setCurrentRow(1)  # the user picks the second image: its own tracks show
    assert window.session.selected == other.resolve()
    assert_match(table_positions(window.track_panel), centres)
    menu_action(window, "&Model", "Use the &default model").trigger()
    assert window.track_panel.table.model().rowCount() == 0 and window.session.results == {}
    assert window.toolbar.analyze_button.isEnabled()


def test_the_model_menu_offers_the_bundled_models_by_name(window, tmp_path, monkeypatch):
    from cerber_model.runtime.bundle import bundled_models, save_bundle
    from tests.model.helpers import tiny_bundle

    monkeypatch.chdir(tmp_path)
    save_bundle(tiny_bundle(), tmp_path / "v1")  # a folder of that name where the app was started: not it
    menu_action(window, "&Model", "Use the bundled model 'v1'").trigger()
    assert window.session.bundle.config.name == "v1" and window.session.bundle.path == bundled_models()["v1"]
    menu_action(window, "&Model", "Use the &default model").trigger()
    assert window.session.bundle.config.name == "default"


def test_cancel_stops_analysis_and_the_window_stays_responsive(qtbot, window, tmp_path):
    big = tmp_path / "big.tif"
    tifffile.imwrite(big, np.random.default_rng(1).integers(0, 4000, (2400, 2400), dtype=np.uint16))
    open_and_wait(qtbot, window, [big])
    ticks = []
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(time.monotonic()))
    timer.start(20)
    qtbot.mouseClick(window.toolbar.analyze_button, Qt.LeftButton)
    assert window.session.busy and window.toolbar.cancel_button.isEnabled()
    qtbot.waitUntil(lambda: window.progress.maximum() > 0 and window.progress.value() >= 1, timeout=60000)
    qtbot.mouseClick(window.toolbar.cancel_button, Qt.LeftButton)
    qtbot.waitUntil(lambda: not window.session.busy, timeout=60000)
    timer.stop()
    assert big.resolve() not in window.session.results
    assert window.toolbar.analyze_button.isEnabled()
    assert len(ticks) > 5  # the event loop kept running during the analysis


def test_unreadable_file_and_damaged_model_get_a_message(qtbot, window, tmp_path, bundle):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not a png")
    open_and_wait(qtbot, window, [bad])
    assert window.image_list.count() == 0
    assert "broken.png" in window.last_error[1]
    damaged = tmp_path / "model"
    damaged.mkdir()
    (damaged / "config.json").write_text("{")
    assert not window.load_model(damaged)
    assert window.session.bundle is bundle and "config.json" in window.last_error[1]


def test_model_card_describes_the_model(qtbot, window):
    from cerber_gui.model_card import ModelCardDialog

    dialog = ModelCardDialog(window.session.bundle, window)
    qtbot.addWidget(dialog)
    text = dialog.findChild(type(dialog.layout().itemAt(0).widget())).toPlainText()
    # The default model has width 2: 72,588 trainable parameters (README's table), and its own threshold.
    threshold = window.session.bundle.config.threshold
    assert "three cross-connected branches" in text and "72,588 trainable" in text and f"{threshold:.3f}" in text


def test_the_four_exports_write_what_the_table_shows(qtbot, window, spots, tmp_path, monkeypatch):
    import csv

    from PIL import Image as PILImage
    from PySide6.QtWidgets import QFileDialog

    image_path, centres = spots
    open_and_wait(qtbot, window, [image_path])
    analyze_clicked(qtbot, window)
    found = table_positions(window.track_panel)
    out = tmp_path / "out"
    out.mkdir()
    for text, name in [("Export &tracks CSV…", "tracks.csv"), ("Export &summary CSV (all analyzed)…", "summary.csv"),
                       ("Export &overlay PNG…", "overlay.png"), ("Export &probability TIFF…", "probability.tif")]:
        monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, n=name, **k: (str(out / n), ""))
        menu_action(window, "&File", text).trigger()
        assert (out / name).is_file(), text
    with open(out / "tracks.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert_match(np.array([[float(r["row"]), float(r["col"])] for r in rows]), centres)
    assert len(rows) == len(found)
    with open(out / "summary.csv", newline="") as fh:
        (summary,) = csv.DictReader(fh)
    assert summary["file"] == str(image_path.resolve()) and int(summary["track_count"]) == len(found)
    used = window.session.results[image_path.resolve()].tracks.threshold  # the clean background's (above)
    assert summary["model"] == "default" and float(summary["threshold"]) == pytest.approx(used)
    overlay = np.asarray(PILImage.open(out / "overlay.png"))
    assert overlay.shape == (*SHAPE, 3)
    probability = tifffile.imread(out / "probability.tif")
    assert probability.shape == SHAPE and probability.dtype == np.float32
    r, c = np.rint(centres).astype(int).T
    own = window.session.threshold
    assert (probability[r, c] > own).all() and np.median(probability) < 0.1  # high on the spots only


def test_recent_files_are_remembered_and_reopen(qtbot, window, image_path, bundle, tmp_path):
    open_and_wait(qtbot, window, [image_path])
    window.close()
    again = MainWindow(bundle, window.settings)
    qtbot.addWidget(again)
    actions = [a for a in again.menu_bar.recent_menu.actions() if a.text() == str(image_path.resolve())]
    assert len(actions) == 1
    with qtbot.waitSignal(again.images_opened, timeout=30000):
        actions[0].trigger()
    assert again.image_list.count() == 1 and again.session.selected == image_path.resolve()
    image_path.unlink()  # a recent file that has gone away: a message, and it leaves the list
    [a for a in again.menu_bar.recent_menu.actions() if a.text() == str(image_path.resolve())][0].trigger()
    assert "no longer there" in again.last_error[0]
    assert str(image_path.resolve()) not in again.settings.recent()


def test_levels_control_sets_the_display_range_of_both_panes(qtbot, window, image_path):
    open_and_wait(qtbot, window, [image_path])
    data = window.session.images[image_path.resolve()].data
    auto = window.viewer.levels()
    assert data.min() <= auto[0] < auto[1] <= data.max()  # 16-bit range, not 0..255
    window.viewer.histogram.item.setLevels(500, 900)  # what dragging the range does
    assert window.viewer.levels() == (500, 900)
    assert tuple(window.viewer.background_item.getLevels()) == (500, 900)
    window.viewer.reset_levels()
    assert window.viewer.levels() == pytest.approx(auto)


def test_an_uncaught_error_is_shown_and_logged(qtbot, window, tmp_path, monkeypatch):
    import logging
    import sys

    from cerber_gui import logfile

    monkeypatch.setattr(sys, "excepthook", sys.excepthook)
    path = logfile.setup(tmp_path / "logs")
    try:
        logfile.catch_uncaught(window.show_error)
        try:
            raise ValueError("bad value in a slot")
        except ValueError:
            sys.excepthook(*sys.exc_info())
        assert "bad value in a slot" in window.last_error[0] and "Traceback" in window.last_error[1]
        assert "bad value in a slot" in path.read_text()
    finally:
        root = logging.getLogger()
        for handler in [h for h in root.handlers if getattr(h, "baseFilename", "") == str(path)]:
            root.removeHandler(handler)
            handler.close()


def test_out_of_memory_in_a_worker_names_the_fix(qtbot):
    from cerber_gui import workers

    def greedy(*, progress, cancel):
        raise MemoryError()

    job = workers.Worker(greedy)
    with qtbot.waitSignal(job.signals.error, timeout=10000) as blocker:
        workers.start(job, workers.Pool.QUICK)
    assert "out of memory" in blocker.args[0] and "batch size" in blocker.args[0]


def test_without_tensorflow_the_wizard_says_training_needs_the_full_build(qtbot, window, monkeypatch):
    import importlib.util
    import sys

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorflow" else real(name, *a))
    monkeypatch.setattr(sys, "frozen", True, raising=False)  # as in the analyzer build
    assert window.open_training_wizard() is None
    assert "cannot train" in window.last_error[0] and "Cerber-full" in window.last_error[1]


def test_opening_reads_on_a_worker_and_the_list_fills_as_images_arrive(qtbot, window, image_path, tmp_path,
                                                                       monkeypatch):
    import cerber_gui.session

    paths = [image_path]
    for name in ("second.tif", "third.tif"):
        paths.append(tmp_path / name)
        paths[-1].write_bytes(image_path.read_bytes())
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    real = cerber_gui.session.read_image

    def slow(path, *args, **kwargs):  # as a large TIFF reads: 0.4 s each
        time.sleep(0.4)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(cerber_gui.session, "read_image", slow)
    ticks = []
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(time.monotonic()))
    timer.start(20)
    with qtbot.waitSignal(window.images_opened, timeout=30000) as blocker:
        start = time.monotonic()
        window.open_paths([paths[0], broken, *paths[1:]])
        assert time.monotonic() - start < 0.2  # the window did not wait for the files
        qtbot.waitUntil(lambda: window.image_list.count() >= 1, timeout=10000)
        # The first image is shown while the others are still being read.
        assert window.session.selected == image_path.resolve() and window.image_list.count() < 3
        assert window.toolbar.analyze_button.isEnabled()
    timer.stop()
    assert [window.image_list.item(i).text() for i in range(3)] == ["spots.tif", "second.tif", "third.tif"]
    assert len(blocker.args[0].unreadable) == 1 and "broken.png" in window.last_error[1]  # named, in a dialog
    assert len(ticks) > 20 and np.diff(ticks).max() < 0.3  # the event loop ran throughout


def test_a_tiff_stack_opens_at_its_first_page_and_the_page_box_shows_another(qtbot, window, tmp_path):
    rng = np.random.default_rng(2)
    pages = [gaussian_spots(spot_grid(rows, 2, rng), [3000] * rows * 2) + 400 + rng.normal(0, 30, SHAPE)
             for rows in (1, 2, 3)]  # 2, 4 and 6 spots
    stack = tmp_path / "stack.tif"
    tifffile.imwrite(stack, np.stack(pages).clip(0, 65535).astype(np.uint16), photometric="minisblack")
    open_and_wait(qtbot, window, [stack])
    assert window.last_error is None  # no longer refused
    assert window.image_list.currentItem().text() == "stack.tif [page 1/3]"
    box = window.toolbar.page_box
    assert box.isVisibleTo(window.toolbar) and box.maximum() == 3 and box.value() == 1
    analyze_clicked(qtbot, window)
    assert window.track_panel.table.model().rowCount() == 2
    with qtbot.waitSignal(window.images_opened, timeout=30000):
        box.setValue(3)  # what typing 3 or clicking the arrow twice does
    assert window.image_list.currentItem().text() == "stack.tif [page 3/3]"
    assert np.array_equal(window.viewer.data, pages[2].clip(0, 65535).astype(np.uint16))
    assert window.session.results == {} and window.track_panel.table.model().rowCount() == 0  # page 1's went
    analyze_clicked(qtbot, window)
    assert window.track_panel.table.model().rowCount() == 6
    window.toolbar.annotate_button.click()  # points files are per file: refused, with the way out
    assert not window.session.annotating and "stack of 3 images" in window.last_error[0]
    plain = tmp_path / "plain.tif"
    tifffile.imwrite(plain, pages[0].clip(0, 65535).astype(np.uint16))
    open_and_wait(qtbot, window, [plain])
    assert not box.isVisibleTo(window.toolbar)  # a single image has no pages
