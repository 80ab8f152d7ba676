"""The training wizard: data -> settings -> training (live curves) -> save.

Every long step (inspecting folders, generating synthetic data, training) runs
on a worker thread and reports back through signals; the wizard only reacts.
Training writes into a temporary folder; the model is copied where the user
chooses on the last page (atomically), so nothing is lost or overwritten
without asking. The temporary folders the wizard makes (synthetic data, training
output) are removed when it closes, once its work has stopped; nothing else is.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QRadioButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
    QWizard,
    QWizardPage,
)

from cerber_model.runtime.bundle import BundleError, load_bundle, replace_problem, save_bundle, training_record
from cerber_model.runtime.datasets import DatasetSpec, inspect_dataset
from cerber_model.runtime.images import list_images
from cerber_model.runtime.points import points_beside
from cerber_model.runtime.synthesis import generate_dataset, named_recipe
from cerber_model.training import (
    FRESH_NORMALIZATION,
    TrainingConfig,
    TrainingError,
    estimate_cost,
    train,
)
from cerber_model.training.config import fine_tuning_settings
from cerber_model.training.events import BatchDone, EpochDone, TrainingEvent

from . import workers


class TrainingEvents(QObject):
    """Carries the trainer's events (cerber_model.training.events) from the worker thread to the GUI thread."""

    event = Signal(object)


def _generate(folder: Path, count: int, seed: int, size: int, *, progress, cancel):
    recipe = replace(named_recipe("training"), height=size, width=size)
    generate_dataset(folder, count, seed, recipe, val_fraction=0.2, workers=1, progress=progress, cancel=cancel)
    return DatasetSpec.from_folder(folder)


def _train(config: TrainingConfig, spec: DatasetSpec, out: Path, events: TrainingEvents, *, progress, cancel):
    return train(config, spec, out, callback=events.event.emit, cancel=cancel, overwrite=True)


def _folder_row(layout: QGridLayout, row: int, label: str, edit: QLineEdit, parent: QWidget) -> None:
    layout.addWidget(QLabel(label), row, 0)
    layout.addWidget(edit, row, 1)
    button = QPushButton("Browse…")
    button.clicked.connect(lambda: edit.setText(QFileDialog.getExistingDirectory(parent, label) or edit.text()))
    layout.addWidget(button, row, 2)


