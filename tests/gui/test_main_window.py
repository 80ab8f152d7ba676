"""The main window, clicked as a user would (offscreen, with a tiny model)."""

import time

import numpy as np
import pytest
import tifffile

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from PySide6.QtCore import QSettings, Qt, QTimer  # noqa: E402

from cerber_gui.main_window import MainWindow  # noqa: E402
from tests.model.helpers import gaussian_spots, tiny_bundle  # noqa: E402


@pytest.fixture(scope="module")
def bundle():
    return tiny_bundle(width=1, seed=5)


@pytest.fixture
def window(qtbot, bundle, tmp_path):
    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.IniFormat)
    w = MainWindow(bundle, settings)
    qtbot.addWidget(w)
    w.show()
    return w


@pytest.fixture
def image_path(tmp_path):
    rng = np.random.default_rng(0)
    centres = rng.uniform(20, 180, (12, 2))
    data = (gaussian_spots((200, 220), centres, sigma=2.5) * 3000 + 400 + rng.normal(0, 30, (200, 220)))
    path = tmp_path / "spots.tif"
    tifffile.imwrite(path, data.clip(0, 65535).astype(np.uint16))
    return path


def _analyze(qtbot, window):
    with qtbot.waitSignal(window.analysis_shown, timeout=60000):
        qtbot.mouseClick(window.analyze_button, Qt.LeftButton)


def test_open_analyze_and_see_tracks(qtbot, window, image_path):
    assert not window.analyze_button.isEnabled()  # nothing to analyze yet
    window.open_paths([image_path])
    assert window.image_list.count() == 1 and window.analyze_button.isEnabled()
    _analyze(qtbot, window)
    result = window.results[image_path.resolve()]
    assert window.track_panel.model.rowCount() == result.tracks.count
    assert str(result.tracks.count) in window.track_panel.summary.text()
    assert window.viewer.probability is result.probability


def test_threshold_slider_changes_the_count_without_rerunning(qtbot, window, tmp_path, monkeypatch):
    # Uniform noise keeps the untrained tiny network's map spread over 0..1.
    noise = tmp_path / "noise.tif"
    tifffile.imwrite(noise, np.random.default_rng(0).integers(0, 4000, (200, 220)).astype(np.uint16))
    window.open_paths([noise])
    _analyze(qtbot, window)
    calls = []
    monkeypatch.setattr("cerber_gui.main_window.analyze", lambda *a, **k: calls.append(1))
    counts = set()
    for value in (30, 90):
        with qtbot.waitSignal(window.tracks_updated, timeout=20000) as blocker:
            window.threshold_slider.setValue(value)
        counts.add(blocker.args[0])
        assert window.track_panel.model.rowCount() == blocker.args[0]
    assert len(counts) > 1 and not calls


def test_clicking_a_row_centres_both_views(qtbot, window, image_path):
    window.open_paths([image_path])
    window.threshold_slider.setValue(30)
    _analyze(qtbot, window)
    table = window.track_panel.table
    assert table.model().rowCount() > 0
    index = table.model().index(0, 0)
    rect = table.visualRect(index)
    qtbot.mouseClick(table.viewport(), Qt.LeftButton, pos=rect.center())
    tracks = window.results[image_path.resolve()].tracks
    source_row = window.track_panel.proxy.mapToSource(index).row()
    row, col = tracks.columns["row"][source_row], tracks.columns["col"][source_row]
    for box in (window.viewer.left_box, window.viewer.right_box):
        (x0, x1), (y0, y1) = box.viewRange()
        assert abs((x0 + x1) / 2 - col) < 2 and abs((y0 + y1) / 2 - row) < 2


def test_cancel_stops_analysis_and_the_window_stays_responsive(qtbot, window, tmp_path):
    big = tmp_path / "big.tif"
    tifffile.imwrite(big, np.random.default_rng(1).integers(0, 4000, (2400, 2400), dtype=np.uint16))
    window.open_paths([big])
    ticks = []
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(time.monotonic()))
    timer.start(20)
    qtbot.mouseClick(window.analyze_button, Qt.LeftButton)
    assert window.busy and window.cancel_button.isEnabled()
    qtbot.waitUntil(lambda: window.progress.maximum() > 0 and window.progress.value() >= 1, timeout=60000)
    qtbot.mouseClick(window.cancel_button, Qt.LeftButton)
    qtbot.waitUntil(lambda: not window.busy, timeout=60000)
    timer.stop()
    assert big.resolve() not in window.results
    assert window.analyze_button.isEnabled()
    assert len(ticks) > 5  # the event loop kept running during the analysis


def test_unreadable_file_and_damaged_model_get_a_message(qtbot, window, tmp_path, bundle):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not a png")
    window.open_paths([bad])
    assert window.image_list.count() == 0
    assert "broken.png" in window.last_error[1]
    damaged = tmp_path / "model"
    damaged.mkdir()
    (damaged / "config.json").write_text("{")
    assert not window.load_model(damaged)
    assert window.bundle is bundle and "config.json" in window.last_error[1]


def test_model_card_describes_the_model(qtbot, window):
    from cerber_gui.model_card import ModelCardDialog

    dialog = ModelCardDialog(window.bundle, window)
    qtbot.addWidget(dialog)
    text = dialog.findChild(type(dialog.layout().itemAt(0).widget())).toPlainText()
    assert "three cross-connected branches" in text and "18,813 trainable" in text


def test_recent_files_are_remembered_and_reopen(qtbot, window, image_path, bundle, tmp_path):
    window.open_paths([image_path])
    window.close()
    again = MainWindow(bundle, window.settings)
    qtbot.addWidget(again)
    actions = [a for a in again.recent_menu.actions() if a.text() == str(image_path.resolve())]
    assert len(actions) == 1
    actions[0].trigger()
    assert again.image_list.count() == 1 and again.current == image_path.resolve()
    image_path.unlink()  # a recent file that has gone away: a message, and it leaves the list
    again.image_list.clear()
    again.images.clear()
    [a for a in again.recent_menu.actions() if a.text() == str(image_path.resolve())][0].trigger()
    assert "no longer there" in again.last_error[0]
    assert str(image_path.resolve()) not in again.recent_paths()


def test_levels_control_sets_the_display_range_of_both_panes(qtbot, window, image_path):
    window.open_paths([image_path])
    data = window.images[image_path.resolve()].data
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
        workers.start(job)
    assert "out of memory" in blocker.args[0] and "batch size" in blocker.args[0]


def test_without_tensorflow_the_wizard_says_training_needs_the_full_build(qtbot, window, monkeypatch):
    import importlib.util
    import sys

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorflow" else real(name, *a))
    monkeypatch.setattr(sys, "frozen", True, raising=False)  # as in the analyzer build
    assert window.open_training_wizard() is None
    assert "cannot train" in window.last_error[0] and "Cerber-full" in window.last_error[1]
