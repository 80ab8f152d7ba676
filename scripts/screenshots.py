"""Screenshots of the real app for the README: the main window after Analyze, annotation
mode (the sample's own points, as saved beside it), regions mode with the fluence and the
spectra, and every page of the training wizard.

Run under a virtual screen to see the app as a user would:
    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python scripts/screenshots.py [MODEL] [--only GROUP...]
(without a display it falls back to Qt's offscreen platform). Writes PNGs to
docs/screenshots/. GROUP is main (main window and annotation mode), regions or wizard; all by
default. The wizard pages train a tiny model on a small synthetic set for two short epochs, so
the loss plot has real points. The regions shots work on copies of the samples in a temporary
folder, so no regions file is written beside the samples.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
if not os.environ.get("DISPLAY"):
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


def main() -> int:
    from PySide6.QtWidgets import QApplication

    from cerber_gui.main_window import MainWindow
    from cerber_gui.settings import Settings
    from cerber_model.runtime.bundle import load_bundle, load_default_bundle

    out = ROOT / "docs" / "screenshots"
    out.mkdir(parents=True, exist_ok=True)
    app = QApplication.instance() or QApplication([])
    shots: list[Path] = []

    def wait_until(condition, timeout: float, what: str) -> None:
        end = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > end:
                raise TimeoutError(f"gave up waiting for {what}")
            app.processEvents()
            time.sleep(0.02)

    def settle(seconds: float = 0.5) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            app.processEvents()
            time.sleep(0.02)

    def grab(widget, name: str) -> None:
        settle()
        target = out / name
        widget.grab().save(str(target))
        shots.append(target)

    args = sys.argv[1:]
    groups = set(args[args.index("--only") + 1:]) if "--only" in args else {"main", "regions", "wizard"}
    models = args[:args.index("--only")] if "--only" in args else args
    bundle = load_bundle(models[0]) if models else load_default_bundle()
    if "regions" in groups:
        with tempfile.TemporaryDirectory() as tmp:
            regions_shots(bundle, Path(tmp), app, wait_until, grab)
    if not groups & {"main", "wizard"}:
        for shot in shots:
            print(f"wrote {shot}")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        window = MainWindow(bundle, Settings.in_file(Path(tmp) / "screenshots.ini"))
        window.resize(1600, 950)
        window.show()
        window.open_paths([ROOT / "assets" / "samples" / "img_hybiss_2d.tif"])
        wait_until(lambda: window.session.selected is not None, 60, "the image to be read")
        shown = []
        window.analysis_shown.connect(shown.append)
        window.toolbar.analyze_button.click()  # what the user clicks
        wait_until(lambda: shown, 300, "the analysis")
        if "main" not in groups:
            wizard_shots(window, Path(tmp), wait_until, grab)
            window.close()
            for shot in shots:
                print(f"wrote {shot}")
            return 0
        grab(window, "main_window.png")
        index = window.track_panel.table.model().index(0, 0)
        if index.isValid():
            window.track_panel.table.selectRow(0)
            window.track_panel._clicked(index)
        grab(window, "main_window_zoomed.png")
        window.toolbar.annotate_button.click()  # reads img_hybiss_2d_points.csv; nothing is changed or saved
        wait_until(lambda: window.session.annotating, 10, "annotation mode")
        window.viewer.centre_on(300, 300, size=160)
        grab(window, "annotation_mode.png")
        window.toolbar.annotate_button.click()
        if "wizard" in groups:
            wizard_shots(window, Path(tmp), wait_until, grab)
        window.close()
    for shot in shots:
        print(f"wrote {shot}")
    return 0


def regions_shots(bundle, tmp: Path, app, wait_until, grab) -> None:
    """Regions mode on a copy of each sample: an include polygon and an exclusion drawn on the first,
    both analyzed (so the pooled line shows), the Tracks tab with the fluence, then the Spectra tab."""
    from cerber_gui.main_window import MainWindow
    from cerber_gui.settings import Settings

    copies = []
    for name in ("img_hybiss_2d.tif", "img_terra_2d.tif"):
        copies.append(tmp / name)
        shutil.copy(ROOT / "assets" / "samples" / name, copies[-1])
    window = MainWindow(bundle, Settings.in_file(tmp / "screenshots.ini"))
    window.resize(1600, 950)
    window.show()
    window.open_paths(copies)
    wait_until(lambda: len(window.session.images) == 2, 60, "the images to be read")
    window.toolbar.pixel_size.setValue(0.2)  # as a user types it: the samples' files give none
    window.menu_bar.analyze_all_action.trigger()
    wait_until(lambda: not window.session.busy and len(window.session.results) == 2, 600, "the analyses")
    window.image_list.setCurrentRow(0)
    wait_until(lambda: all(window.session.tracks_current(p) for p in window.session.results), 60, "re-tracking")
    window.toolbar.regions_button.click()
    session = window.session
    for row, col in [(20, 20), (15, 300), (60, 490), (330, 495), (495, 380), (490, 25)]:
        session.region_click(row, col)  # what clicks on the input view do
    window.finish_polygon()
    session.set_region_kind("exclude")
    for row, col in [(200, 150), (190, 260), (290, 270), (300, 160)]:
        session.region_click(row, col)
    window.finish_polygon()
    session.set_region_kind("include")
    for row, col in [(380, 330), (420, 430), (470, 300)]:  # a polygon being drawn
        session.region_click(row, col)
    grab(window, "regions_mode.png")
    window.spectra_dock.raise_()
    window.spectra_panel.scope_box.setCurrentIndex(1)  # pooled over both images
    grab(window, "spectra.png")
    window.session.draw_regions(False)
    window.close()


def wizard_shots(window, tmp: Path, wait_until, grab) -> None:
    from cerber_model.runtime.synthesis import Recipe, generate_dataset

    recipe = Recipe(height=256, width=256, tracks=(5, 15))
    data = generate_dataset(tmp / "data", 8, seed=3, recipe=recipe, val_fraction=0.25, workers=1)
    wizard = window.open_training_wizard()
    wizard.resize(1000, 720)
    page = wizard.data_page
    page.use_dataset_folder(data)
    page.check()
    wait_until(lambda: page.isComplete(), 120, "the data check")
    grab(wizard, "wizard_1_data.png")
    wizard.next()
    s = wizard.settings_page
    s.start.setCurrentIndex(0)  # fresh weights (the samples' points made the wizard offer fine-tuning)
    s.width.setValue(1)
    s.epochs.setValue(3)
    s.steps.setValue(15)
    s.patch_size.setValue(64)
    s.batch_size.setValue(4)
    grab(wizard, "wizard_2_settings.png")
    wizard.next()
    t = wizard.training_page
    wait_until(lambda: len(t.epochs) >= 2 or not t.running, 600, "two epochs of training")
    if len(t.epochs) < 2:
        raise RuntimeError(f"training ended early: {t.status.text()}")
    grab(wizard, "wizard_3_training.png")
    wait_until(lambda: t.isComplete(), 600, "the end of training")
    wizard.next()
    wizard.finish_page.target.setText(str(tmp / "my-model"))
    grab(wizard, "wizard_4_finish.png")
    wizard.reject()


if __name__ == "__main__":
    sys.exit(main())
