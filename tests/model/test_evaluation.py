"""Point matching and the LoG baseline."""

import numpy as np

from cerber_model.runtime.bundle import default_bundle_path
from cerber_model.runtime.evaluation import CONTRASTS, Match, log_detect, match_points
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


def _threshold_tables(out: str) -> tuple[list[list[str]], list[list[str]], float]:
    """``cerber threshold``'s two tables (best threshold per smallest contrast; every threshold
    at the chosen contrast), split into words, and the chosen contrast."""
    lines = out.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("at smallest contrast"))
    contrasts = [line.split() for line in lines[1:at]] if lines[0].lstrip().startswith("contrast") else []
    rows = [line.split() for line in lines[at + 2:] if line.strip() and not line.startswith("model with")]
    return contrasts, rows, float(lines[at].split()[-1].rstrip(":"))


def test_threshold_command_scores_every_threshold_and_saves_a_copy_with_the_best(tmp_path, capsys):
    from dataclasses import replace

    from cerber_model.cli import main
    from cerber_model.runtime.bundle import load_bundle, save_bundle
    from cerber_model.runtime.images import Normalization
    from cerber_model.runtime.synthesis import Recipe, generate_dataset
    from tests.model.helpers import tiny_bundle

    recipe = Recipe(height=96, width=96, tracks=(4, 6), snr=(6, 8), inhomogeneity_sd=(10, 30), vignette_sd=(40, 60))
    data = generate_dataset(tmp_path / "data", 3, seed=3, recipe=recipe, val_fraction=0.67, workers=1)
    assert main(["threshold", "default", str(data), "--quiet"]) == 0
    contrasts, rows, chosen = _threshold_tables(capsys.readouterr().out)
    assert [float(r[0]) for r in contrasts] == list(CONTRASTS)
    assert [float(r[0]) for r in rows] == [round(0.1 + 0.05 * i, 2) for i in range(17)]
    best = [r for r in rows if "<-" in r]
    assert len(best) == 1 and float(best[0][3]) == max(float(r[3]) for r in rows) > 0.8  # clean spots found
    # The chosen contrast's F1 is the best over all contrasts, and its threshold row says so.
    assert float(best[0][3]) == max(float(r[2]) for r in contrasts)
    assert [float(r[0]) for r in contrasts if "<-" in r] == [chosen]

    # A model in noise units, saved again with another block and the best threshold; never changed itself.
    tiny = tiny_bundle(width=1, threshold=0.5)
    model = save_bundle(replace(tiny, config=replace(tiny.config, normalization=Normalization("background", block=32))),
                        tmp_path / "model")
    (model / "history.csv").write_text("epoch,loss\n1,0.5\n")  # the record of the training that made it
    before = (model / "config.json").read_bytes()
    assert main(["threshold", str(model), str(data), "--background-block", "16", "--out", str(tmp_path / "new"),
                 "--quiet"]) == 0
    assert (tmp_path / "new" / "history.csv").read_text() == "epoch,loss\n1,0.5\n"  # the copy carries it
    _, rows, contrast = _threshold_tables(capsys.readouterr().out)
    chosen = next(float(r[0]) for r in rows if "<-" in r)
    saved = load_bundle(tmp_path / "new").config
    assert saved.threshold == chosen and saved.normalization == Normalization("background", block=16)
    assert saved.min_contrast == contrast
    assert (model / "config.json").read_bytes() == before
    # Refused: an existing output, a block for a percentile model, a block too small.
    assert main(["threshold", str(model), str(data), "--out", str(tmp_path / "new"), "--quiet"]) != 0
    assert "already exists" in capsys.readouterr().err
    (tmp_path / "new" / "MODEL_CARD.md").write_text("mine")
    (tmp_path / "new" / "history.csv").write_text("epoch,loss\n9,0.1\n")  # another training's record
    assert main(["threshold", str(model), str(data), "--out", str(tmp_path / "new"), "--overwrite", "--quiet"]) == 0
    assert load_bundle(tmp_path / "new").config.normalization.block == 32  # as the model's own
    assert (tmp_path / "new" / "MODEL_CARD.md").read_text() == "mine"
    assert (tmp_path / "new" / "history.csv").read_text() == "epoch,loss\n1,0.5\n"  # the weights' own record
    # Scored with tracks that grow, and saved with that setting; a fraction outside 0..1 is refused.
    assert load_bundle(tmp_path / "new").config.grow_to is None
    assert main(["threshold", str(model), str(data), "--grow-to", "0.667", "--out", str(tmp_path / "grown"),
                 "--quiet"]) == 0
    assert load_bundle(tmp_path / "grown").config.grow_to == 0.667
    capsys.readouterr()
    assert main(["threshold", str(model), str(data), "--grow-to", "1.5", "--quiet"]) != 0
    assert "--grow-to must be a fraction of the threshold between 0 and 1" in capsys.readouterr().err
    v1 = str(default_bundle_path().parent / "v1")  # inputs in percentiles
    assert main(["threshold", v1, str(data), "--background-block", "16", "--quiet"]) != 0
    assert "--background-block goes with the background normalisation" in capsys.readouterr().err
    assert main(["threshold", str(model), str(data), "--background-block", "4", "--quiet"]) != 0
    assert "at least 8 px" in capsys.readouterr().err
    # The noise scale is saved the same way, and refused where the block is.
    assert main(["threshold", str(model), str(data), "--noise-scale", "1.5", "--out", str(tmp_path / "scaled"),
                 "--quiet"]) == 0
    scaled = load_bundle(tmp_path / "scaled").config.normalization
    assert scaled == Normalization("background", block=32, noise_scale=1.5)
    assert main(["threshold", v1, str(data), "--noise-scale", "1.5", "--quiet"]) != 0
    assert "--noise-scale goes with the background normalisation" in capsys.readouterr().err
    # A fixed smallest contrast: scored and saved as given, no table of contrasts; a negative one refused.
    assert main(["threshold", str(model), str(data), "--min-contrast", "7", "--out", str(tmp_path / "fixed"),
                 "--quiet"]) == 0
    contrasts, _, chosen = _threshold_tables(capsys.readouterr().out)
    assert contrasts == [] and chosen == 7.0 and load_bundle(tmp_path / "fixed").config.min_contrast == 7.0
    assert main(["threshold", str(model), str(data), "--min-contrast", "-1", "--quiet"]) != 0
    assert "--min-contrast must be from 0 to 100 noise SDs, got -1" in capsys.readouterr().err