class DataPage(QWizardPage):
    def __init__(self, wizard: TrainingWizard):
        super().__init__()
        self.wiz = wizard
        self.setTitle("1. Training data")
        self.setSubTitle("Folders of images and masks (paired by file name), images you annotated, or "
                         "synthetic data.")
        layout = QVBoxLayout(self)
        grid = QGridLayout()
        self.train_images, self.train_masks = QLineEdit(), QLineEdit()
        self.val_images, self.val_masks = QLineEdit(), QLineEdit()
        for i, (label, edit) in enumerate((("Training images", self.train_images),
                                           ("Training masks", self.train_masks),
                                           ("Validation images", self.val_images),
                                           ("Validation masks", self.val_masks))):
            _folder_row(grid, i, label, edit, self)
        layout.addLayout(grid)
        whole = QPushButton("Or choose one data set folder (with train/ and val/, as cerber generate writes)…")
        whole.clicked.connect(self._choose_dataset_folder)
        layout.addWidget(whole)
        self.use_folders = QRadioButton("Validation folders as above")
        self.hold_out = QRadioButton("Hold out a fraction of the training pairs:")
        self.synthetic = QRadioButton("Generate synthetic data:")
        self.annotated = QRadioButton("Fine-tune on my annotated images:")
        self.annotated.setToolTip("A folder of images with the points the app's Annotate mode saves beside "
                                  "them (<name>_points.csv); images without points are left out. The fraction "
                                  "above is held out for validation, and training starts from the open model.")
        self.annotated_folder = QLineEdit()
        self.annotated_folder.setPlaceholderText("folder of images with <name>_points.csv beside them")
        self.use_folders.setChecked(True)
        group = QButtonGroup(self)
        for b in (self.use_folders, self.hold_out, self.synthetic, self.annotated):
            group.addButton(b)
        group.buttonToggled.connect(self._invalidate)
        self.annotated.toggled.connect(lambda on: on and self.wiz.settings_page.fine_tune())
        self.fraction = QDoubleSpinBox(minimum=0.05, maximum=0.5, singleStep=0.05, value=0.2)
        row = QHBoxLayout()
        row.addWidget(self.hold_out)
        row.addWidget(self.fraction)
        row.addStretch()
        layout.addWidget(self.use_folders)
        layout.addLayout(row)
        self.count = QSpinBox(minimum=5, maximum=5000, value=100)
        self.size = QSpinBox(minimum=64, maximum=4096, value=named_recipe("training").height, singleStep=64)
        self.seed = QSpinBox(minimum=0, maximum=2**31 - 1, value=1)
        row = QHBoxLayout()
        row.addWidget(self.synthetic)
        for label, w in (("images", self.count), ("px square", self.size), ("seed", self.seed)):
            row.addWidget(w)
            row.addWidget(QLabel(label))
        row.addStretch()
        layout.addLayout(row)
        row = QHBoxLayout()
        row.addWidget(self.annotated)
        row.addWidget(self.annotated_folder, 1)
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._choose_annotated_folder)
        row.addWidget(browse)
        layout.addLayout(row)
        self.check_button = QPushButton("Check data")
        self.check_button.clicked.connect(self.check)
        self.progress = QProgressBar()
        self.progress.setVisible(False)
        row = QHBoxLayout()
        row.addWidget(self.check_button)
        row.addWidget(self.progress)
        layout.addLayout(row)
        self.report_view = QPlainTextEdit(readOnly=True)
        self.report_view.setPlaceholderText("Press \"Check data\": counts, sizes and every problem by file "
                                            "appear here.")
        layout.addWidget(self.report_view)
        self.report = None
        self.spec: DatasetSpec | None = None
        self.job = None  # generating or checking data, until it has ended
        self.synthetic_folder: Path | None = None  # the temporary folder of the data generated last
        for edit in (self.train_images, self.train_masks, self.val_images, self.val_masks, self.annotated_folder):
            edit.textChanged.connect(self._invalidate)

    def _choose_dataset_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Data set folder (train/images, train/masks, val/...)")
        if folder:
            self.use_dataset_folder(Path(folder))

    def use_dataset_folder(self, folder: Path) -> None:
        """Fill the four folders from FOLDER/train/{images,masks} and FOLDER/val/{images,masks}."""
        for edit, split, kind in ((self.train_images, "train", "images"), (self.train_masks, "train", "masks"),
                                  (self.val_images, "val", "images"), (self.val_masks, "val", "masks")):
            edit.setText(str(folder / split / kind))
        self.use_folders.setChecked(True)

    def _choose_annotated_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Folder of annotated images", self.annotated_folder.text())
        if folder:
            self.use_annotated_folder(Path(folder))

    def use_annotated_folder(self, folder: Path) -> None:
        """Fine-tune on the images in ``folder`` that have points beside them."""
        self.annotated_folder.setText(str(folder))
        self.annotated.setChecked(True)

    def _invalidate(self, *_) -> None:
        self.report = None
        self.completeChanged.emit()

    def current_spec(self) -> DatasetSpec:
        def path(edit):
            return Path(edit.text()) if edit.text().strip() else None

        if self.annotated.isChecked():  # no masks: every image with points pairs, the rest is left out
            return DatasetSpec(path(self.annotated_folder) or Path(""), None, val_fraction=self.fraction.value())
        if self.hold_out.isChecked():
            return DatasetSpec(path(self.train_images) or Path(""), path(self.train_masks) or Path(""),
                               val_fraction=self.fraction.value())
        return DatasetSpec(path(self.train_images) or Path(""), path(self.train_masks) or Path(""),
                           path(self.val_images), path(self.val_masks))

    def check(self) -> None:
        """Inspect the chosen folders (or generate synthetic data first), off the GUI thread."""
        self.check_button.setEnabled(False)
        self.progress.setVisible(True)
        self.report_view.setPlainText("Working…")
        if self.synthetic.isChecked():
            if self.synthetic_folder is not None:  # data generated before are replaced
                self.wiz.remove_temporary_folder(self.synthetic_folder)
            self.synthetic_folder = self.wiz.temporary_folder("cerber-synthetic-")
            job = workers.Worker(_generate, self.synthetic_folder / "data", self.count.value(), self.seed.value(),
                                 self.size.value())
            job.signals.result.connect(self._generated)
            job.signals.progress.connect(lambda d, t: (self.progress.setRange(0, t), self.progress.setValue(d)))
        else:
            self.spec = self.current_spec()
            job = workers.Worker(inspect_dataset, self.spec)
            job.signals.result.connect(self._inspected)
        self._start(job)

    def _start(self, job: workers.Worker) -> None:
        self.job = job
        job.signals.error.connect(self._failed)
        job.signals.cancelled.connect(lambda: self._failed("Cancelled.", ""))
        job.signals.finished.connect(lambda: self._ended(job))
        workers.start(job, workers.Pool.TRAINING)

    def _ended(self, job: workers.Worker) -> None:
        if self.job is job:  # not when generating ended by starting the check of its data
            self.job = None
            self.wiz.work_ended()

    def _generated(self, spec: DatasetSpec) -> None:
        self.train_images.setText(str(spec.train_images))
        self.train_masks.setText(str(spec.train_masks))
        self.val_images.setText(str(spec.val_images))
        self.val_masks.setText(str(spec.val_masks))
        self.use_folders.setChecked(True)
        self.spec = spec
        job = workers.Worker(inspect_dataset, spec)
        job.signals.result.connect(self._inspected)
        self._start(job)

    def _inspected(self, report) -> None:
        self.report = report
        text = report.summary()
        if not report.ok:
            text = "Training cannot start until these are fixed:\n" + text
        else:
            text += "\n\nNo problems found: press Next."
        self.report_view.setPlainText(text)
        self._done()

    def _failed(self, message: str, details: str) -> None:
        self.report_view.setPlainText(f"{message}\n\n{details}")
        self._done()

    def _done(self) -> None:
        self.check_button.setEnabled(True)
        self.progress.setVisible(False)
        self.completeChanged.emit()

    def isComplete(self) -> bool:
        return self.report is not None and self.report.ok


