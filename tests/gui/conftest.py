"""Fixtures of the GUI tests: the default model, a main window, an image of spots."""

import numpy as np
import pytest
import tifffile

from cerber_model.runtime.bundle import load_default_bundle


@pytest.fixture(scope="session")
def bundle():
    return load_default_bundle()


@pytest.fixture
def window(qtbot, bundle, tmp_path):
    from cerber_gui.main_window import MainWindow
    from cerber_gui.settings import Settings

    w = MainWindow(bundle, Settings.in_file(tmp_path / "settings.ini"))
    qtbot.addWidget(w)
    w.show()
    return w


@pytest.fixture
def spots(tmp_path):
    """A 16-bit image with 12 bright Gaussian spots (SD 2.5 px, SNR 100): the file and the true centres."""
    from tests.gui.helpers import SHAPE, gaussian_spots, spot_grid

    rng = np.random.default_rng(0)
    centres = spot_grid(3, 4, rng)
    data = gaussian_spots(centres, [3000] * len(centres)) + 400 + rng.normal(0, 30, SHAPE)
    path = tmp_path / "spots.tif"
    tifffile.imwrite(path, data.clip(0, 65535).astype(np.uint16))
    return path, centres
