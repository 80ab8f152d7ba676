"""Detection quality of a model against a tuned LoG detector, over an SNR sweep.

For each signal-to-noise ratio (track amplitude / noise SD) a validation set is
generated with its own seed (never used in training), analyzed with the model
and with a Laplacian-of-Gaussian detector tuned for best F1 on that same set,
and matched to the true centres at 3 px. The prototype's own recipe (whose
tracks mostly have SNR 0.1-0.5) is included for reference.

    python benchmarks/eval_snr.py [--model cerber_model/models/default] [--count 12] [--card]

``--card`` also writes the results into the model's MODEL_CARD.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cerber_model.runtime.bundle import default_bundle_path, load_bundle  # noqa: E402
from cerber_model.runtime.datasets import find_pairs  # noqa: E402
from cerber_model.runtime.evaluation import evaluate  # noqa: E402
from cerber_model.runtime.synthesis import Recipe, generate_dataset  # noqa: E402

SWEEP = (("SNR 4", (4.0, 4.0)), ("SNR 2", (2.0, 2.0)), ("SNR 1", (1.0, 1.0)), ("SNR 0.5", (0.5, 0.5)),
         ("prototype recipe", None))


def sets(base: Path, count: int, size: int) -> list[tuple[str, Path]]:
    out = []
    for i, (label, snr) in enumerate(SWEEP):
        folder = base / label.replace(" ", "_")
        if not (folder / "recipe.json").is_file():
            recipe = Recipe(height=size, width=size, tracks=(10, 30), snr=snr)
            generate_dataset(folder, count, seed=1000 + i, recipe=recipe, val_fraction=0.0)
        out.append((label, folder / "train"))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(default_bundle_path()))
    parser.add_argument("--count", type=int, default=12, help="images per SNR (512 x 512, 10-30 tracks each)")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--data", default=str(ROOT / "build" / "eval-snr"))
    parser.add_argument("--card", action="store_true", help="write the table into the model's MODEL_CARD.md")
    args = parser.parse_args()

    bundle = load_bundle(args.model)
    rows = []
    for label, folder in sets(Path(args.data), args.count, args.size):
        pairs, problems, _ = find_pairs(folder / "images", folder / "masks")
        assert not problems, problems
        t = time.perf_counter()
        ev = evaluate(bundle, pairs, radius=3.0)
        net, log = ev.overall(ev.network), ev.overall(ev.log)
        truth = sum(s.true_count for s in ev.network)
        rows.append((label, truth, net, log, ev.log_settings, time.perf_counter() - t))
        print(f"{label:17s} tracks {truth:4d}  cerber P {net.precision:.3f} R {net.recall:.3f} F1 {net.f1:.3f}"
              f"   LoG P {log.precision:.3f} R {log.recall:.3f} F1 {log.f1:.3f} {ev.log_settings}", flush=True)
    if args.card:
        table = ["| validation set | true tracks | Cerber P / R / F1 | LoG (tuned) P / R / F1 | LoG settings |",
                 "|---|---|---|---|---|"]
        for label, truth, net, log, settings, _ in rows:
            table.append(f"| {label} | {truth} | {net.precision:.3f} / {net.recall:.3f} / **{net.f1:.3f}** | "
                         f"{log.precision:.3f} / {log.recall:.3f} / {log.f1:.3f} | "
                         f"sigma {settings['sigma_px']} px, threshold {settings['threshold']} |")
        card = Path(args.model) / "MODEL_CARD.md"
        text = card.read_text() if card.is_file() else ""
        marker = "<!-- snr-sweep -->"
        block = (f"{marker}\n{args.count} images of {args.size} x {args.size} px per set, 10-30 tracks each, "
                 f"seeds 1000-1004, matching radius 3 px (`python benchmarks/eval_snr.py --card`):\n\n"
                 + "\n".join(table) + f"\n{marker}")
        if marker in text:
            start, end = text.index(marker), text.rindex(marker) + len(marker)
            text = text[:start] + block + text[end:]
        else:
            text += "\n" + block + "\n"
        card.write_text(text)
        print(f"wrote {card}")


if __name__ == "__main__":
    main()
