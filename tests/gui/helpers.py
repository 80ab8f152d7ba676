"""What the GUI tests share: images of Gaussian spots at known places, and doing what a user
does (open files and wait until they are read, click Analyze, find a menu entry)."""

import numpy as np
from PySide6.QtCore import QPointF, Qt

#: Size of the test images (rows, columns).
SHAPE = (200, 220)


def gaussian_spots(centres, amplitudes, sigma=2.5) -> np.ndarray:
    rr, cc = np.indices(SHAPE, dtype=np.float64)
    return sum(a * np.exp(-0.5 * ((rr - r) ** 2 + (cc - c) ** 2) / sigma**2)
               for (r, c), a in zip(centres, amplitudes, strict=True))


def spot_grid(rows: int, cols: int, rng) -> np.ndarray:
    """(row, col) centres on a grid, jittered by up to 3 px: well apart, never on pixel centres only."""
    r, c = np.meshgrid(np.arange(rows) * 45 + 30, np.arange(cols) * 48 + 30, indexing="ij")
    return np.c_[r.ravel(), c.ravel()] + rng.uniform(-3, 3, (rows * cols, 2))


def new_window(qtbot, bundle, tmp_path):
    """A main window with its own settings file under ``tmp_path``, shown and exposed: what a
    user gets on starting the app (again, with the same settings, when called twice)."""
    from cerber_gui.main_window import MainWindow
    from cerber_gui.settings import Settings

    window = MainWindow(bundle, Settings.in_file(tmp_path / "settings.ini"))
    qtbot.addWidget(window)
    window.show()
    qtbot.waitExposed(window)
    return window


def open_and_wait(qtbot, window, paths):
    """Open images as File > Open does, and wait until they are read; the Open's report."""
    with qtbot.waitSignal(window.images_opened, timeout=30000) as blocker:
        window.open_paths(paths)
    return blocker.args[0]


def analyze_clicked(qtbot, window):
    with qtbot.waitSignal(window.analysis_shown, timeout=60000):
        qtbot.mouseClick(window.toolbar.analyze_button, Qt.LeftButton)


def menu_action(window, menu: str, text: str):
    top = next(a for a in window.menuBar().actions() if a.text() == menu)
    return next(a for a in top.menu().actions() if a.text() == text)


def click_image(qtbot, window, row: float, col: float, pane: str = "left", modifier=Qt.NoModifier,
                double: bool = False) -> float:
    """Click the view at image coordinates (row, col), mapped through the view's transform as a
    user's pointer would be (``double``: a double click, which Qt delivers as a click, then a double
    click and a release); returns how far apart (image px) two screen pixels there are."""
    viewer = window.viewer
    view, box = (viewer.left, viewer.left_box) if pane == "left" else (viewer.right, viewer.right_box)
    pos = view.mapFromScene(box.mapViewToScene(QPointF(col, row)))
    qtbot.mouseClick(view.viewport(), Qt.LeftButton, modifier, pos)
    if double:
        qtbot.mouseDClick(view.viewport(), Qt.LeftButton, modifier, pos)
        qtbot.mouseRelease(view.viewport(), Qt.LeftButton, modifier, pos)
    return float(max(box.viewPixelSize()))
