"""Models side by side on what the real-images issue is about: annotated real images, the
synthetic SNR sweep, and blank noise.

For every model given (folders, or "default" for the bundled one) this reports

* F1 at 3 px on each annotated image (``<stem>_points.csv`` beside it; by default the two
  samples and five frames of a telomere time-lapse, also scored together), zero-shot, beside a LoG
  detector tuned on that very image (the classical baseline, tuned on the answer);
* F1 on the SNR sweep of ``benchmarks/eval_snr.py`` (the same sets, in build/eval-snr) and on
  a held-out set of the realistic recipe (seed 9001, white noise, never trained on), each beside a LoG tuned
  on the set;
* F1 on a camera-like SNR sweep (the realistic recipe without clutter: spots of SD 1-3 px at
  SNR 4, 2 and 1, on a flat background, 8-16 bit; and the same on a strong smooth background,
  vignetting, a gradient and broad glows 2-5x the background level, in 8 bit, so that the
  background fills most of the grey range), and the flat one with its noise smoothed over
  0.6-1 px (neighbouring pixels correlating as in real images), each beside a LoG tuned on the set;
* F1 on the same sweep at SNR 4, 2 and 1 with the noise not clipped at 0: the prototype clipped
  noise and offset at 0 before adding the spots, so that its clipped pixels trace the spots
  without noise, which no camera does (``Recipe.clip_noise``);
* F1 on the strong background as the real-images issue measured it: the prototype's look (spots
  of SD 2-6 px, all of one amplitude, at SNR 4, 2 and 1) on its smooth background of vignetting
  and broad inhomogeneities scaled to span 5-20 times that amplitude, min-max scaled to 8 bit;
* F1 on bead-like images: the realistic recipe without clutter, 80-150 spots of SD 1-1.8 px per
  512 x 512 image on a flat background, 12 and 16 bit, their SNR spread over 10-300 (log-uniform),
  a fifth of them placed touching another: a faint spot beside one up to 30 times as bright;
* counting on clean images: reported against true count for sparse bright spots (50 per
  1024 x 1024 16-bit image, SD 1.2-2.5 px, SNR 10-30, flat background);
* false tracks per megapixel on images without any spot: camera-like noise, 8 and 16 bit,
  on a flat or a smooth (gradient plus a broad glow) background, and a dark 8-bit image where
  quantisation dominates the noise.

Nothing here trains or tunes a model; the annotated images are only scored.

    python benchmarks/compare_real_images.py default build/pilot [--images A.tif B.tif] [--count 12]
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from eval_snr import sets as snr_sets  # noqa: E402

from cerber_model.runtime.analysis import analyze  # noqa: E402
from cerber_model.runtime.bundle import load_model  # noqa: E402
from cerber_model.runtime.datasets import Pair, find_pairs  # noqa: E402
from cerber_model.runtime.evaluation import Match, evaluate  # noqa: E402
from cerber_model.runtime.points import points_beside  # noqa: E402
from cerber_model.runtime.synthesis import (  # noqa: E402
    Recipe,
    Sample,
    add_smooth,
    draw_scene,
    generate_dataset,
    minmax_uint8,
    named_recipe,
    render,
)

if TYPE_CHECKING:
    from cerber_model.runtime.realistic import RealisticRecipe

#: The camera-like sweep: the realistic recipe with no clutter, fixed SNR; "flat" and "strong background".
_CLEAN = dict(tracks=(10, 30), track_sd=(1.0, 3.0), cluster_fraction=0.0, saturated_fraction=0.0,
              blobs=(0, 0), rings=(0, 0), filaments=(0, 0), texture_probability=0.0, dust=(0, 0),
              scratch_probability=0.0, hot_pixels=(0.0, 0.0), background_photons=(20.0, 2000.0),
              smoothed_fraction=0.0)
_FLAT = dict(vignetting=(0.0, 0.0), gradient=(0.0, 0.0), inhomogeneities=(0, 0))
#: Flat, with the noise (and the spots) smoothed over 0.6-1 px, as processing leaves real images.
_SMOOTHED = dict(_FLAT, smoothed_fraction=1.0, noise_smoothing=(0.6, 1.0))
_STRONG = dict(vignetting=(0.5, 0.8), gradient=(0.5, 1.0), inhomogeneities=(3, 6),
               inhomogeneity_amplitude=(2.0, 5.0), bit_depths=(8,), background_photons=(300.0, 1500.0),
               noise_grey_levels=(0.8, 1.5))


_BACKGROUNDS = (("flat", _FLAT), ("strong bg", _STRONG), ("smoothed", _SMOOTHED))


def camera_recipe(snr: float, background: str) -> RealisticRecipe:
    """The camera-like sweep's recipe at one ``snr`` on one of the backgrounds of :data:`_BACKGROUNDS`."""
    from cerber_model.runtime.realistic import RealisticRecipe

    return RealisticRecipe(snr=(snr, snr), **{**_CLEAN, **dict(_BACKGROUNDS)[background]})  # type: ignore[arg-type]


