"""The app's jobs while other work runs: re-tracking never waits behind long work, and what the
table shows follows the slider even when the slider moved during an analysis (offscreen)."""

import threading

import numpy as np
import pytest
import tifffile

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from PySide6.QtCore import Qt, QThreadPool  # noqa: E402
from PySide6.QtWidgets import QWizard  # noqa: E402

import cerber_gui.jobs  # noqa: E402
import cerber_gui.training_wizard  # noqa: E402
from cerber_model.runtime.analysis import analyze  # noqa: E402
from cerber_model.runtime.images import read_image  # noqa: E402
from cerber_model.runtime.progress import Cancelled  # noqa: E402
from cerber_model.runtime.synthesis import Recipe, generate_dataset  # noqa: E402
from tests.gui.helpers import SHAPE, gaussian_spots, open_and_wait, spot_grid  # noqa: E402


@pytest.fixture
def faint(tmp_path):
    """Spots from barely visible to clear: how many tracks there are depends on the threshold."""
    rng = np.random.default_rng(0)
    data = gaussian_spots(spot_grid(4, 4, rng), np.linspace(10, 120, 16)) + 400 + rng.normal(0, 30, SHAPE)
    path = tmp_path / "faint.tif"
    tifffile.imwrite(path, data.clip(0, 65535).astype(np.uint16))
    return path


@pytest.fixture
def gate(monkeypatch):
    """Analyses wait until ``gate.release`` is set; ``gate.started`` says one is waiting."""
    gate = threading.Event(), threading.Event()
    started, release = gate

    def held(*args, **kwargs):
        started.set()
        release.wait(30)
        return analyze(*args, **kwargs)

    monkeypatch.setattr(cerber_gui.jobs, "analyze", held)
    yield type("Gate", (), {"started": started, "release": release})
    release.set()


def test_tracks_follow_a_threshold_moved_during_the_analysis(qtbot, window, faint, bundle, gate):
    image = read_image(faint)
    expected = analyze(image, bundle, threshold=0.7).tracks.count
    assert expected != analyze(image, bundle).tracks.count  # at the model's own threshold
    open_and_wait(qtbot, window, [faint])
    qtbot.mouseClick(window.toolbar.analyze_button, Qt.LeftButton)
    qtbot.waitUntil(gate.started.is_set, timeout=10000)
    window.toolbar.threshold_slider.setValue(70)  # the user moves the slider while the analysis runs
    gate.release.set()
    qtbot.waitUntil(lambda: not window.session.busy and window.session.selected_result() is not None,
                    timeout=60000)
    qtbot.waitUntil(lambda: "threshold 0.70" in window.track_panel.summary.text(), timeout=10000)
    assert window.toolbar.threshold_label.text() == "0.70"
    assert window.track_panel.table.model().rowCount() == expected
    assert f"<b>{expected}</b> tracks" in window.track_panel.summary.text()


def test_retracking_does_not_wait_for_training_and_an_analysis(qtbot, window, faint, tmp_path, monkeypatch, gate,
                                                                request):
    # Two threads, as Qt's global pool has on a two-core machine.
    global_pool = QThreadPool.globalInstance()
    threads = global_pool.maxThreadCount()
    request.addfinalizer(lambda: global_pool.setMaxThreadCount(threads))
    global_pool.setMaxThreadCount(2)
    training, stop_training = threading.Event(), threading.Event()

    def blocking_train(config, spec, out, *, callback, cancel, overwrite):
        training.set()
        while not (cancel.cancelled or stop_training.is_set()):
            stop_training.wait(0.02)
        raise Cancelled("cancelled")

    monkeypatch.setattr(cerber_gui.training_wizard, "train", blocking_train)
    other = tmp_path / "other.tif"
    other.write_bytes(faint.read_bytes())
    open_and_wait(qtbot, window, [faint, other])
    gate.release.set()  # the first analysis runs through
    with qtbot.waitSignal(window.analysis_shown, timeout=60000):
        qtbot.mouseClick(window.toolbar.analyze_button, Qt.LeftButton)
    gate.release.clear()
    gate.started.clear()
    # Training starts in the wizard...
    recipe = Recipe(height=64, width=64, tracks=(2, 4), snr=(3, 5))
    data = generate_dataset(tmp_path / "data", 4, seed=1, recipe=recipe, val_fraction=0.5, workers=1)
    wizard = window.open_training_wizard()
    wizard.data_page.use_dataset_folder(data)
    qtbot.mouseClick(wizard.data_page.check_button, Qt.LeftButton)
    qtbot.waitUntil(lambda: wizard.button(QWizard.NextButton).isEnabled(), timeout=30000)
    qtbot.mouseClick(wizard.button(QWizard.NextButton), Qt.LeftButton)
    qtbot.mouseClick(wizard.button(QWizard.NextButton), Qt.LeftButton)
    try:
        qtbot.waitUntil(training.is_set, timeout=10000)
        # ...and Analyze all analyzes the other image, while the first stays on screen.
        qtbot.mouseClick(window.toolbar.analyze_all_button, Qt.LeftButton)
        qtbot.waitUntil(gate.started.is_set, timeout=10000)
        assert window.session.selected == faint.resolve()
        with qtbot.waitSignal(window.tracks_updated, timeout=5000):
            window.toolbar.threshold_slider.setValue(70)
        assert "threshold 0.70" in window.track_panel.summary.text()
        assert window.session.busy and wizard.training_page.running  # both long jobs still run
    finally:
        stop_training.set()
        gate.release.set()
        qtbot.waitUntil(lambda: not window.session.busy and not wizard.training_page.running, timeout=30000)


