"""Reading odd real-world files, and property-based tests: valid images round-trip, damaged ones
give ImageReadError (never another exception), and decoding stays within a memory bound."""

import hashlib
import json
import resource
from pathlib import Path

import numpy as np
import pytest
import tifffile
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from PIL import Image as PILImage

from cerber_model.runtime.images import ImageReadError, read_image

CORPUS = Path(__file__).resolve().parents[1] / "data" / "odd_images"
EXPECTED = json.loads((CORPUS / "corpus.json").read_text())


def _digest(array: np.ndarray) -> str:
    array = np.ascontiguousarray(array)
    return hashlib.sha256(array.dtype.str.encode() + str(array.shape).encode() + array.tobytes()).hexdigest()


def test_the_corpus_lists_every_file():
    files = {p.name for p in CORPUS.iterdir() if p.suffix in (".tif", ".png", ".bmp")}
    assert files == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_odd_files_read_as_what_they_hold(name):
    expected = EXPECTED[name]
    if "refused" in expected:
        with pytest.raises(ImageReadError) as info:
            read_image(CORPUS / name)
        assert expected["refused"] in str(info.value) and name in str(info.value)
        return
    image = read_image(CORPUS / name)
    assert list(image.data.shape) == expected["shape"] and image.data.dtype.name == expected["dtype"], name
    if "sha256" in expected:
        assert _digest(image.data) == expected["sha256"], f"{name}: decoded values differ from what was written"
    else:
        assert abs(float(image.data.mean()) - expected["mean"]) <= expected["tolerance"]


def test_a_stack_page_can_be_chosen():
    image = read_image(CORPUS / "imagej_stack.tif", page=2)
    assert image.shape == (40, 48)
    assert np.array_equal(image.data, tifffile.imread(CORPUS / "imagej_stack.tif")[2])


def test_a_compressed_bomb_is_refused_before_decoding(tmp_path):
    """A small zlib TIFF declaring 32768 x 32768 px (1 GiB of zeros) is refused by its header."""
    path = tmp_path / "bomb.tif"
    with tifffile.TiffWriter(path) as writer:
        writer.write(shape=(32768, 32768), dtype=np.uint8, compression="zlib", tile=(1024, 1024),
                     data=iter(np.zeros((1024, 1024), np.uint8) for _ in range(32 * 32)))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(ImageReadError, match="larger than Cerber accepts"):
        read_image(path)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200 * 1024  # KiB: nothing decoded


# -- property-based -------------------------------------------------------------------------

DTYPES = {"uint8": np.uint8, "uint16": np.uint16, "float32": np.float32}


@st.composite
def images(draw):
    rows = draw(st.integers(1, 40))
    cols = draw(st.integers(1, 40))
    dtype = draw(st.sampled_from(sorted(DTYPES)))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    if dtype == "float32":
        data = rng.normal(0, 1000, (rows, cols)).astype(np.float32)
    else:
        data = rng.integers(0, np.iinfo(DTYPES[dtype]).max, (rows, cols), endpoint=True).astype(DTYPES[dtype])
    return data


WRITERS = ["tif", "tif-lzw", "tif-zlib", "tif-tiled", "png", "bmp"]


def _write(path: Path, data: np.ndarray, writer: str) -> Path:
    if writer.startswith("tif"):
        path = path.with_suffix(".tif")
        kwargs = {"tif-lzw": {"compression": "lzw"}, "tif-zlib": {"compression": "zlib"},
                  "tif-tiled": {"tile": (16, 16)}}.get(writer, {})
        tifffile.imwrite(path, data, **kwargs)
    else:
        path = path.with_suffix("." + writer)
        PILImage.fromarray(data).save(path)
    return path


FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FUZZ
@given(data=images(), writer=st.sampled_from(WRITERS))
def test_valid_images_round_trip(tmp_path, data, writer):
    if writer in ("png", "bmp") and data.dtype == np.float32:
        return  # Pillow writes no float PNG or BMP
    if writer == "bmp" and data.dtype == np.uint16:
        return
    path = _write(tmp_path / f"x-{writer}-{data.dtype}", data, writer)
    image = read_image(path)
    assert image.data.dtype == data.dtype and np.array_equal(image.data, data)


@FUZZ
@given(data=images(), writer=st.sampled_from(WRITERS), cut=st.floats(0, 1), flips=st.lists(
    st.tuples(st.floats(0, 1), st.integers(1, 255)), max_size=8))
# Found by this test: tifffile fails on the cut data, and Pillow's reader then raised TypeError
# ("Missing dimensions") on the damaged header.
@example(data=(np.arange(9 * 18) * 37 % 256).astype(np.uint8).reshape(9, 18), writer="tif", cut=0.75,
         flips=[(0.01953125, 1)])
def test_damaged_files_give_a_clear_error_or_an_image(tmp_path, data, writer, cut, flips):
    if (writer in ("png", "bmp") and data.dtype == np.float32) or (writer == "bmp" and data.dtype == np.uint16):
        return
    path = _write(tmp_path / "y", data, writer)
    raw = bytearray(path.read_bytes())
    for where, mask in flips:
        raw[int(where * (len(raw) - 1))] ^= mask
    raw = raw[: max(1, int(len(raw) * cut))] if cut < 0.98 else raw
    path.write_bytes(bytes(raw))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    try:
        image = read_image(path)
    except ImageReadError as exc:
        assert path.name in str(exc)
    else:
        assert image.data.ndim == 2 and image.data.dtype in (np.uint8, np.uint16, np.float32)
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mib < 2.5 * 1024  # never more than the decoded-bytes cap and some slack
