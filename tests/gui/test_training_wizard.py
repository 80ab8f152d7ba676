"""The training wizard, walked as a user would (offscreen)."""

import numpy as np
import pytest
from PIL import Image as PILImage

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from PySide6.QtCore import QSettings, Qt  # noqa: E402
from PySide6.QtWidgets import QMessageBox, QWizard  # noqa: E402

from cerber_gui.main_window import MainWindow  # noqa: E402
from cerber_gui.training_wizard import TrainingWizard  # noqa: E402
from cerber_model.runtime.synthesis import Recipe, generate_dataset  # noqa: E402


def _check(qtbot, wizard):
    page = wizard.data_page
    qtbot.mouseClick(page.check_button, Qt.LeftButton)
    qtbot.waitUntil(lambda: page.check_button.isEnabled() and page.report_view.toPlainText() != "Working…",
                    timeout=60000)


def test_bad_folder_keeps_next_disabled(qtbot, tmp_path):
    wizard = TrainingWizard()
    qtbot.addWidget(wizard)
    wizard.show()
    (tmp_path / "img").mkdir()
    (tmp_path / "msk").mkdir()
    PILImage.fromarray(np.zeros((20, 20), np.uint8)).save(tmp_path / "img" / "a.png")
    PILImage.fromarray(np.zeros((30, 20), np.uint8)).save(tmp_path / "msk" / "a.png")
    page = wizard.data_page
    page.train_images.setText(str(tmp_path / "img"))
    page.train_masks.setText(str(tmp_path / "msk"))
    page.val_images.setText(str(tmp_path / "img"))
    page.val_masks.setText(str(tmp_path / "msk"))
    _check(qtbot, wizard)
    assert not wizard.button(QWizard.NextButton).isEnabled()
    assert "a.png: is 20x30 px but its image" in page.report_view.toPlainText()


@pytest.mark.slow
def test_train_a_tiny_model_and_see_the_curves(qtbot, tmp_path, monkeypatch):
    recipe = Recipe(height=64, width=64, tracks=(2, 4), snr=(3, 5), inhomogeneity_sd=(10, 30), vignette_sd=(40, 60))
    data = generate_dataset(tmp_path / "data", 6, seed=1, recipe=recipe, val_fraction=0.34, workers=1)
    window = MainWindow(None, QSettings(str(tmp_path / "settings.ini"), QSettings.IniFormat))
    qtbot.addWidget(window)
    window.show()
    wizard = window.open_training_wizard()
    page = wizard.data_page
    page.use_dataset_folder(data)  # what "choose one data set folder" does
    assert page.val_masks.text() == str(data / "val" / "masks")
    _check(qtbot, wizard)
    assert wizard.button(QWizard.NextButton).isEnabled(), page.report_view.toPlainText()
    wizard.next()
    s = wizard.settings_page
    s.width.setValue(1)
    s.epochs.setValue(1)
    s.steps.setValue(2)
    s.patch_size.setValue(32)
    s.batch_size.setValue(2)
    assert "per epoch of training" in s.estimate.text() and "GiB of RAM" in s.estimate.text()
    wizard.next()
    t = wizard.training_page
    assert t.running
    # Closing the main window while training asks first; "No" keeps both the window and the training.
    asked = []
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: asked.append(a) or QMessageBox.No)
    assert not window.close()
    assert asked and window.isVisible() and wizard.isVisible() and t.running
    qtbot.waitUntil(lambda: t.isComplete(), timeout=300000)
    x, y = t.train_curve.getData()
    assert len(x) == 1 and len(t.batch_curve.getData()[0]) == 2
    wizard.next()
    f = wizard.finish_page
    assert "val_f1" in f.metrics.toPlainText()
    f.target.setText(str(tmp_path / "saved"))
    with qtbot.waitSignal(wizard.use_model, timeout=10000) as blocker:
        wizard.accept()
    assert blocker.args[0] == str(tmp_path / "saved")
    assert (tmp_path / "saved" / "config.json").is_file() and (tmp_path / "saved" / "loss.png").is_file()


def test_synthetic_data_follows_the_training_recipe(qtbot):
    import json
    from dataclasses import replace
    from pathlib import Path

    from cerber_model.runtime.synthesis import named_recipe

    wizard = TrainingWizard()
    qtbot.addWidget(wizard)
    wizard.show()
    page = wizard.data_page
    assert page.size.value() == named_recipe("training").height
    page.synthetic.setChecked(True)
    page.count.setValue(5)
    page.size.setValue(64)
    _check(qtbot, wizard)
    assert wizard.button(QWizard.NextButton).isEnabled(), page.report_view.toPlainText()
    written = json.loads((Path(page.train_images.text()).parents[1] / "recipe.json").read_text())["recipe"]
    assert Recipe.from_dict(written) == replace(named_recipe("training"), height=64, width=64)