def test_closing_an_image_cancels_its_analysis_and_the_queue_goes_on(qtbot, window, faint, tmp_path, gate,
                                                                     monkeypatch):
    from cerber_gui import dialogs
    from tests.gui.helpers import menu_action as _menu_action

    other = tmp_path / "other.tif"
    other.write_bytes(faint.read_bytes())
    open_and_wait(qtbot, window, [faint, other])
    close = _menu_action(window, "&File", "&Close image")
    assert close.isEnabled()
    qtbot.mouseClick(window.toolbar.analyze_all_button, Qt.LeftButton)
    qtbot.waitUntil(gate.started.is_set, timeout=10000)  # faint.tif is being analyzed
    close.trigger()
    gate.release.set()
    qtbot.waitUntil(lambda: not window.session.busy, timeout=60000)
    assert [window.image_list.item(i).text() for i in range(window.image_list.count())] == ["other.tif"]
    assert list(window.session.results) == [other.resolve()]  # analyzed after the closed one
    assert window.session.selected == other.resolve() and window.track_panel.table.model().rowCount() > 0
    # Unsaved points are asked about: going back keeps the image, discarding closes it.
    window.toolbar.annotate_button.click()
    window.session.annotations.click(20, 20)
    answers = ["cancel", "discard"]
    monkeypatch.setattr(dialogs, "save_points_first", lambda *a: answers.pop(0))
    _menu_action(window, "&File", "Close a&ll images").trigger()
    assert window.image_list.count() == 1 and window.session.unsaved_points
    _menu_action(window, "&File", "Close a&ll images").trigger()
    assert window.image_list.count() == 0 and window.session.images == {} and window.session.results == {}
    assert window.viewer.data is None and window.track_panel.table.model().rowCount() == 0
    assert not close.isEnabled() and not window.toolbar.analyze_button.isEnabled()


def test_new_settings_stop_a_retracking_at_the_old_ones(qtbot, window, faint, monkeypatch):
    open_and_wait(qtbot, window, [faint])
    with qtbot.waitSignal(window.analysis_shown, timeout=60000):
        qtbot.mouseClick(window.toolbar.analyze_button, Qt.LeftButton)
    real = cerber_gui.jobs._extract_tracks
    slow_started, give_up, seen = threading.Event(), threading.Event(), {}

    def slow_at_070(job, *, progress, cancel):
        """Re-tracking at 0.70 takes long, as on an image of 8000 x 8000 px."""
        if abs(job.threshold - 0.70) < 1e-6:
            slow_started.set()
            while not (cancel.cancelled or give_up.wait(0.01)):
                pass
            seen["cancelled"] = cancel.cancelled
            cancel.check()
        return real(job, progress=progress, cancel=cancel)

    monkeypatch.setattr(cerber_gui.jobs, "_extract_tracks", slow_at_070)
    try:
        window.toolbar.threshold_slider.setValue(70)
        qtbot.waitUntil(slow_started.is_set, timeout=10000)
        window.toolbar.threshold_slider.setValue(50)  # the user moves on before the tracks at 0.70 are found
        qtbot.waitUntil(lambda: "threshold 0.50" in window.track_panel.summary.text(), timeout=10000)
        assert seen == {"cancelled": True}  # the re-tracking at 0.70 stopped instead of running on
    finally:  # whatever happened, no re-tracking outlives the test
        give_up.set()
        qtbot.waitUntil(lambda: window.jobs.retrack_worker is None, timeout=30000)


def test_the_progress_bar_says_when_the_tracks_are_being_found(qtbot, window, faint, monkeypatch):
    import cerber_model.runtime.analysis as analysis

    real, finding, release = analysis.tracks_from_probability, threading.Event(), threading.Event()

    def held(*args, **kwargs):
        finding.set()
        release.wait(30)
        return real(*args, **kwargs)

    monkeypatch.setattr(analysis, "tracks_from_probability", held)
    open_and_wait(qtbot, window, [faint])
    try:
        qtbot.mouseClick(window.toolbar.analyze_button, Qt.LeftButton)
        qtbot.waitUntil(finding.is_set, timeout=30000)
        qtbot.waitUntil(lambda: window.progress.text() == "faint.tif: finding tracks", timeout=5000)
        assert window.progress.isVisible()
    finally:  # whatever happened, the analysis ends within the test
        release.set()
        qtbot.waitUntil(lambda: not window.session.busy, timeout=60000)