class SettingsPage(QWizardPage):
    """``start_model``: the model open in the main window, offered as a starting point."""

    def __init__(self, start_model=None):
        super().__init__()
        self.setTitle("2. Settings")
        self.setSubTitle("Sensible defaults for spots of SD 1-6 px; the estimate updates as you change them.")
        form = QFormLayout(self)
        d = TrainingConfig()  # the defaults, as in cerber train
        self.width = QSpinBox(minimum=1, maximum=8, value=d.width)
        self.epochs = QSpinBox(minimum=1, maximum=1000, value=d.epochs)
        self.steps = QSpinBox(minimum=0, maximum=10000, value=d.steps_per_epoch)
        low, high = TrainingConfig.AUTO_STEPS
        self.steps.setSpecialValueText(f"from the data ({low}-{high})")  # shown for 0
        self.steps.setToolTip("0: enough batches for a few passes over the training images, so that "
                              "fine-tuning on a few annotated images takes minutes")
        self.patch_size = QSpinBox(minimum=32, maximum=1024, value=d.patch_size, singleStep=32)
        self.batch_size = QSpinBox(minimum=1, maximum=256, value=d.batch_size)
        self.lr = QDoubleSpinBox(decimals=5, minimum=1e-5, maximum=0.1, value=d.learning_rate, singleStep=1e-3)
        self.patience = QSpinBox(minimum=0, maximum=1000, value=d.patience)
        self.xla = QCheckBox("Compile with XLA: about 2x faster, about 1 GiB more memory")
        self.xla.setChecked(d.xla)
        self.start = QComboBox()
        self.start.addItem("fresh random weights", "")
        self.start_width = None
        self.fine_tuning: dict = {}
        if start_model is not None and start_model.path is not None:
            self.start_width = start_model.config.network.width
            # Fine-tuning keeps the inputs and the loss the model learnt with, with fewer epochs and a
            # lower learning rate (as cerber train --start-from does).
            self.fine_tuning = fine_tuning_settings(start_model.config)
            self.start.addItem(f"the open model, {start_model.name} (fine-tune; width {self.start_width})",
                               str(start_model.path))
        self.start.setToolTip("Fine-tuning the open model on a few annotated images of your own needs far "
                              "fewer epochs than training from fresh weights.")
        self.start.currentIndexChanged.connect(self._start_changed)
        form.addRow("Start from", self.start)
        form.addRow("Network width n", self.width)
        form.addRow("Epochs", self.epochs)
        form.addRow("Batches per epoch", self.steps)
        form.addRow("Patch size (px)", self.patch_size)
        form.addRow("Batch size", self.batch_size)
        form.addRow("Learning rate", self.lr)
        form.addRow("Stop after epochs without a better F1 (0 = never)", self.patience)
        form.addRow(self.xla)
        self.estimate = QLabel()
        form.addRow(self.estimate)
        for w in (self.width, self.epochs, self.steps, self.patch_size, self.batch_size):
            w.valueChanged.connect(self._estimate)
        self.xla.toggled.connect(self._estimate)
        self._estimate()

    def config(self) -> TrainingConfig:
        kept = self.fine_tuning if self.start.currentData() else {"normalization": FRESH_NORMALIZATION}
        # The epochs and the learning rate are the boxes' (set from the start model's when it was chosen).
        kept = {key: value for key, value in kept.items() if key not in ("epochs", "learning_rate")}
        return TrainingConfig(width=self.width.value(), epochs=self.epochs.value(),
                              steps_per_epoch=self.steps.value(), patch_size=self.patch_size.value() // 4 * 4,
                              batch_size=self.batch_size.value(), learning_rate=self.lr.value(),
                              patience=self.patience.value(), xla=self.xla.isChecked(),
                              start_from=self.start.currentData(), **kept)

    def _start_changed(self) -> None:
        fine_tune = bool(self.start.currentData())
        d = TrainingConfig()
        if fine_tune:
            self.width.setValue(self.start_width)
        self.epochs.setValue(self.fine_tuning["epochs"] if fine_tune else d.epochs)
        self.lr.setValue(self.fine_tuning["learning_rate"] if fine_tune else d.learning_rate)
        self.width.setEnabled(not fine_tune)

    def initializePage(self) -> None:
        self._estimate()  # the data page's report is known by now

    def fine_tune(self) -> None:
        """Start from the open model, if there is one (what annotated images are for)."""
        if self.start.count() > 1:
            self.start.setCurrentIndex(1)

    def _estimate(self) -> None:
        data = getattr(self.wizard(), "data_page", None)
        report = getattr(data, "report", None)
        pixels = report.train_pixels if report is not None else None
        try:
            self.estimate.setText(estimate_cost(self.config(), pixels).summary())
        except TrainingError as exc:  # settings no run could use: said where the estimate would be
            self.estimate.setText(str(exc))

    def validatePage(self) -> bool:
        try:
            self.config()
        except TrainingError as exc:
            QMessageBox.warning(self, "Settings", str(exc))
            return False
        return True