def test_settings_start_at_the_training_defaults(qtbot):
    """The wizard's settings are TrainingConfig's, with the default model's inputs for fresh weights."""
    from cerber_model.training import FRESH_NORMALIZATION, TrainingConfig

    wizard = TrainingWizard()
    qtbot.addWidget(wizard)
    assert wizard.settings_page.config() == TrainingConfig(normalization=FRESH_NORMALIZATION)


def test_settings_estimate_follows_width_patch_and_xla(qtbot):
    wizard = TrainingWizard()
    qtbot.addWidget(wizard)
    s = wizard.settings_page

    def ram():
        return float(s.estimate.text().split("about ")[-1].split(" GiB")[0])

    s.width.setValue(4)
    s.patch_size.setValue(128)
    s.batch_size.setValue(8)
    with_xla = ram()
    s.xla.setChecked(False)
    assert ram() < with_xla and not s.config().xla
    s.patch_size.setValue(256)
    assert ram() > with_xla  # four times the patch pixels


def test_start_from_the_open_model_fixes_the_width(qtbot, tmp_path):
    from cerber_model.runtime.bundle import default_bundle_path, load_bundle

    bundle = load_bundle(default_bundle_path())
    window = MainWindow(bundle, QSettings(str(tmp_path / "settings.ini"), QSettings.IniFormat))
    qtbot.addWidget(window)
    s = window.open_training_wizard().settings_page
    assert s.config().start_from == ""
    s.width.setValue(5)
    s.start.setCurrentIndex(1)  # "the open model ... (fine-tune)"
    assert s.config().start_from == str(bundle.path)
    assert s.config().width == bundle.config.network.width and not s.width.isEnabled()
    s.start.setCurrentIndex(0)
    assert s.width.isEnabled() and s.config().start_from == ""
    # Without an open model there is nothing to fine-tune.
    bare = TrainingWizard()
    qtbot.addWidget(bare)
    assert bare.settings_page.start.count() == 1


def test_saving_over_a_folder_that_is_not_a_model_is_refused_without_asking(qtbot, tmp_path, monkeypatch):
    """"Replace?" is asked only about a model: a folder of the user's is named and kept as it is."""
    wizard = TrainingWizard()
    qtbot.addWidget(wizard)
    (tmp_path / "thesis").mkdir()
    (tmp_path / "thesis" / "chapter1.tex").write_text("years of work")
    asked, warned = [], []
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: asked.append(a) or QMessageBox.Yes)
    monkeypatch.setattr(QMessageBox, "warning", lambda *a, **k: warned.append(a))
    page = wizard.finish_page
    page.target.setText(str(tmp_path / "thesis"))
    assert not page.validatePage()
    assert not asked and "does not hold a Cerber model" in warned[0][2]
    assert (tmp_path / "thesis" / "chapter1.tex").read_text() == "years of work"


def test_settings_no_run_could_use_are_shown_and_keep_the_wizard_on_its_page(qtbot, monkeypatch):
    wizard = TrainingWizard()
    qtbot.addWidget(wizard)
    s = wizard.settings_page
    warned = []
    monkeypatch.setattr(QMessageBox, "warning", lambda *a, **k: warned.append(a))
    s.patch_size.setMinimum(0)  # the spin box allows none; stands for any setting the config refuses
    s.patch_size.setValue(2)
    assert "patch size must be a positive multiple of 4 px (got 0)" in s.estimate.text()
    assert not s.validatePage() and "patch size" in warned[0][2]
    s.patch_size.setValue(64)
    assert s.validatePage() and "per epoch of training" in s.estimate.text()


@pytest.fixture
def held_training(monkeypatch):
    """Training that runs until it is stopped: ``calls`` lists the output folder of each run started.

    Ask for it before ``qtbot``: a wizard closed with a run going on asks whether to cancel it, and
    the answer here is yes until the test's widgets are closed."""
    import threading

    import cerber_gui.training_wizard
    from cerber_model.runtime.progress import Cancelled

    calls, teardown = [], threading.Event()

    def train(config, spec, out, *, callback, cancel, overwrite):
        calls.append(out)
        out.mkdir(parents=True)
        (out / "checkpoint").write_bytes(b"weights")
        while not (cancel.cancelled or teardown.is_set()):
            teardown.wait(0.02)
        raise Cancelled("cancelled")

    monkeypatch.setattr(cerber_gui.training_wizard, "train", train)
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.Yes)
    yield calls
    teardown.set()  # no run outlives its test, even a run the wizard lost track of


def _tiny_data(folder):
    recipe = Recipe(height=64, width=64, tracks=(2, 4), snr=(3, 5))
    return generate_dataset(folder, 4, seed=1, recipe=recipe, val_fraction=0.5, workers=1)


def _click(qtbot, wizard, which):
    qtbot.mouseClick(wizard.button(which), Qt.LeftButton)


