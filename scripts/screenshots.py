"""Screenshots of the real app for the README: the main window after Analyze.

Run under a virtual screen to see the app as a user would:
    xvfb-run -s "-screen 0 1600x1000x24" .venv/bin/python scripts/screenshots.py
(without a display it falls back to Qt's offscreen platform). Writes PNGs to
docs/screenshots/.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
if not os.environ.get("DISPLAY"):
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


def main() -> int:
    from PySide6.QtCore import QSettings, QTimer
    from PySide6.QtWidgets import QApplication

    from cerber_gui.main_window import MainWindow
    from cerber_model.bundle import load_bundle, load_default_bundle

    out = ROOT / "docs" / "screenshots"
    out.mkdir(parents=True, exist_ok=True)
    app = QApplication.instance() or QApplication([])
    bundle = load_bundle(sys.argv[1]) if len(sys.argv) > 1 else load_default_bundle()
    settings = QSettings(str(out / ".screenshots.ini"), QSettings.IniFormat)
    window = MainWindow(bundle, settings)
    window.resize(1600, 950)
    window.show()
    window.open_paths([ROOT / "assets" / "samples" / "img_hybiss_2d.tif"])
    shots = []

    def shown(_path):
        def grab():
            target = out / "main_window.png"
            window.grab().save(str(target))
            shots.append(target)
            window.track_panel.table.selectRow(0)
            index = window.track_panel.table.model().index(0, 0)
            if index.isValid():
                window.track_panel._clicked(index)
            target = out / "main_window_zoomed.png"
            QTimer.singleShot(300, lambda: (window.grab().save(str(target)), shots.append(target), app.quit()))

        QTimer.singleShot(500, grab)

    window.analysis_shown.connect(shown)
    QTimer.singleShot(300, window.analyze_current)
    QTimer.singleShot(120_000, app.quit)
    app.exec()
    settings_file = out / ".screenshots.ini"
    if settings_file.exists():
        settings_file.unlink()
    for shot in shots:
        print(f"wrote {shot}")
    return 0 if shots else 1


if __name__ == "__main__":
    sys.exit(main())
