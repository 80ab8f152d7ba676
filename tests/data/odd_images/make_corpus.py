"""Writes the corpus of odd image files in this folder and ``corpus.json``, what each must read as.

The files come from different writers (tifffile with imagecodecs, Pillow with libtiff, hand-patched
headers) in the layouts and compressions microscopes, cameras and Fiji produce, plus damaged and
hostile ones. Each entry of ``corpus.json`` says either what the decoded gray image must be (shape,
dtype, and the SHA-256 of the expected array or, for lossy files, the mean with a tolerance) or a
phrase the refusal must contain. Run it again only to add files: ``python make_corpus.py``.
"""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image as PILImage

HERE = Path(__file__).resolve().parent
GRAY_WEIGHTS = np.array([0.299, 0.587, 0.114], np.float32)


def digest(array: np.ndarray) -> str:
    array = np.ascontiguousarray(array)
    return hashlib.sha256(array.dtype.str.encode() + str(array.shape).encode() + array.tobytes()).hexdigest()


def gray_of(rgb: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(rgb[..., :3].astype(np.float32) @ GRAY_WEIGHTS), 0, 255).astype(np.uint8)


def main() -> None:
    rng = np.random.default_rng(20261128)
    rows, cols = np.indices((40, 48))
    g16 = ((rows * 48 + cols) * 13 % 4096 + rng.integers(0, 64, (40, 48))).astype(np.uint16)
    g8 = (g16 >> 4).astype(np.uint8)
    rgb = np.stack([g8, 255 - g8, (g8 // 2 + 60).astype(np.uint8)], axis=-1)
    bits = g8 > 128
    corpus: dict[str, dict] = {}

    def exact(name: str, expected: np.ndarray, note: str = "") -> None:
        corpus[name] = {"shape": list(expected.shape), "dtype": expected.dtype.name, "sha256": digest(expected),
                        "note": note}

    def near(name: str, expected: np.ndarray, tolerance: float, note: str = "") -> None:
        corpus[name] = {"shape": list(expected.shape), "dtype": expected.dtype.name,
                        "mean": float(expected.mean()), "tolerance": tolerance, "note": note}

    def refused(name: str, phrase: str, note: str = "") -> None:
        corpus[name] = {"refused": phrase, "note": note}

    t = tifffile.imwrite
    t(HERE / "lzw_16bit.tif", g16, compression="lzw")
    exact("lzw_16bit.tif", g16, "LZW, what Fiji and many microscopes write")
    t(HERE / "lzw_predictor_16bit.tif", g16, compression="lzw", predictor=True)
    exact("lzw_predictor_16bit.tif", g16, "LZW with horizontal differencing")
    t(HERE / "lzw_predictor_float32.tif", g16.astype(np.float32) / 7, compression="lzw", predictor=True)
    exact("lzw_predictor_float32.tif", g16.astype(np.float32) / 7, "LZW with the floating-point predictor")
    t(HERE / "zstd_16bit.tif", g16, compression="zstd")
    exact("zstd_16bit.tif", g16)
    t(HERE / "deflate_bigendian_16bit.tif", g16, compression="zlib", byteorder=">")
    exact("deflate_bigendian_16bit.tif", g16, "big-endian (Motorola) byte order")
    t(HERE / "packbits_8bit.tif", g8, compression="packbits")
    exact("packbits_8bit.tif", g8)
    t(HERE / "tiled_16bit.tif", g16, tile=(16, 16))
    exact("tiled_16bit.tif", g16, "tiles instead of strips")
    t(HERE / "packed_12bit.tif", g16 & 0xFFF, bitspersample=12)
    exact("packed_12bit.tif", g16 & 0xFFF, "12-bit packed, as many cameras write")
    t(HERE / "packed_4bit.tif", g8 >> 4, bitspersample=4)
    exact("packed_4bit.tif", g8 >> 4, "4-bit packed")
    t(HERE / "packed_2bit.tif", g8 >> 6, bitspersample=2)
    exact("packed_2bit.tif", g8 >> 6, "2-bit packed")
    t(HERE / "bilevel_1bit.tif", bits)
    exact("bilevel_1bit.tif", bits.astype(np.uint8) * 255, "1-bit, read as 0/255")
    t(HERE / "jpeg_rgb.tif", rgb, compression="jpeg", photometric="rgb")
    near("jpeg_rgb.tif", gray_of(rgb), 2.0, "JPEG-compressed colour TIFF (lossy)")
    t(HERE / "planar_rgb.tif", np.moveaxis(rgb, -1, 0), photometric="rgb", planarconfig="separate")
    exact("planar_rgb.tif", gray_of(rgb), "planar (separate) RGB: three samples, not three images")
    t(HERE / "gray_alpha.tif", np.stack([g8, 255 - g8], -1), photometric="minisblack", extrasamples=["unassalpha"])
    exact("gray_alpha.tif", g8, "gray + alpha: two samples, not a stack")
    t(HERE / "imagej_stack.tif", np.stack([g16, g16 // 2, g16 // 3]), imagej=True)
    refused("imagej_stack.tif", "is a stack of 3 images", "an ImageJ stack needs a page choice")
    with tifffile.TiffWriter(HERE / "with_thumbnail.tif") as writer:
        writer.write(g16)
        writer.write(g16[::4, ::4], subfiletype=1)  # a reduced-resolution copy
    exact("with_thumbnail.tif", g16, "a reduced-resolution page beside the image")

    PILImage.fromarray(bits).save(HERE / "ccitt_g4.tif", compression="group4")
    exact("ccitt_g4.tif", bits.astype(np.uint8) * 255, "CCITT Group 4 fax compression (libtiff)")
    PILImage.fromarray(g8).save(HERE / "pillow_lzw_8bit.tif", compression="tiff_lzw")
    exact("pillow_lzw_8bit.tif", g8, "LZW written by libtiff")
    PILImage.fromarray(rgb).save(HERE / "pillow_jpeg_rgb.tif", compression="jpeg")
    near("pillow_jpeg_rgb.tif", gray_of(rgb), 2.0, "JPEG in TIFF written by libtiff")
    PILImage.fromarray(rgb).convert("P", palette=PILImage.Palette.ADAPTIVE, colors=16).save(HERE / "palette.png")
    with PILImage.open(HERE / "palette.png") as im:
        exact("palette.png", gray_of(np.asarray(im.convert("RGB"))), "palette PNG")
    PILImage.fromarray(g8).save(HERE / "gray.bmp")
    exact("gray.bmp", g8)

    # Hostile and damaged files.
    data = bytearray((HERE / "lzw_16bit.tif").read_bytes())
    (HERE / "truncated_lzw.tif").write_bytes(bytes(data[: len(data) // 2]))
    refused("truncated_lzw.tif", "not a readable TIFF", "cut in half")
    t(HERE / "declares_8gib.tif", np.zeros((8, 8, 4), np.float64), photometric="rgb", extrasamples=["unassalpha"])
    _patch_size(HERE / "declares_8gib.tif", 16384, 16384)
    refused("declares_8gib.tif", "GiB once decoded", "a 1 KB file declaring 16384 x 16384 RGBA float64")
    (HERE / "not_an_image.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    refused("not_an_image.png", "not a readable image")

    (HERE / "corpus.json").write_text(json.dumps(corpus, indent=1, sort_keys=True) + "\n")


def _patch_size(path: Path, width: int, height: int) -> None:
    """Rewrite the ImageWidth and ImageLength tags of a little-endian classic TIFF in place."""
    data = bytearray(path.read_bytes())
    assert data[:4] == b"II*\x00"
    (ifd,) = struct.unpack_from("<I", data, 4)
    (count,) = struct.unpack_from("<H", data, ifd)
    for i in range(count):
        entry = ifd + 2 + 12 * i
        tag, kind = struct.unpack_from("<HH", data, entry)
        if tag in (256, 257):
            value = width if tag == 256 else height
            if kind == 3:
                struct.pack_into("<H", data, entry + 8, value)
            else:
                struct.pack_into("<I", data, entry + 8, value)
    path.write_bytes(bytes(data))


if __name__ == "__main__":
    main()