def _time_left(seconds: float) -> str:
    if seconds < 90:
        return "less than 2 min left"
    if seconds < 5400:
        return f"about {seconds / 60:.0f} min left"
    return f"about {seconds / 3600:.1f} h left"


class TrainingPage(QWizardPage):
    def __init__(self, wizard: TrainingWizard):
        super().__init__()
        self.wiz = wizard
        self.setTitle("3. Training")
        self.setSubTitle("Stop keeps the best model so far; Cancel discards the run.")
        layout = QVBoxLayout(self)
        self.loss_plot = pg.PlotWidget(title="Loss")
        self.loss_plot.addLegend()
        self.loss_plot.setLogMode(y=True)
        self.loss_plot.setLabel("bottom", "epoch")
        self.batch_curve = self.loss_plot.plot(pen=pg.mkPen((150, 150, 150)), name="training (smoothed, per batch)")
        self.train_curve = self.loss_plot.plot(pen=pg.mkPen((60, 120, 230), width=2), symbol="o", name="training")
        self.val_curve = self.loss_plot.plot(pen=pg.mkPen((240, 140, 30), width=2), symbol="o", name="validation")
        self.f1_plot = pg.PlotWidget(title="Validation F1 at 3 px")
        self.f1_plot.setYRange(0, 1)
        self.f1_plot.setLabel("bottom", "epoch")
        self.f1_curve = self.f1_plot.plot(pen=pg.mkPen((40, 170, 80), width=2), symbol="o")
        plots = QHBoxLayout()
        plots.addWidget(self.loss_plot, 2)
        plots.addWidget(self.f1_plot, 1)
        layout.addLayout(plots)
        self.status = QLabel("")
        self.progress = QProgressBar()
        layout.addWidget(self.status)
        layout.addWidget(self.progress)
        buttons = QHBoxLayout()
        self.stop_button = QPushButton("Stop (keep the best)")
        self.cancel_button = QPushButton("Cancel training")
        self.stop_button.clicked.connect(self.stop)
        self.cancel_button.clicked.connect(self.cancel)
        buttons.addWidget(self.stop_button)
        buttons.addWidget(self.cancel_button)
        buttons.addStretch()
        layout.addLayout(buttons)
        self.job = None
        self.bundle = None
        self.out: Path | None = None  # the run's model, in a temporary folder of the wizard's
        self.discard = False
        self.batch_losses: list[float] = []
        self.batch_x: list[float] = []
        self.epochs: list[EpochDone] = []

    def initializePage(self) -> None:
        if self.job is not None:  # one training per wizard: coming back to its page shows it
            return
        self.bundle, self.discard = None, False
        self.batch_losses, self.batch_x, self.epochs = [], [], []
        for curve in (self.batch_curve, self.train_curve, self.val_curve, self.f1_curve):
            curve.setData([], [])
        config = self.wiz.settings_page.config()
        spec = self.wiz.data_page.spec or self.wiz.data_page.current_spec()
        if self.out is not None:  # the previous run's model is not the one to save any more
            self.wiz.remove_temporary_folder(self.out.parent)
        self.out = self.wiz.temporary_folder("cerber-training-") / "model"
        self.events = TrainingEvents()
        self.events.event.connect(self.on_event)
        self.job = workers.Worker(_train, config, spec, self.out, self.events)
        self.job.signals.result.connect(self._finished)
        self.job.signals.error.connect(self._failed)
        self.job.signals.cancelled.connect(self._cancelled)
        self.job.signals.finished.connect(self._ended)
        self.stop_button.setEnabled(True)
        self.cancel_button.setEnabled(True)
        # Back stays disabled while the run goes on: QWizard offers no Back after a commit page.
        # Going back to the settings while they train would let Next start a second run.
        self.wiz.settings_page.setCommitPage(True)
        self.status.setText("Preparing (checking the data, building the network)…")
        workers.start(self.job, workers.Pool.TRAINING)

    @property
    def running(self) -> bool:
        return self.job is not None

    def on_event(self, event: TrainingEvent) -> None:
        if isinstance(event, BatchDone):
            self.batch_losses.append(event.loss)
            self.batch_x.append(event.epoch - 1 + event.batch / event.batches)
            # An exponential moving average shows the trend through the batch-to-batch noise.
            smooth = np.empty(len(self.batch_losses))
            smooth[0] = self.batch_losses[0]
            for i in range(1, len(smooth)):
                smooth[i] = 0.9 * smooth[i - 1] + 0.1 * self.batch_losses[i]
            self.batch_curve.setData(self.batch_x, np.maximum(smooth, 1e-12))
            self.progress.setRange(0, event.batches)
            self.progress.setValue(event.batch)
            self.status.setText(f"Epoch {event.epoch}/{event.epochs}, batch {event.batch}/{event.batches},"
                                f" loss {event.loss:.4g}; {_time_left(event.eta_s)}")
        elif isinstance(event, EpochDone):
            self.epochs.append(event)
            e = [r.epoch for r in self.epochs]
            self.train_curve.setData(e, [max(r.loss, 1e-12) for r in self.epochs])
            self.val_curve.setData(e, [max(r.val_loss, 1e-12) for r in self.epochs])
            self.f1_curve.setData(e, [r.val_f1 for r in self.epochs])

    def stop(self) -> None:
        if self.job:
            self.status.setText("Stopping after this batch; the best model so far is kept…")
            self.job.cancel()

    def cancel(self, ask: bool = True) -> bool:
        if not self.job:
            return True
        if ask and QMessageBox.question(self, "Cancel training", "Stop training and discard this run?") \
                != QMessageBox.Yes:
            return False
        self.discard = True
        self.job.cancel()
        return True

    def _finished(self, bundle) -> None:
        if not self.discard:
            self.bundle = bundle
            self.status.setText(f"Finished: best validation F1 {bundle.config.metrics.get('val_f1', float('nan')):.3f}")

    def _failed(self, message: str, details: str) -> None:
        self.status.setText(f"Training failed: {message}")
        self.wiz.last_error = (message, details)
        box = QMessageBox(QMessageBox.Warning, "Training failed", message, QMessageBox.Ok, self)
        box.setDetailedText(details)
        box.open()

    def _cancelled(self) -> None:
        self.status.setText("Training cancelled.")

    def _ended(self) -> None:
        self.job = None
        self.wiz.settings_page.setCommitPage(False)  # Back again, to change the settings and train anew
        self.stop_button.setEnabled(False)
        self.cancel_button.setEnabled(False)
        if self.discard:
            self.bundle = None
            self.status.setText("Training cancelled; the run was discarded.")
        self.completeChanged.emit()
        self.wiz.work_ended()

    def isComplete(self) -> bool:
        return self.job is None and self.bundle is not None