#: A synthetic set of the benchmark: its label, its recipe and its seed.
SetSpec = tuple[str, Any, int]


def generated_sets(base: Path, count: int, specs: list[SetSpec], workers: int | None = None
                   ) -> list[tuple[str, Path]]:
    """Each set of ``specs``, generated once into ``base`` (``count`` images, a folder named by its
    label), as (label, folder) pairs."""
    out = []
    for label, recipe, seed in specs:
        folder = base / label.replace(" ", "_")
        if not (folder / "recipe.json").is_file():
            generate_dataset(folder, count, seed=seed, recipe=recipe, val_fraction=0.0, workers=workers)
        out.append((label, folder / "train"))
    return out


def camera_specs(seed: int = 2000, snrs: tuple[float, ...] = (4.0, 2.0, 1.0),
                 backgrounds: tuple[str, ...] = ("flat", "strong bg", "smoothed")) -> list[SetSpec]:
    """The camera-like SNR sweep: background i of :data:`_BACKGROUNDS` at SNR j from ``seed + 10 i + j``."""
    return [(f"camera SNR {snr:g} {background}", camera_recipe(snr, background), seed + 10 * i + j)
            for i, (background, _) in enumerate(_BACKGROUNDS) if background in backgrounds
            for j, snr in enumerate(snrs)]


#: Bead-like images: many small spots of widely spread brightness, some touching, on a flat background.
_BEADS = dict(_CLEAN, **_FLAT, tracks=(80, 150), track_sd=(1.0, 1.8), cluster_fraction=0.2, bit_depths=(12, 16))


def bead_specs(seed: int = 2300) -> list[SetSpec]:
    """The bead-like set (:data:`_BEADS`, SNR 10-300)."""
    from cerber_model.runtime.realistic import RealisticRecipe

    return [("beads SNR 10-300", RealisticRecipe(snr=(10.0, 300.0), **_BEADS), seed)]  # type: ignore[arg-type]


def camera_sets(base: Path, count: int, seed: int = 2000, snrs: tuple[float, ...] = (4.0, 2.0, 1.0),
                backgrounds: tuple[str, ...] = ("flat", "strong bg", "smoothed")) -> list[tuple[str, Path]]:
    """The camera-like SNR sweep (:func:`camera_specs`, generated once into ``base``)."""
    return generated_sets(base, count, camera_specs(seed, snrs, backgrounds))