def test_a_setting_fitted_to_marked_spots_finds_the_faint_ones_and_stays_where_nothing_is_better():
    """Spots from barely visible to clear on noise: the model's own setting misses the faint ones;
    the setting fitted to every spot's mark finds more, as a fresh analysis at it does."""
    import pytest

    from cerber_model.runtime.analysis import analyze
    from cerber_model.runtime.bundle import load_bundle
    from cerber_model.runtime.evaluation import FIT_THRESHOLDS, MarkedImage, SettingFit, fit_setting
    from cerber_model.runtime.images import Image

    bundle = load_bundle(default_bundle_path())
    rng = np.random.default_rng(1)
    r, c = np.meshgrid(np.arange(4) * 45 + 30, np.arange(4) * 48 + 30, indexing="ij")
    truth = np.c_[r.ravel(), c.ravel()] + rng.uniform(-3, 3, (16, 2))
    data = np.zeros((200, 220))
    for (row, col), amplitude in zip(truth, np.linspace(20, 160, 16), strict=True):
        data += amplitude * gaussian_spots(data.shape, [(row, col)], sigma=1.5)
    image = Image((data + 400 + rng.normal(0, 20, data.shape)).clip(0, 65535).astype(np.uint16))
    result = analyze(image, bundle)
    own = (bundle.config.threshold, bundle.config.min_contrast)
    current = np.c_[result.tracks.columns["row"], result.tracks.columns["col"]]

    def fitted(*points, skip=None, progress=None, regions=None) -> SettingFit:
        marked = [MarkedImage(result.probability, image.data, result.contrast, p, current, regions) for p in points]
        return fit_setting(marked, *own, min_area_px=bundle.config.min_area_px, grow_to=bundle.config.grow_to,
                           skip=skip, progress=progress)

    fit = fitted(truth)
    assert fit.changed and fit.match.f1 > fit.before.f1 == match_points(current, truth).f1
    again = analyze(image, bundle, threshold=fit.threshold, min_contrast=fit.min_contrast).tracks
    assert match_points(np.c_[again.columns["row"], again.columns["col"]], truth) == fit.match
    # Marks where the tracks are now: no setting matches them better, so the setting in use stays.
    stay = fitted(current)
    assert not stay.changed and (stay.threshold, stay.min_contrast) == own and stay.match == stay.before
    # A setting to skip is never chosen.
    other = fitted(truth, skip=(fit.threshold, fit.min_contrast))
    assert (other.threshold, other.min_contrast) != (fit.threshold, fit.min_contrast)
    with pytest.raises(ValueError, match="no points"):
        fitted(np.zeros((0, 2)))
    # Two images' marks count together, progress counts every threshold on each: the same image
    # twice, once marked and once (as a spot-free control would be) with no marks, where the
    # fitted setting's tracks are all false.
    steps = []
    both = fitted(truth, np.zeros((0, 2)), progress=lambda done, total: steps.append((done, total)))
    n = 2 * len(FIT_THRESHOLDS)
    assert steps == [(i, n) for i in range(1, n + 1)]
    assert both.before == fit.before + Match(0, len(current), 0)
    assert both.match.fp >= fit.match.fp and both.match.tp <= fit.match.tp
    # Inside regions (the top half usable) only the marks and tracks there count.
    from cerber_model.runtime.regions import Regions

    top = Regions(include=[np.array([[-1, -1], [-1, 230], [100, 230], [100, -1]])])
    half = fitted(truth, regions=top)
    assert half.before == match_points(current[current[:, 0] < 100], truth[truth[:, 0] < 100])
    again = analyze(image, bundle, threshold=half.threshold, min_contrast=half.min_contrast).tracks
    found = np.c_[again.columns["row"], again.columns["col"]]
    assert half.match == match_points(found[found[:, 0] < 100], truth[truth[:, 0] < 100])
