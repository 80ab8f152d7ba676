"""A setting fitted to the marks of one image, used on the others: F1 where it was not fitted.

What the app's Points > Fit threshold and contrast to points does, measured: for each group of
annotated images, the threshold and smallest contrast are fitted to the points of one image
(:func:`~cerber_model.runtime.evaluation.fit_setting`, on its stored probability map) and then
used on the other images of the group, re-tracked from their maps as the app re-tracks them. F1 at
3 px over those other images, at the model's own setting and at the fitted one. Groups:

* the five telomere frames (``assets/samples/img_telomeres_t*``) with the default model, which
  learnt from none of them (five looks at one scene: fitted on one frame, scored on four, then
  on every pair of frames together, scored on three, as the app pools the points of every
  analyzed image that has them);
* the two annotated samples with ``synthetic``, which learnt from neither (the default learnt
  from both): fitted on one sample, scored on the other.

    python benchmarks/fit_to_points.py
"""

from __future__ import annotations

import itertools
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cerber_model.runtime.analysis import analyze  # noqa: E402
from cerber_model.runtime.bundle import load_model  # noqa: E402
from cerber_model.runtime.evaluation import MarkedImage, Match, fit_setting, match_points  # noqa: E402
from cerber_model.runtime.images import read_image  # noqa: E402
from cerber_model.runtime.points import points_beside, read_points  # noqa: E402

SAMPLES = ROOT / "assets" / "samples"
GROUPS = (("default", sorted(SAMPLES.glob("img_telomeres_t*.tif"))),
          ("synthetic", [SAMPLES / "img_hybiss_2d.tif", SAMPLES / "img_terra_2d.tif"]))


def centres(tracks) -> np.ndarray:
    return np.c_[tracks.columns["row"], tracks.columns["col"]]


def main() -> None:
    t0 = time.perf_counter()
    print(f"{'model':10s} {'fitted on':32s} {'threshold':>9s} {'contrast':>8s} {'F1 there':>15s} "
          f"{'F1 on the others: own setting':>30s} {'fitted':>7s}")
    for name, files in GROUPS:
        bundle = load_model(name)
        config = bundle.config
        own = (config.threshold, config.min_contrast)
        results = {f: analyze(read_image(f), bundle) for f in files}
        truths = {f: read_points(points_beside(f)).centres for f in files}
        # One image fitted on at a time; where a group has more than two, every pair too (the app pools
        # the points of every analyzed image that has them).
        for size in (1, 2) if len(files) > 2 else (1,):
            gains = []
            for fitted_on in itertools.combinations(files, size):
                marked = [MarkedImage(results[f].probability, results[f].image.data, results[f].contrast, truths[f],
                                      centres(results[f].tracks)) for f in fitted_on]
                clean = any(results[f].tracks.clean_background for f in fitted_on)
                fit = fit_setting(marked, *own, min_area_px=config.min_area_px, grow_to=config.grow_to,
                                  skip=own if clean else None)
                before = after = Match(0, 0, 0)
                for g in files:
                    if g in fitted_on:
                        continue
                    other = results[g]
                    tracks = (other.tracks_at(fit.threshold, config.min_area_px, None, fit.min_contrast,
                                              grow_to=config.grow_to) if fit.changed else other.tracks)
                    before = before + match_points(centres(other.tracks), truths[g])
                    after = after + match_points(centres(tracks), truths[g])
                gains.append(after.f1 - before.f1)
                label = " + ".join(f.stem.removeprefix("img_") for f in fitted_on)
                print(f"{name:10s} {label:32s} {fit.threshold:9.2f} {fit.min_contrast:8.1f} "
                      f"{fit.before.f1:6.3f} -> {fit.match.f1:5.3f} {before.f1:30.3f} {after.f1:7.3f}", flush=True)
            print(f"{name:10s} fitted on {size} image(s): mean gain on the images not fitted to: {np.mean(gains):+.3f}")
    print(f"({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