@dataclass(frozen=True)
class StrongBackground:
    """The prototype's look at one SNR on a strong smooth background, as the real-images issue
    measured it: its spots (SD 2-6 px, 10-30 per 512 px image), every one of amplitude A, on its
    background (the vignette and broad inhomogeneities) scaled to span ``ratio`` (uniform) times A,
    with noise of SD A / ``snr``, min-max scaled to 8 bit like the prototype's images."""

    kind: ClassVar[str] = "strong background (benchmark)"

    snr: float
    ratio: tuple[float, float] = (5.0, 20.0)
    size: int = 512

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, **asdict(self)}

    def make_sample(self, seed: int, index: int) -> Sample:
        # Offsets of 50 or more: the prototype clips noise and offset at 0 before adding the rest.
        recipe = Recipe(height=self.size, width=self.size, tracks=(10, 30), snr=(self.snr, self.snr),
                        offset=(50.0, 95.0))
        rng = np.random.default_rng([seed, index])
        scene = draw_scene(recipe, rng)
        background = np.zeros((self.size, self.size), np.float32)
        vsd, vamp = scene.vignette
        add_smooth(background, [*scene.blobs, ((self.size - 1) / 2, (self.size - 1) / 2, vsd, vsd, 0.0, vamp)])
        amplitude = float(np.ptp(background)) / rng.uniform(*self.ratio)
        noise_sd = amplitude / self.snr
        tracks = scene.tracks.copy()
        tracks[:, 5] = amplitude
        scene = replace(scene, noise=scene.noise * np.float32(noise_sd / scene.noise_sd), noise_sd=noise_sd,
                        tracks=tracks)
        mask = np.zeros((self.size, self.size), dtype=bool)
        image = minmax_uint8(render(scene, recipe, mask))
        return Sample(image, mask.astype(np.uint8) * 255, tracks[:, :2].copy(), np.full(len(tracks), self.snr),
                      tracks[:, 2:4].copy())


def strong_specs(seed: int = 2200, snrs: tuple[float, ...] = (4.0, 2.0, 1.0)) -> list[SetSpec]:
    """The issue's strong-background sweep (:class:`StrongBackground`), SNR j from ``seed + j``."""
    # "SNR ... on strong bg": the prototype's look, as the sweep's rows.
    return [(f"SNR {snr:g} on strong bg", StrongBackground(snr), seed + j) for j, snr in enumerate(snrs)]


def strong_sets(base: Path, count: int, seed: int = 2200, snrs: tuple[float, ...] = (4.0, 2.0, 1.0)
                ) -> list[tuple[str, Path]]:
    """The issue's strong-background sweep (:func:`strong_specs`, generated once into ``base``; in
    this process, as its recipe is the benchmark's own class)."""
    return generated_sets(base, count, strong_specs(seed, snrs), workers=1)


def unclipped_specs(size: int = 512, seed: int = 1000, snrs: tuple[float, ...] = (4.0, 2.0, 1.0)) -> list[SetSpec]:
    """The sweep of ``eval_snr.py`` at SNR 4, 2 and 1 with its noise not clipped at 0
    (``Recipe.clip_noise``). SNR j has the seed of that sweep's set (``seed + j``), so each image
    differs from its twin there in the clip alone."""
    return [(f"SNR {snr:g} not clipped",
             Recipe(height=size, width=size, tracks=(10, 30), snr=(snr, snr), clip_noise=False), seed + j)
            for j, snr in enumerate(snrs)]


def unclipped_sets(base: Path, count: int) -> list[tuple[str, Path]]:
    """The unclipped sweep (:func:`unclipped_specs`, generated once into ``base``)."""
    return generated_sets(base, count, unclipped_specs())


def counting_set(base: Path, count: int) -> Path:
    """Sparse bright spots: 50 per 1024 x 1024 16-bit image, SD 1.2-2.5 px, SNR 10-30, flat."""
    from cerber_model.runtime.realistic import RealisticRecipe

    folder = base / "counting_50"
    if not (folder / "recipe.json").is_file():
        recipe = RealisticRecipe(height=1024, width=1024, **{**_CLEAN, **_FLAT, "tracks": (50, 50),  # type: ignore[arg-type]
                                 "track_sd": (1.2, 2.5), "snr": (10.0, 30.0), "bit_depths": (16,)})
        generate_dataset(folder, count, seed=2100, recipe=recipe, val_fraction=0.0)
    return folder / "train"


