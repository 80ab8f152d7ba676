"""Counting linearity: counted tracks against true tracks, from sparse to crowded images.

Synthetic 16-bit images (1024 x 1024 px by default) hold N round Gaussian spots at uniformly random
positions (overlaps allowed), each of an SD drawn from 1.2-2.5 px and a peak of 300-1500 photons
over a background of 200, with shot noise, offset 100. Each is analyzed as ``cerber analyze`` does
(runtime ``analyze`` with the model's threshold); the tracks found are counted and matched to the
true centres within 3 px (true positives, false detections). The resolving distance ``d`` of the
overlap correction (``cerber_model.runtime.dosimetry``) is then fitted to the counts by least
squares of the dead-area model ``n = N exp(-N pi d^2 / A)``, relative to N, over the densities from
``--fit-from`` up (false detections at low densities are not what the model describes), and the
counts are corrected with the fitted ``d`` and with the model's own (the bundle's, else the
documented default).

    python benchmarks/bench_linearity.py [--model MODEL] [--repeats 2] [--densities 50 100 ...] [--write]

``--write`` stores the fitted ``d`` in the model's config.json (``resolving_distance_px``), where
``cerber analyze`` takes it from; without it, models use the documented default.

Two repeats of six densities take about a minute on an idle 2-core machine.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cerber_model.runtime.analysis import analyze  # noqa: E402
from cerber_model.runtime.bundle import load_bundle, load_model  # noqa: E402
from cerber_model.runtime.dosimetry import (  # noqa: E402
    DEFAULT_RESOLVING_DISTANCE_PX,
    observed_count,
    overlap_corrected_count,
)
from cerber_model.runtime.evaluation import match_points  # noqa: E402
from cerber_model.runtime.images import Image  # noqa: E402

DENSITIES = (50, 100, 200, 400, 800, 1600)
SD_RANGE = (1.2, 2.5)
PEAK_PHOTONS = (300.0, 1500.0)
BACKGROUND_PHOTONS = 200.0
OFFSET = 100


def spot_image(count: int, size: int, rng: np.random.Generator,
               sd_range: tuple[float, float] = SD_RANGE) -> tuple[np.ndarray, np.ndarray]:
    """A 16-bit image of ``count`` spots at random positions, and their (row, col) centres."""
    centres = rng.uniform(0, size - 1, (count, 2))
    sds = rng.uniform(*sd_range, count)
    peaks = rng.uniform(*PEAK_PHOTONS, count)
    photons = np.full((size, size), BACKGROUND_PHOTONS)
    for (r, c), sd, peak in zip(centres, sds, peaks, strict=True):
        half = math.ceil(4 * sd)
        r0, r1 = max(int(r) - half, 0), min(int(r) + half + 1, size)
        c0, c1 = max(int(c) - half, 0), min(int(c) + half + 1, size)
        rr = np.arange(r0, r1)[:, None] - r
        cc = np.arange(c0, c1)[None, :] - c
        photons[r0:r1, c0:c1] += peak * np.exp(-(rr**2 + cc**2) / (2 * sd**2))
    data = rng.poisson(photons) + OFFSET
    return np.clip(data, 0, 65535).astype(np.uint16), centres


def fit_resolving_distance(true: np.ndarray, counted: np.ndarray, area_px: float) -> float:
    """``d`` minimising ``sum(((n - N exp(-N pi d^2 / A)) / N)^2)``."""
    from scipy.optimize import least_squares

    def residuals(d):
        return np.array([(observed_count(t, area_px, d[0]) - n) / t for t, n in zip(true, counted, strict=True)])

    return float(least_squares(residuals, [3.0], bounds=([0.0], [50.0])).x[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="model folder (default: the bundled default model)")
    parser.add_argument("--densities", type=int, nargs="+", default=list(DENSITIES), help="true spots per image")
    parser.add_argument("--repeats", type=int, default=2, help="images per density")
    parser.add_argument("--size", type=int, default=1024, help="image side in px")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sd", type=float, nargs=2, default=list(SD_RANGE), metavar=("LOW", "HIGH"),
                        help="range of the spots' SDs in px (default %(default)s)")
    parser.add_argument("--fit-from", type=int, default=200,
                        help="fit d on the densities from this many spots per image up (default %(default)s)")
    parser.add_argument("--radius", type=float, default=3.0, help="matching radius in px for true/false detections")
    parser.add_argument("--plot", type=Path, metavar="FILE.svg",
                        help="also draw counted and corrected (the fitted d) against the true count as an SVG")
    parser.add_argument("--write", action="store_true",
                        help="store the fitted d in the model's config.json as resolving_distance_px")
    args = parser.parse_args()

    bundle = load_model(args.model)
    shipped = bundle.config.resolving_distance_px or DEFAULT_RESOLVING_DISTANCE_PX
    area = float(args.size * args.size)
    rows = []  # (density, true, counted, tp, fp)
    start = time.perf_counter()
    for density in args.densities:
        for repeat in range(args.repeats):
            rng = np.random.default_rng([args.seed, density, repeat])
            data, centres = spot_image(density, args.size, rng, tuple(args.sd))
            result = analyze(Image(data), bundle)
            found = np.c_[result.tracks.columns["row"], result.tracks.columns["col"]]
            match = match_points(found, centres, args.radius)
            rows.append((density, len(centres), result.tracks.count, match.tp, match.fp))
            print(f"  {density:5d} spots, repeat {repeat + 1}: {result.tracks.count} counted, "
                  f"{match.tp} true, {match.fp} false ({time.perf_counter() - start:.0f} s)", flush=True)
    table = np.array(rows, dtype=np.float64)
    fit = table[table[:, 0] >= args.fit_from]
    d = fit_resolving_distance(fit[:, 1], fit[:, 2], area) if len(fit) else math.nan

    print(f"\nmodel {bundle.name} ({bundle.path}), {args.size} x {args.size} px, {args.repeats} image(s) per density, "
          f"spot SD {args.sd[0]}-{args.sd[1]} px, {time.perf_counter() - start:.0f} s")
    where = "its config.json" if bundle.config.resolving_distance_px else "the default, DEFAULT_RESOLVING_DISTANCE_PX"
    print(f"fitted resolving distance d = {d:.2f} px (densities >= {args.fit_from}); "
          f"the model's d = {shipped:.2f} px ({where})")
    header = ("true", "counted", "counted/true", "found (recall)", "false per image",
              f"corrected d={d:.2f}", f"corrected d={shipped:.2f}")
    print(" | ".join(header))
    print(" | ".join("---" for _ in header))
    points = []  # (true, counted, corrected) per image, means over the repeats
    for density in args.densities:
        part = table[table[:, 0] == density]
        true, counted = part[:, 1].sum(), part[:, 2].sum()
        fitted = sum(overlap_corrected_count(n, area, d) for n in part[:, 2])
        own = sum(overlap_corrected_count(n, area, shipped) for n in part[:, 2])
        points.append((true / len(part), counted / len(part), fitted / len(part)))
        print(f"{true / len(part):.0f} | {counted / len(part):.1f} | {counted / true:.3f} | "
              f"{part[:, 3].sum() / true:.3f} | {part[:, 4].mean():.1f} | {fitted / true:.3f} | {own / true:.3f}")
    if args.plot:
        args.plot.write_text(linearity_svg(points, f"{bundle.name}: d = {d:.2f} px"))
        print(f"plot: {args.plot}")
    if args.write:
        if bundle.path is None or not math.isfinite(d):
            sys.exit("nothing written: no model folder or no fitted d")
        write_resolving_distance(Path(bundle.path), d)


def linearity_svg(points: list[tuple[float, float, float]], title: str, size: int = 380) -> str:
    """Counted / true and corrected / true against the true count (log axis), with the +-5% band."""
    lo, hi = 0.8 * min(p[0] for p in points), 1.25 * max(p[0] for p in points)
    ratios = [v / t for t, c, k in points for v in (c, k)]
    bottom = min(0.8, math.floor(min(ratios) * 10) / 10)
    top = max(1.2, math.ceil(max(ratios) * 10) / 10)
    margin, colours = 50, {"counted": "#d62728", "corrected": "#1f77b4"}

    def xy(true: float, ratio: float) -> tuple[float, float]:
        x = margin + (math.log10(true) - math.log10(lo)) / (math.log10(hi) - math.log10(lo)) * (size - 1.5 * margin)
        y = size - margin - (ratio - bottom) / (top - bottom) * (size - 1.5 * margin)
        return x, y

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{size}" height="{size}" font-family="sans-serif" '
           f'font-size="11"><rect width="{size}" height="{size}" fill="white"/>',
           f'<text x="{margin}" y="16">{title}</text>']
    band = [xy(lo, 1.05), xy(hi, 1.05), xy(hi, 0.95), xy(lo, 0.95)]
    out.append('<polygon points="' + " ".join(f"{x:.1f},{y:.1f}" for x, y in band) + '" fill="#e8e8e8"/>')
    (x0, y1), (x1, _) = xy(lo, 1.0), xy(hi, 1.0)
    out.append(f'<line x1="{x0:.1f}" y1="{y1:.1f}" x2="{x1:.1f}" y2="{y1:.1f}" stroke="#888" stroke-dasharray="4 3"/>')
    for index, name in ((1, "counted"), (2, "corrected")):
        coords = [xy(p[0], p[index] / p[0]) for p in points]
        out.append('<polyline points="' + " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
                   + f'" fill="none" stroke="{colours[name]}" stroke-width="2"/>')
        for (x, y), p in zip(coords, points, strict=True):
            out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{colours[name]}"><title>{name}: '
                       f"{p[index]:.1f} of {p[0]:.0f}</title></circle>")
    decade = 10 ** math.floor(math.log10(lo))
    while decade <= hi:
        for tick in (decade, 2 * decade, 5 * decade):
            if lo <= tick <= hi:
                x, _ = xy(tick, bottom)
                out.append(f'<text x="{x:.1f}" y="{size - margin + 16}" text-anchor="middle">{tick:g}</text>')
        decade *= 10
    ratio = bottom
    while ratio <= top + 1e-9:
        _, y = xy(lo, ratio)
        out.append(f'<text x="{margin - 6}" y="{y + 4:.1f}" text-anchor="end">{ratio:.1f}</text>')
        ratio += 0.1
    out.append(f'<text x="{size / 2}" y="{size - 12}" text-anchor="middle">true spots per image</text>')
    out.append(f'<text x="14" y="{size / 2}" transform="rotate(-90 14 {size / 2})" text-anchor="middle">'
               "count / true count</text>")
    legend = [("counted", colours["counted"]), ("corrected", colours["corrected"]), ("within ±5%", "#cccccc")]
    for i, (label, colour) in enumerate(legend):
        out.append(f'<rect x="{margin + 8}" y="{28 + 16 * i}" width="12" height="6" fill="{colour}"/>'
                   f'<text x="{margin + 26}" y="{35 + 16 * i}">{label}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def write_resolving_distance(model: Path, d: float) -> None:
    """Set ``resolving_distance_px`` in the bundle's config.json (atomically), then check it loads."""
    import json

    from cerber_model.runtime.bundle import CONFIG_FILE
    from cerber_model.runtime.files import atomic_write

    path = model / CONFIG_FILE
    config = json.loads(path.read_text(encoding="utf-8"))
    config["resolving_distance_px"] = round(d, 2)
    text = json.dumps(config, indent=2) + "\n"
    atomic_write(path, lambda fh: fh.write(text.encode()))
    assert load_bundle(model).config.resolving_distance_px == round(d, 2)
    print(f"resolving_distance_px = {round(d, 2)} written to {path}")


if __name__ == "__main__":
    main()
