"""Choose a model's setting for images with a clean background (``BundleConfig.clean_background``).

A model's own threshold and smallest contrast are chosen on real images, whose textured
backgrounds make faint bumps everywhere. On a clean background (camera noise, little texture:
:attr:`~cerber_model.runtime.contrast.SpotContrast.texture` at most ``--max-texture`` dark dips
per megapixel) a faint bump is rarely anything but a spot, and a lower threshold finds it.

This script generates its own validation images (seeds 7000-7102, never used by the benchmarks):
the camera-like recipe at SNR 4 and 2 on a flat and on a strong smooth background, the
prototype's recipe at SNR 4 and 2, and spot-free noise of six kinds. Among the images with a
clean background it tries every threshold and smallest contrast below, and chooses the one with
the best mean F1 (3 px) over the spot sets that keeps false tracks on the spot-free images (4 of
each kind, 1024 x 1024 px) at or below ``--max-false`` per megapixel: 0.5 by default, half the
aim of at most one, as 24 megapixels measure such a rate only roughly. ``--write`` stores it in
the model's config.json. ``--network NAME`` has the network of the bundled model NAME analyze
the images with a clean background (the default model's own probabilities on faint synthetic
spots are low; it runs the network of ``clean``, trained on faint and broad spots without
clutter), and stores that name with the setting. ``--coarse`` adds the tracks of the coarse look
(the network again on the image binned 2 x 2, ``CleanBackground.coarse``) at each setting tried,
and stores it with the setting. ``--rarity`` counts contrast on the clean images by how rarely
noise reaches it at the track's scale (``CleanBackground.rarity``), and stores that too.

    python scripts/clean_setting.py cerber_model/models/default [--network clean] [--coarse] [--rarity] [--write]
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from compare_real_images import BLANKS, blank_images, camera_sets  # noqa: E402

from cerber_model.runtime.analysis import (  # noqa: E402
    bundle_contrast,
    clean_texture,
    coarse_look,
    predict_probability,
    tracks_in,
)
from cerber_model.runtime.bundle import (  # noqa: E402
    BundleError,
    CleanBackground,
    load_clean_network,
    load_model,
    save_bundle,
)
from cerber_model.runtime.datasets import find_pairs  # noqa: E402
from cerber_model.runtime.evaluation import Match, match_points, truth_centres  # noqa: E402
from cerber_model.runtime.images import Image, image_levels, read_image  # noqa: E402
from cerber_model.runtime.synthesis import Recipe, generate_dataset  # noqa: E402
from cerber_model.runtime.tracks import track_centres  # noqa: E402

THRESHOLDS = (0.05, 0.1, 0.15, 0.2, 0.3)
CONTRASTS = (5.0, 5.5, 6.0, 6.5, 7.0, 8.0)


def spot_sets(base: Path, count: int) -> list[tuple[str, Path]]:
    """The validation spot sets (generated once into ``base``), as (label, folder) pairs."""
    out = camera_sets(base, count, seed=7000, snrs=(4.0, 2.0), backgrounds=("flat", "strong bg"))
    for j, snr in enumerate((4.0, 2.0)):
        label = f"prototype SNR {snr:g}"
        folder = base / label.replace(" ", "_")
        if not (folder / "recipe.json").is_file():
            recipe = Recipe(height=512, width=512, tracks=(10, 30), snr=(snr, snr))
            generate_dataset(folder, count, seed=7050 + j, recipe=recipe, val_fraction=0.0)
        out.append((label, folder / "train"))
    return out


class Candidates:
    """One image's texture, its track centres at the model's own setting, and (where its background
    is clean) at every threshold and smallest contrast tried, from the network that would run there."""

    def __init__(self, bundle, data: np.ndarray, max_texture: float, network=None, coarse: bool = False,
                 rarity: bool = False):
        levels = image_levels(data, bundle.config.normalization)
        contrast = bundle_contrast(Image(data), bundle, levels)
        if contrast is None:
            raise SystemExit(f"{bundle.name} keeps tracks of any contrast (min_contrast 0): it measures no texture")
        self.texture = contrast.texture
        self.clean = clean_texture(contrast, max_texture)

        def centres(t: float, c: float, probability: np.ndarray, look=None) -> np.ndarray:
            if look is None:
                return track_centres(probability, data, t, bundle.config.min_area_px,
                                     replace(contrast, rarity=rarity), c)[0]
            tracks = tracks_in(probability, data, contrast, t, bundle.config.min_area_px, None, c,
                               CleanBackground(t, c, max_texture, rarity=rarity), look)
            return np.c_[tracks.columns["row"], tracks.columns["col"]]

        own = predict_probability(data, bundle.engine(), bundle.config.normalization, levels=levels)
        self.own = track_centres(own, data, bundle.config.threshold, bundle.config.min_area_px, contrast,
                                 bundle.config.min_contrast, grow_to=bundle.config.grow_to)[0]
        self.centres: dict[tuple[float, float], np.ndarray] = {}
        if self.clean:
            net = network or bundle
            engine = net.engine()
            probability = own if net is bundle else predict_probability(data, engine, bundle.config.normalization,
                                                                         levels=levels)
            look = coarse_look(data, engine, bundle.config.normalization) if coarse else None
            self.centres = {(t, c): centres(t, c, probability, look) for t in THRESHOLDS for c in CONTRASTS}

    def at(self, setting: tuple[float, float]) -> np.ndarray:
        """The centres at ``setting`` where the background is clean, else at the model's own."""
        return self.centres[setting] if self.clean else self.own


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="model folder, or a bundled model's name")
    parser.add_argument("--max-texture", type=float, default=30.0,
                        help="dark dips per megapixel up to which a background counts as clean (default 30)")
    parser.add_argument("--max-false", type=float, default=0.5,
                        help="false tracks per megapixel allowed on spot-free images (default 0.5)")
    parser.add_argument("--count", type=int, default=4, help="images per spot set (default 4)")
    parser.add_argument("--data", type=Path, default=ROOT / "build" / "clean-setting")
    parser.add_argument("--network", metavar="NAME",
                        help="a bundled model (such as 'clean') whose network analyzes the images with a "
                             "clean background; by default the model's own")
    parser.add_argument("--coarse", action="store_true",
                        help="add the tracks of a second look at the image binned 2 x 2 on clean backgrounds")
    parser.add_argument("--rarity", action="store_true",
                        help="count contrast on clean backgrounds by how rarely noise reaches it at each scale")
    parser.add_argument("--write", action="store_true", help="store the chosen setting in the model's config.json")
    args = parser.parse_args()
    t0 = time.perf_counter()
    bundle = load_model(args.model)
    network = None
    if args.network:
        try:
            network = load_clean_network(bundle, args.network)
        except BundleError as exc:
            raise SystemExit(str(exc)) from exc

    sets: dict[str, list[tuple[Candidates, np.ndarray]]] = {}
    for label, folder in spot_sets(args.data, args.count):
        pairs, problems, _ = find_pairs(folder / "images", folder / "masks")
        if problems:
            raise SystemExit(f"{folder}: {problems[0]}")
        sets[label] = [(Candidates(bundle, read_image(p.image).data, args.max_texture, network, args.coarse,
                                   args.rarity),
                        truth_centres(p)) for p in pairs]
        print(f"analyzed {label} ({time.perf_counter() - t0:.0f} s)", flush=True)
    blanks = {kind: [Candidates(bundle, im, args.max_texture, network, args.coarse, args.rarity)
                     for im in blank_images(kind, 4, 1024, 700 + i)] for i, kind in enumerate(BLANKS)}
    print(f"analyzed the spot-free images ({time.perf_counter() - t0:.0f} s)\n", flush=True)
    megapixels = 4 * 1024 * 1024 / 1e6  # of each kind

    print(f"images with a clean background (texture <= {args.max_texture:g} dips per Mpx):")
    for label, images in sets.items():
        print(f"  {label:24s} {sum(c.clean for c, _ in images)} of {len(images)}  "
              f"(texture {', '.join(f'{c.texture:.0f}' for c, _ in images)})")
    print(f"  {'spot-free noise':24s} {sum(c.clean for k in blanks.values() for c in k)} "
          f"of {sum(len(k) for k in blanks.values())}")

    own = (bundle.config.threshold, bundle.config.min_contrast)

    def f1(label: str, setting: tuple[float, float] | None) -> float:
        """F1 over a set at ``setting`` on its clean images (None: the model's own on every image)."""
        total = Match(0, 0, 0)
        for cand, truth in sets[label]:
            total = total + match_points(cand.own if setting is None else cand.at(setting), truth)
        return total.f1

    def false_per_mpx(setting: tuple[float, float]) -> float:
        """False tracks per megapixel on the spot-free images of the worst kind."""
        return max(sum(len(c.at(setting)) for c in kind) for kind in blanks.values()) / megapixels

    print(f"\n{'threshold':>9} {'contrast':>8} " + " ".join(f"{label[:14]:>14s}" for label in sets)
          + f" {'mean':>6} {'blank/Mpx':>9}")
    best, best_score = None, -1.0
    for setting in [(t, c) for t in THRESHOLDS for c in CONTRASTS]:
        scores = [f1(label, setting) for label in sets]
        false = false_per_mpx(setting)
        mean = float(np.mean(scores))
        allowed = false <= args.max_false
        if allowed and mean > best_score:
            best, best_score = setting, mean
        print(f"{setting[0]:9.2f} {setting[1]:8g} " + " ".join(f"{s:14.3f}" for s in scores)
              + f" {mean:6.3f} {false:9.2f}" + ("" if allowed else "  (too many on spot-free images)"))
    own_scores = [f1(label, None) for label in sets]
    print(f"\nthe model's own setting on every image (threshold {own[0]:.2f}, contrast {own[1]:g}): "
          + ", ".join(f"{s:.3f}" for s in own_scores))
    if best is None:
        raise SystemExit("no setting keeps the spot-free images clean enough; nothing chosen")
    clean = CleanBackground(best[0], best[1], args.max_texture, args.network, args.coarse, args.rarity)
    print(f"chosen for clean backgrounds: threshold {best[0]:.2f}, smallest contrast {best[1]:g}"
          + (f", the network of {args.network}" if args.network else "")
          + (", with the coarse look" if args.coarse else "")
          + (", contrast counted by its rarity" if args.rarity else "") + " "
          f"(mean F1 {best_score:.3f})  ({time.perf_counter() - t0:.0f} s)")
    if args.write:
        if bundle.path is None:
            raise SystemExit("the model has no folder to write to")
        save_bundle(replace(bundle, config=replace(bundle.config, clean_background=clean)), bundle.path, overwrite=True)
        print(f"written to {bundle.path / 'config.json'}")


if __name__ == "__main__":
    main()
