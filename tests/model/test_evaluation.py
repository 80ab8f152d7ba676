"""Point matching and the LoG baseline."""

import numpy as np

from cerber_model.runtime.evaluation import log_detect, match_points
from tests.model.helpers import gaussian_spots


def test_matching_is_one_to_one_within_the_radius():
    truth = np.array([[10, 10], [20, 20], [30, 30]])
    found = np.array([[10.5, 10], [11, 10], [20, 22.9], [50, 50]])
    m = match_points(found, truth, radius=3)
    assert (m.tp, m.fp, m.fn) == (2, 2, 1)
    assert m.precision == 0.5 and m.recall == 2 / 3
    assert match_points(np.zeros((0, 2)), truth).fn == 3
    assert match_points(found, np.zeros((0, 2))).fp == 4


def test_log_finds_clean_spots():
    rng = np.random.default_rng(0)
    truth = np.array([[20, 20], [20, 60], [60, 40], [45, 80]], float)
    image = 100 + 500 * gaussian_spots((90, 100), truth, sigma=2.0) + rng.normal(0, 5, (90, 100))
    found = log_detect(image.astype(np.float32), sigma=2.0, threshold=0.05)
    assert match_points(found, truth, 3).f1 == 1.0


def test_evaluate_command_reports_network_and_baseline(tmp_path, capsys):
    from cerber_model.cli import main
    from cerber_model.runtime.bundle import save_bundle
    from cerber_model.runtime.synthesis import Recipe, generate_dataset
    from tests.model.helpers import tiny_bundle

    recipe = Recipe(height=64, width=64, tracks=(3, 5), snr=(6, 8), inhomogeneity_sd=(10, 30), vignette_sd=(40, 60))
    data = generate_dataset(tmp_path / "data", 3, seed=2, recipe=recipe, val_fraction=0.67, workers=1)
    model = save_bundle(tiny_bundle(width=1), tmp_path / "model")
    assert main(["evaluate", str(model), str(data), "--quiet"]) == 0
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.startswith("OVERALL")]
    assert [line.split()[1] for line in lines] == ["cerber", "LoG"]
    assert float(lines[1].split()[4]) > 0.8  # LoG finds clean, bright spots
    assert "synth_00001" in out and "synth_00002" in out and "LoG tuned" in out
