"""The steps around Keras' fit, each with a stand-in model: fast, no TensorFlow."""

import numpy as np
from PIL import Image as PILImage

from cerber_model.runtime.datasets import DatasetSpec, inspect_dataset
from cerber_model.training import TrainingConfig, loop


def _blobs(shape, centres, sd=1.5):
    rr, cc = np.indices(shape)
    return sum(np.exp(-0.5 * ((rr - r) ** 2 + (cc - c) ** 2) / sd**2) for r, c in centres)


def _write_pair(root, name, shown, true):
    """An image showing spots at ``shown`` and a mask marking the tracks at ``true``."""
    for kind, data in (("images", np.clip(_blobs((64, 64), shown), 0, 1) * 255),
                       ("masks", (_blobs((64, 64), true) > 0.5) * 255)):
        (root / kind).mkdir(parents=True, exist_ok=True)
        PILImage.fromarray(data.astype(np.uint8)).save(root / kind / f"{name}.png")


class ImageAsProbability:
    """An engine whose probability map is the (normalised) image itself."""

    name = "identity"

    def predict(self, x):
        return np.clip(x, 0, 1).astype(np.float32)


def test_validation_sums_matches_over_images(tmp_path, monkeypatch):
    """F1, precision and recall count matches over all validation images together (not a mean of
    per-image scores): 3 found + 1 false in one image, 1 of 2 found in the other is P = R = F1 = 4/5."""
    a = [(16, 16), (16, 44), (44, 30)]
    _write_pair(tmp_path / "val", "a", shown=[*a, (50, 50)], true=a)
    _write_pair(tmp_path / "val", "b", shown=[(20, 20)], true=[(20, 20), (44, 44)])
    _write_pair(tmp_path / "train", "a", shown=a, true=a)
    report = inspect_dataset(DatasetSpec.from_folder(tmp_path))
    assert report.ok, report.summary()
    monkeypatch.setattr(loop, "_shipping_engine", lambda model, config: ImageAsProbability())
    metrics = loop.validate_objects(None, report, TrainingConfig(min_area_px=1))
    assert metrics["val_images"] == 2
    assert (metrics["precision"], metrics["recall"]) == (0.8, 0.8)
    assert abs(metrics["f1"] - 0.8) < 1e-12
    assert metrics["threshold"] == 0.5  # F1 is the same over a range of thresholds: the one nearest 0.5
    assert 0 < metrics["pixel_iou"] < 1