#: The annotated real images (assets/samples/README.md): the two that the default model learnt from, and
#: five frames of a telomere time-lapse that no model here has seen.
SAMPLES = [ROOT / "assets" / "samples" / name for name in
           ("img_hybiss_2d.tif", "img_terra_2d.tif", *(f"img_telomeres_t{t:03d}.tif" for t in (0, 50, 100, 150, 199)))]


def image_group(path: Path) -> str:
    """The series an annotated image belongs to: frames of one time-lapse (``<name>_t<frame>``) are one
    series, scored together as well as one by one."""
    stem = path.stem
    head, _, frame = stem.rpartition("_t")
    return head if head and frame.isdigit() else stem


def blank_images(kind: str, count: int, size: int, seed: int) -> list[np.ndarray]:
    """``count`` spot-free images of one kind: shot noise (1 e- per grey level above the offset)
    plus read noise, rounded and clipped like a camera's output ("16-bit blurred": the noise
    smoothed over 0.8 px before rounding, as processing leaves real images)."""
    rng = np.random.default_rng(seed)
    rr, cc = np.indices((size, size)) / size
    bits, offset, photons, read, smooth = {
        "8-bit flat": (8, 10, 20.0, 2.0, False),
        "8-bit smooth": (8, 10, 20.0, 2.0, True),
        "8-bit dark": (8, 2, 1.0, 0.7, False),
        "16-bit flat": (16, 100, 900.0, 6.0, False),
        "16-bit smooth": (16, 100, 900.0, 6.0, True),
        "16-bit blurred": (16, 100, 900.0, 6.0, False),
    }[kind]
    out = []
    for _ in range(count):
        level = np.full((size, size), photons)
        if smooth:  # a tilt and a broad glow, as from uneven illumination or out-of-focus light
            r0, c0 = rng.uniform(0.2, 0.8, 2)
            level = level * (1 + rng.uniform(0.5, 1.5) * (rr * rng.uniform(-1, 1) + cc * rng.uniform(-1, 1)) ** 2
                             + rng.uniform(1, 3) * np.exp(-((rr - r0) ** 2 + (cc - c0) ** 2) / (2 * 0.15**2)))
        counts = rng.poisson(level) + rng.normal(0, read, level.shape) + offset
        if kind == "16-bit blurred":
            from scipy import ndimage

            counts = ndimage.gaussian_filter(counts, 0.8)
        out.append(np.clip(np.rint(counts), 0, 2**bits - 1).astype(np.uint8 if bits == 8 else np.uint16))
    return out


