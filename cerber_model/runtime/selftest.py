"""A quick end-to-end check of an installation or a frozen build.

Loads a model (the bundled default unless given), draws a synthetic image with
known track centres, analyzes it and matches the tracks found against the truth
at 3 px. Used by ``cerber selftest`` and by the frozen app's ``--selftest``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import numpy as np

from .analysis import analyze
from .bundle import Bundle, load_default_bundle
from .evaluation import match_points
from .synthesis import Recipe, make_sample

#: well-separated, clearly visible spots: a working model finds nearly all of them
SELFTEST_RECIPE = Recipe(height=512, width=512, tracks=(20, 20), snr=(4.0, 6.0), track_sd=(2.0, 3.5),
                         centre_fraction=(0.05, 0.95), inhomogeneity_sd=(20.0, 150.0), vignette_sd=(300.0, 400.0))
MIN_F1 = 0.8


@dataclass
class SelftestResult:
    ok: bool
    found: int
    expected: int
    matched: int
    f1: float
    seconds: float
    model: str
    size: int

    def line(self) -> str:
        verdict = "ok" if self.ok else f"FAILED (F1 below {MIN_F1})"
        return (f"selftest {verdict}: {self.matched} of {self.expected} known tracks found, "
                f"{self.found} tracks in all, "
                f"F1 {self.f1:.3f} at 3 px; {self.size}x{self.size} px analyzed in "
                f"{self.seconds:.2f} s with model '{self.model}'")


def run_selftest(bundle: Bundle | None = None, size: int = 512, seed: int = 2024) -> SelftestResult:
    """Analyze one synthetic ``size`` x ``size`` image; raises BundleError if no model can be loaded."""
    bundle = bundle or load_default_bundle()
    sample = make_sample(replace(SELFTEST_RECIPE, height=size, width=size), seed, 0)
    start = time.perf_counter()
    result = analyze(sample.image, bundle)
    seconds = time.perf_counter() - start
    found = result.tracks.columns
    match = match_points(np.c_[found["row"], found["col"]], sample.centres, 3.0)
    return SelftestResult(match.f1 >= MIN_F1, result.tracks.count, len(sample.centres), match.tp,
                          match.f1, seconds, bundle.name, size)