def test_back_is_disabled_while_training_and_next_never_starts_a_second_run(held_training, qtbot, tmp_path):
    wizard = TrainingWizard()
    qtbot.addWidget(wizard)
    wizard.show()
    wizard.data_page.use_dataset_folder(_tiny_data(tmp_path / "data"))
    _check(qtbot, wizard)
    _click(qtbot, wizard, QWizard.NextButton)
    assert wizard.button(QWizard.BackButton).isEnabled()  # on the settings page
    _click(qtbot, wizard, QWizard.NextButton)
    page = wizard.training_page
    qtbot.waitUntil(lambda: len(held_training) == 1, timeout=10000)
    assert wizard.currentPage() is page and page.running
    assert not wizard.button(QWizard.BackButton).isEnabled()
    _click(qtbot, wizard, QWizard.BackButton)  # a disabled button: nothing happens
    assert wizard.currentPage() is page
    wizard.back()  # and were the page left some other way, coming back shows the same run
    wizard.next()
    assert wizard.currentPage() is page and page.running
    qtbot.mouseClick(page.stop_button, Qt.LeftButton)  # the one run stops
    qtbot.waitUntil(lambda: not page.running, timeout=10000)
    assert len(held_training) == 1 and "cancelled" in page.status.text()
    assert wizard.button(QWizard.BackButton).isEnabled()  # the run is over: Back to change the settings
    _click(qtbot, wizard, QWizard.BackButton)
    assert wizard.currentPage() is wizard.settings_page
    assert wizard.button(QWizard.NextButton).isVisible()  # Next, not Commit
    _click(qtbot, wizard, QWizard.NextButton)
    qtbot.waitUntil(lambda: len(held_training) == 2, timeout=10000)  # a new run, after the first ended
    page.cancel(ask=False)
    qtbot.waitUntil(lambda: not page.running, timeout=10000)


def test_closing_the_wizard_removes_the_folders_it_made_and_nothing_else(held_training, qtbot, tmp_path):
    mine = _tiny_data(tmp_path / "mine")  # the user's data: it stays
    before = sorted(p for p in mine.rglob("*"))
    wizard = TrainingWizard()
    qtbot.addWidget(wizard)
    wizard.show()
    page = wizard.data_page
    page.synthetic.setChecked(True)
    page.count.setValue(5)
    page.size.setValue(64)
    _check(qtbot, wizard)
    first = page.synthetic_folder
    assert (first / "data" / "train" / "images").is_dir()
    page.synthetic.setChecked(True)
    _check(qtbot, wizard)  # generating again: the first data are not used any more
    synthetic = page.synthetic_folder
    assert not first.exists() and synthetic.is_dir()
    page.use_dataset_folder(mine)
    _check(qtbot, wizard)
    _click(qtbot, wizard, QWizard.NextButton)
    _click(qtbot, wizard, QWizard.NextButton)
    qtbot.waitUntil(lambda: len(held_training) == 1, timeout=10000)
    run = held_training[0].parent
    assert run.is_dir() and synthetic.is_dir()
    _click(qtbot, wizard, QWizard.CancelButton)  # "discard this run?" yes: the run stops after its batch
    qtbot.waitUntil(lambda: not wizard.training_page.running, timeout=10000)
    assert not wizard.isVisible()
    assert not run.exists() and not synthetic.exists()
    assert sorted(p for p in mine.rglob("*")) == before


def test_quitting_with_the_wizard_open_removes_its_folders(held_training, qtbot, tmp_path):
    window = MainWindow(None, QSettings(str(tmp_path / "settings.ini"), QSettings.IniFormat))
    qtbot.addWidget(window)
    window.show()
    wizard = window.open_training_wizard()
    wizard.data_page.use_dataset_folder(_tiny_data(tmp_path / "data"))
    _check(qtbot, wizard)
    _click(qtbot, wizard, QWizard.NextButton)
    _click(qtbot, wizard, QWizard.NextButton)
    qtbot.waitUntil(lambda: len(held_training) == 1, timeout=10000)
    assert window.close()  # "stop training?" yes; the app does not come back to remove them later
    assert not held_training[0].parent.exists()


def test_fine_tuning_keeps_the_open_models_normalisation(qtbot, tmp_path):
    """Fine-tuning in the wizard trains on the inputs the open model learnt on, as cerber train
    --start-from does; fresh weights get the default normalisation."""
    from cerber_gui.training_wizard import SettingsPage
    from cerber_model.nn.bundling import make_bundle
    from cerber_model.runtime.architecture import NetworkConfig
    from cerber_model.runtime.bundle import BundleConfig, save_bundle
    from cerber_model.runtime.images import Normalization
    from cerber_model.training import FRESH_NORMALIZATION
    from tests.model.helpers import jittered_weights

    config = BundleConfig(network=NetworkConfig(width=1), normalization=Normalization("background"), name="bg")
    model = make_bundle(config, jittered_weights(config.network))
    save_bundle(model, tmp_path / "bg")
    page = SettingsPage(model)
    qtbot.addWidget(page)
    assert page.config().normalization == FRESH_NORMALIZATION == Normalization("background", block=16, noise_scale=1.5)
    page.start.setCurrentIndex(1)
    assert page.config().start_from == str(tmp_path / "bg")
    assert page.config().normalization == Normalization("background")
