"""Training data that mixes annotated real images with synthetic ones (the default model's last step).

Each annotated image (its points beside it, ``<stem>_points.csv``) is cut into a 4 x 4 grid of
blocks. Four blocks, one in each row and each column of the grid, go to validation and the
other twelve to training, each with the points inside it (``points/<stem>_bRC.csv``). The
synthetic pairs are linked from generated data sets: the first TRAIN training and VAL validation
images of each ``--synthetic DATA TRAIN VAL``, so that the network keeps what it learnt there.
Training samples images uniformly, so every block weighs as much as a synthetic image.

    python scripts/mix_annotated.py OUT --images assets/samples/img_hybiss_2d.tif ... \\
        --synthetic build/default-data 24 0 --synthetic build/default-clean-data 8 0

OUT must not exist yet.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import tifffile

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cerber_model.runtime.images import ImageReadError, read_image  # noqa: E402
from cerber_model.runtime.points import PointsError, points_beside, read_points, write_points  # noqa: E402

GRID = 4
#: Validation blocks: one in each row and each column of the grid.
VAL_BLOCKS = {(0, 1), (1, 3), (2, 0), (3, 2)}


def cut_blocks(image_path: Path, out: Path) -> int:
    """Write the blocks of one annotated image and their points into ``out``; the points written."""
    data = read_image(image_path).data
    points = read_points(points_beside(image_path), data.shape)
    bh, bw = data.shape[0] // GRID, data.shape[1] // GRID
    written = 0
    for i in range(GRID):
        for j in range(GRID):
            rows, cols = slice(i * bh, (i + 1) * bh), slice(j * bw, (j + 1) * bw)
            split = "val" if (i, j) in VAL_BLOCKS else "train"
            stem = f"{image_path.stem}_b{i}{j}"
            tifffile.imwrite(out / split / "images" / f"{stem}.tif", data[rows, cols])
            block = points.crop(rows, cols)
            write_points(block, out / split / "points" / f"{stem}.csv")
            written += len(block)
    return written


def link_synthetic(data: Path, out: Path, counts: dict[str, int]) -> None:
    """Link the first ``counts[split]`` pairs of each split of ``data`` into ``out``, prefixed by its name."""
    for split, count in counts.items():
        if count == 0:
            continue
        # Only where there are masks: an empty masks folder is refused by training and evaluation.
        (out / split / "masks").mkdir(exist_ok=True)
        images = sorted((data / split / "images").iterdir())[:count]
        if len(images) < count:
            raise SystemExit(f"{data / split / 'images'} has {len(images)} images, {count} asked for")
        for image in images:
            mask = data / split / "masks" / image.name
            if not mask.is_file():
                raise SystemExit(f"{image} has no mask at {mask}")
            for source, kind in ((image, "images"), (mask, "masks")):
                (out / split / kind / f"{data.name}_{image.name}").symlink_to(source.resolve())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("--images", type=Path, nargs="+", required=True, help="annotated images")
    parser.add_argument("--synthetic", nargs=3, action="append", default=[], metavar=("DATA", "TRAIN", "VAL"))
    args = parser.parse_args()
    if args.out.exists():
        parser.error(f"{args.out} exists; choose a new folder")
    for split in ("train", "val"):
        for kind in ("images", "points"):
            (args.out / split / kind).mkdir(parents=True)
    for image in args.images:
        try:
            print(f"{image.name}: {cut_blocks(image, args.out)} points in {GRID * GRID} blocks")
        except (ImageReadError, PointsError) as exc:  # the message names the file (and the line) and what is wrong
            raise SystemExit(f"{exc}\n{args.out} is incomplete; remove it before running again.") from exc
    for data, train, val in args.synthetic:
        link_synthetic(Path(data), args.out, {"train": int(train), "val": int(val)})
    for split in ("train", "val"):
        print(f"{split}: {len(list((args.out / split / 'images').iterdir()))} images")


if __name__ == "__main__":
    main()
