"""Fine-tuning the open model on images annotated in the app, through the training wizard,
walked as a user would (offscreen)."""

import numpy as np
import pytest
import tifffile

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from PySide6.QtWidgets import QMessageBox, QWizard  # noqa: E402

from cerber_gui.main_window import MainWindow  # noqa: E402
from cerber_gui.settings import Settings  # noqa: E402
from cerber_model.runtime.points import Points, write_points  # noqa: E402
from cerber_model.training import TrainingConfig  # noqa: E402
from cerber_model.training.config import fine_tuning_settings  # noqa: E402
from tests.gui.helpers import menu_action as _menu_action  # noqa: E402
from tests.gui.helpers import open_and_wait  # noqa: E402

from .test_training_wizard import _check  # noqa: E402

SHAPE = (64, 64)


def annotated_folder(folder, annotated: int, plain: int):
    """``annotated`` images with two spots each and their points beside them, then ``plain``
    images without points; returns the image paths."""
    folder.mkdir()
    rng = np.random.default_rng(3)
    rr, cc = np.indices(SHAPE)
    paths = []
    for i in range(annotated + plain):
        centres = rng.uniform(10, 54, (2, 2))
        data = 400 + rng.normal(0, 30, SHAPE)
        for r, c in centres:
            data += 2000 * np.exp(-0.5 * ((rr - r) ** 2 + (cc - c) ** 2) / 2.0**2)
        path = folder / f"img{i}.tif"
        tifffile.imwrite(path, data.astype(np.uint16))
        if i < annotated:
            write_points(Points.of(centres), folder / f"img{i}_points.csv")
        paths.append(path)
    return paths


def open_window(qtbot, bundle, tmp_path, images):
    window = MainWindow(bundle, Settings.in_file(tmp_path / "settings.ini"))
    qtbot.addWidget(window)
    window.show()
    open_and_wait(qtbot, window, images)
    return window


def test_the_wizard_offers_the_open_images_for_fine_tuning_and_reports_them(qtbot, bundle, tmp_path, monkeypatch):
    images = annotated_folder(tmp_path / "mine", annotated=4, plain=1)
    window = open_window(qtbot, bundle, tmp_path, [tmp_path / "mine"])
    # The user marks a spot on the image without points and opens the wizard: it asks to save first.
    window.image_list.setCurrentRow(4)
    window.annotate(True)
    window.session.annotations.click(30, 30)
    asked = []
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: asked.append(a[2]) or QMessageBox.Save)
    _menu_action(window, "&Model", "&Train a model…").trigger()
    assert asked == ["The points for img4_points.csv are not saved. Save them?"]
    wizard = window.wizard
    page = wizard.data_page
    assert page.annotated.isChecked() and page.annotated_folder.text() == str(images[0].parent.resolve())
    assert wizard.settings_page.config().start_from == str(bundle.path)  # fine-tuning the open model
    # One image without points: it is left out, and the report says which.
    (tmp_path / "mine" / "img4_points.csv").unlink()
    _check(qtbot, wizard)
    report = page.report_view.toPlainText()
    assert wizard.button(QWizard.NextButton).isEnabled(), report
    assert "training pairs: 3, validation pairs: 1" in report
    assert "annotated points: 8" in report and "left out, neither mask nor points: img4.tif" in report
    assert page.spec.train_masks is None and page.spec.val_images is None and page.spec.val_fraction == 0.2
    wizard.next()
    s = wizard.settings_page
    assert s.config().start_from == str(bundle.path) and not s.width.isEnabled()
    # Fine-tuning settings: the open model's inputs and loss, a few epochs at a lower rate.
    tuned = fine_tuning_settings(bundle.config)
    config = s.config()
    assert (s.epochs.value(), s.lr.value()) == (tuned["epochs"], tuned["learning_rate"]) == (3, 1e-3)
    assert (config.epochs, config.learning_rate, config.normalization) == (3, 1e-3, bundle.config.normalization)
    assert all(getattr(config, key) == tuned[key] for key in ("focal_gamma", "focal_alpha") if key in tuned)
    s.start.setCurrentIndex(0)  # fresh weights again: the fresh defaults
    assert (s.config().epochs, s.config().learning_rate) == (TrainingConfig().epochs, TrainingConfig().learning_rate)
    s.start.setCurrentIndex(1)
    # A bad points file is named with its line, and Next stays disabled.
    wizard.back()
    (tmp_path / "mine" / "img1_points.csv").write_text("row,col\n10,10\n99,10\n")
    _check(qtbot, wizard)
    assert not wizard.button(QWizard.NextButton).isEnabled()
    assert "img1_points.csv: line 3: (99, 10) is outside the 64 x 64 px image" in page.report_view.toPlainText()


def test_without_annotated_images_the_wizard_starts_as_before(qtbot, bundle, tmp_path):
    images = annotated_folder(tmp_path / "plain", annotated=0, plain=2)
    window = open_window(qtbot, bundle, tmp_path, images)
    wizard = window.open_training_wizard()
    page = wizard.data_page
    assert page.use_folders.isChecked() and not page.annotated.isChecked()
    assert wizard.settings_page.config().start_from == ""
    page.use_annotated_folder(tmp_path / "plain")  # chosen anyway: the report says what to do
    _check(qtbot, wizard)
    assert not wizard.button(QWizard.NextButton).isEnabled()
    assert "no image has a mask or points: annotate some" in page.report_view.toPlainText()


@pytest.mark.slow
def test_fine_tune_the_open_model_on_annotated_images(qtbot, bundle, tmp_path):
    annotated_folder(tmp_path / "mine", annotated=4, plain=1)
    window = open_window(qtbot, bundle, tmp_path, [tmp_path / "mine"])
    wizard = window.open_training_wizard()
    _check(qtbot, wizard)
    assert wizard.button(QWizard.NextButton).isEnabled(), wizard.data_page.report_view.toPlainText()
    wizard.next()
    s = wizard.settings_page
    s.epochs.setValue(1)
    s.steps.setValue(2)
    s.patch_size.setValue(32)
    s.batch_size.setValue(2)
    wizard.next()
    t = wizard.training_page
    qtbot.waitUntil(lambda: t.isComplete(), timeout=300000)
    provenance = t.bundle.config.provenance
    assert provenance["training"]["start_from"] == str(bundle.path)
    assert provenance["data"] == str((tmp_path / "mine").resolve())
    assert t.bundle.config.network.width == bundle.config.network.width
