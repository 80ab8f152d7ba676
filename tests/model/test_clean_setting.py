"""scripts/clean_setting.py, the last step of `make model`: its per-image candidates on a small image
(the whole script takes minutes of network time)."""

import numpy as np

from cerber_model.runtime.bundle import load_model
from tests.model.helpers import gaussian_spots, load_script


def test_a_clean_image_gets_candidates_at_every_setting_tried():
    script = load_script("scripts/clean_setting.py")
    rng = np.random.default_rng(1)
    shape = (320, 320)
    centres = rng.uniform(30, 290, (12, 2))
    image = (100 + 60 * gaussian_spots(shape, centres, sigma=1.8) + rng.normal(0, 5, shape)).astype(np.uint16)
    candidates = script.Candidates(load_model("default"), image, 30.0)
    assert candidates.clean  # camera noise: no texture
    assert set(candidates.centres) == {(t, c) for t in script.THRESHOLDS for c in script.CONTRASTS}
    found = candidates.at((0.30, 5.5))
    assert len(found) == len(centres)
    nearest = np.hypot(*(found[:, None, :] - centres[None, :, :]).transpose(2, 0, 1)).min(axis=1)
    assert nearest.max() < 1.0