class FinishPage(QWizardPage):
    def __init__(self, wizard: TrainingWizard):
        super().__init__()
        self.wiz = wizard
        self.setTitle("4. Save the model")
        layout = QVBoxLayout(self)
        self.metrics = QPlainTextEdit(readOnly=True)
        layout.addWidget(self.metrics)
        row = QHBoxLayout()
        self.target = QLineEdit()
        self.target.setPlaceholderText("New folder for the model")
        browse = QPushButton("Choose…")
        browse.clicked.connect(self._choose)
        row.addWidget(self.target)
        row.addWidget(browse)
        layout.addLayout(row)
        self.use_now = QCheckBox("Use this model now")
        self.use_now.setChecked(True)
        layout.addWidget(self.use_now)
        self.target.textChanged.connect(self.completeChanged)

    def initializePage(self) -> None:
        bundle = self.wiz.training_page.bundle
        self.metrics.setPlainText("\n".join(f"{k}: {v}" for k, v in bundle.config.metrics.items())
                                  + f"\nthreshold: {bundle.config.threshold:.2f}"
                                  + f"\nsmallest contrast: {bundle.config.min_contrast:g} noise SDs")

    def _choose(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save the model as a folder", "cerber-model")
        if path:
            self.target.setText(path)

    def isComplete(self) -> bool:
        return bool(self.target.text().strip())

    def validatePage(self) -> bool:
        target = Path(self.target.text().strip())
        overwrite = False
        if problem := replace_problem(target):  # refused before asking whether to replace it
            QMessageBox.warning(self, "Not saved", problem)
            return False
        if target.exists():
            if QMessageBox.question(self, "Replace?", f"{target} exists. Replace it?") != QMessageBox.Yes:
                return False
            overwrite = True
        source = self.wiz.training_page.out
        try:
            bundle = load_bundle(source)
            save_bundle(bundle, target, overwrite=overwrite, extra_files=training_record(source))
        except (BundleError, OSError) as exc:
            QMessageBox.warning(self, "Not saved", str(exc))
            return False
        self.wiz.saved_path = target
        return True


class TrainingWizard(QWizard):
    #: the folder of the saved model, when "use this model now" is ticked
    use_model = Signal(str)

    def __init__(self, parent=None, start_model=None, annotated_folder: Path | None = None):
        """``start_model``: the open model, offered to start from; ``annotated_folder``: the folder of
        the image open in the app, offered for fine-tuning when it holds points files."""
        super().__init__(parent)
        self.setWindowTitle("Train a Cerber model")
        self.resize(900, 700)
        self.saved_path: Path | None = None
        self.last_error = None
        self.temporary_folders: list[Path] = []  # made by this wizard: removed when it has closed
        self.closed = False
        self.data_page = DataPage(self)
        self.settings_page = SettingsPage(start_model)
        self.training_page = TrainingPage(self)
        self.finish_page = FinishPage(self)
        for page in (self.data_page, self.settings_page, self.training_page, self.finish_page):
            self.addPage(page)
        self.finished.connect(self._closed)
        if annotated_folder is not None and any(points_beside(p).is_file() for p in list_images(annotated_folder)):
            self.data_page.use_annotated_folder(annotated_folder)

    def _closed(self, result: int) -> None:
        if result == QWizard.Accepted and self.saved_path and self.finish_page.use_now.isChecked():
            self.use_model.emit(str(self.saved_path))
        self.closed = True
        if self.data_page.job is not None:  # generating data nobody will use
            self.data_page.job.cancel()
        self.work_ended()

    # -- its temporary folders --------------------------------------------------------
    def temporary_folder(self, prefix: str) -> Path:
        """A new, empty folder in the system's temporary folder, removed when the wizard has closed."""
        folder = Path(tempfile.mkdtemp(prefix=prefix))
        self.temporary_folders.append(folder)
        return folder

    def remove_temporary_folder(self, folder: Path) -> None:
        """Remove ``folder`` if this wizard made it (anything else stays as it is)."""
        if folder in self.temporary_folders:
            self.temporary_folders.remove(folder)
            shutil.rmtree(folder, ignore_errors=True)

    @property
    def working(self) -> bool:
        """Whether work of the wizard's (generating or checking data, training) is still going on."""
        return self.data_page.job is not None or self.training_page.running

    def work_ended(self) -> None:
        """A job ended: once the wizard has closed and nothing writes into them, its folders go."""
        if self.closed and not self.working:
            for folder in list(self.temporary_folders):
                self.remove_temporary_folder(folder)

    def clean_up(self, msecs: int = 10000) -> None:
        """When the app quits (no events are handled after): wait up to ``msecs`` for the wizard's
        cancelled work to stop, then remove its temporary folders."""
        workers.wait_all(msecs, kinds=(workers.Pool.TRAINING,))
        for folder in list(self.temporary_folders):
            self.remove_temporary_folder(folder)

    def reject(self) -> None:
        if self.training_page.running and not self.training_page.cancel(ask=True):
            return
        super().reject()