BLANKS = ("8-bit flat", "8-bit smooth", "8-bit dark", "16-bit flat", "16-bit smooth", "16-bit blurred")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+", help="model folders ('default': the bundled default model)")
    parser.add_argument("--images", nargs="*", type=Path, default=SAMPLES, help="annotated real images")
    parser.add_argument("--count", type=int, default=12, help="images per SNR-sweep set (eval_snr's default)")
    parser.add_argument("--realistic", type=int, default=24, help="held-out images of the realistic recipe")
    parser.add_argument("--blank", type=int, default=4, help="blank 1024 x 1024 images per kind")
    parser.add_argument("--data", type=Path, default=ROOT / "build" / "eval-snr")
    args = parser.parse_args()

    bundles = {m: load_model(m) for m in args.models}
    width = max(12, *(len(m) for m in bundles))
    header = " ".join(f"{m:>{width}s}" for m in bundles)
    t0 = time.perf_counter()

    print("\n## Annotated real images, zero-shot (F1 at 3 px; P / R)\n")
    print(f"{'image':24s} {header} {'LoG tuned on it':>16s}")
    totals: dict[str, Match] = {}
    series: dict[str, dict[str, Match]] = {}  # per series of frames, per model
    series_log: dict[str, Match] = {}  # per series, the LoG tuned on each frame
    frames: dict[str, int] = {}
    for path in args.images:
        pair = Pair(path, None, points_beside(path))
        cells, log = [], None
        label = image_group(path)
        group = series.setdefault(label, {})
        frames[label] = frames.get(label, 0) + 1
        for name, bundle in bundles.items():
            ev = evaluate(bundle, [pair])
            m, log = ev.network[0].match, (ev.log[0].match, ev.log_settings)
            totals[name] = totals[name] + m if name in totals else m
            group[name] = group[name] + m if name in group else m
            cells.append(f"{m.f1:.3f} ({m.precision:.2f}/{m.recall:.2f})".rjust(width))
        assert log is not None
        series_log[label] = series_log[label] + log[0] if label in series_log else log[0]
        print(f"{path.stem:24s} {' '.join(cells)} {log[0].f1:16.3f}  {log[1]}")
    for label, matches in series.items():
        if frames[label] > 1:  # a series: its frames together
            cells = [f"{matches[n].f1:.3f} ({matches[n].precision:.2f}/{matches[n].recall:.2f})".rjust(width)
                     for n in bundles]
            print(f"{label + ' (all)':24s} {' '.join(cells)} {series_log[label].f1:16.3f}  (tuned per frame)")
    print(f"{'OVERALL':24s} {' '.join(f'{totals[n].f1:{width}.3f}' for n in bundles)}")

    realistic = args.data.parent / "eval-realistic"
    if not (realistic / "recipe.json").is_file():
        # White noise, as before the recipe smoothed half of its images (the camera sets have smoothed ones).
        recipe = replace(named_recipe("realistic"), smoothed_fraction=0.0)  # type: ignore[type-var]
        generate_dataset(realistic, args.realistic, seed=9001, recipe=recipe, val_fraction=0.0)
    print(f"\n## Synthetic sets (F1 at 3 px; P / R)\n\n{'set':24s} {header} {'LoG tuned on it':>16s}")
    synthetic = [*snr_sets(args.data, args.count, 512),
                 *unclipped_sets(args.data.parent / "eval-unclipped", args.count),
                 *strong_sets(args.data.parent / "eval-strong", args.count),
                 *camera_sets(args.data.parent / "eval-camera", args.count),
                 *generated_sets(args.data.parent / "eval-beads", args.count, bead_specs()),
                 ("realistic (seed 9001)", realistic / "train")]
    for label, folder in synthetic:
        pairs, problems, _ = find_pairs(folder / "images", folder / "masks" if (folder / "masks").is_dir() else None)
        assert not problems, problems
        cells, log_f1 = [], 0.0
        for bundle in bundles.values():
            ev = evaluate(bundle, pairs)
            m = ev.overall(ev.network)
            log_f1 = ev.overall(ev.log).f1
            cells.append(f"{m.f1:.3f} ({m.precision:.2f}/{m.recall:.2f})".rjust(width))
        print(f"{label:24s} {' '.join(cells)} {log_f1:16.3f}", flush=True)

    print(f"\n## Counting sparse bright spots ({args.count // 2} x 1024 x 1024 px, 50 spots each)\n")
    print(f"{'':24s} {header}")
    folder = counting_set(args.data.parent / "eval-camera", args.count // 2)
    truth = sum(len(np.loadtxt(f, delimiter=",", skiprows=1, ndmin=2)) for f in (folder / "tracks").glob("*.csv"))
    from cerber_model.runtime.images import read_image

    counted = [sum(analyze(read_image(f), b).tracks.count for f in sorted((folder / "images").glob("*.png")))
               for b in bundles.values()]
    print(f"{f'reported / true ({truth})':24s} {' '.join(f'{c / truth:{width}.3f}' for c in counted)}", flush=True)

    print(f"\n## Blank images: false tracks per megapixel ({args.blank} x 1024 x 1024 px each)\n")
    print(f"{'kind':24s} {header}")
    for i, kind in enumerate(BLANKS):
        images = blank_images(kind, args.blank, 1024, seed=500 + i)
        megapixels = sum(im.size for im in images) / 1e6
        cells = [f"{sum(analyze(im, b).tracks.count for im in images) / megapixels:{width}.2f}"
                 for b in bundles.values()]
        print(f"{kind:24s} {' '.join(cells)}", flush=True)
    print(f"\n({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
