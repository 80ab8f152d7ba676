"""Reading images: supported formats keep their values; bad files give one clear error."""

import struct
import zlib

import numpy as np
import pytest
import tifffile
from PIL import Image as PILImage

from cerber_model.runtime.images import ImageReadError, Normalization, normalize, read_image


@pytest.fixture
def gray16():
    return (np.arange(40 * 30, dtype=np.uint32).reshape(40, 30) * 50).astype(np.uint16)


def test_formats_keep_values(tmp_path, gray16):
    gray8 = (gray16 // 256).astype(np.uint8)
    PILImage.fromarray(gray8).save(tmp_path / "a.bmp")
    PILImage.fromarray(gray8).save(tmp_path / "b.png")
    PILImage.fromarray(gray16).save(tmp_path / "c16.png")
    tifffile.imwrite(tmp_path / "d8.tif", gray8)
    tifffile.imwrite(tmp_path / "e16.tiff", gray16)
    tifffile.imwrite(tmp_path / "f.tif", gray16.astype(np.float32) / 7)
    for name, expected in [("a.bmp", gray8), ("b.png", gray8), ("c16.png", gray16), ("d8.tif", gray8),
                           ("e16.tiff", gray16), ("f.tif", gray16.astype(np.float32) / 7)]:
        image = read_image(tmp_path / name)
        assert image.data.dtype == expected.dtype, name
        np.testing.assert_array_equal(image.data, expected, err_msg=name)
        assert image.notes == []
    assert read_image(tmp_path / "e16.tiff").bit_depth == "16-bit"


def test_colour_is_converted_to_gray_with_a_note(tmp_path):
    rgb = np.zeros((10, 12, 3), np.uint8)
    rgb[..., 1] = 200
    PILImage.fromarray(rgb).save(tmp_path / "rgb.png")
    PILImage.fromarray(np.dstack([rgb, np.full((10, 12), 255, np.uint8)])).save(tmp_path / "rgba.png")
    tifffile.imwrite(tmp_path / "rgb.tif", rgb, photometric="rgb")
    for name in ("rgb.png", "rgba.png", "rgb.tif"):
        image = read_image(tmp_path / name)
        assert image.data.shape == (10, 12) and image.data.dtype == np.uint8
        assert image.data[0, 0] == round(0.587 * 200)
        assert any("gray" in n for n in image.notes)


def test_multipage_tiff_needs_a_page(tmp_path):
    stack = np.stack([np.full((8, 8), i, np.uint16) for i in range(3)])
    tifffile.imwrite(tmp_path / "stack.tif", stack, photometric="minisblack")
    with pytest.raises(ImageReadError, match=r"stack\.tif.*stack of 3.*--page"):
        read_image(tmp_path / "stack.tif")
    assert read_image(tmp_path / "stack.tif", page=2).data[0, 0] == 2
    with pytest.raises(ImageReadError, match="page 5 does not exist"):
        read_image(tmp_path / "stack.tif", page=5)


def _png_header_only(width, height):
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
    return b"\x89PNG\r\n\x1a\n" + header + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def test_bad_files_raise_one_error_type_naming_the_file(tmp_path, gray16):
    cases = {}
    (tmp_path / "empty.png").write_bytes(b"")
    cases["empty.png"] = "empty"
    (tmp_path / "notes.tif").write_text("not an image at all")
    cases["notes.tif"] = "not a readable TIFF"
    (tmp_path / "text.png").write_text("hello")
    cases["text.png"] = "not a readable image"
    PILImage.fromarray(gray16).save(tmp_path / "full.png")
    data = (tmp_path / "full.png").read_bytes()
    (tmp_path / "truncated.png").write_bytes(data[: len(data) // 2])
    cases["truncated.png"] = "truncated|damaged"
    (tmp_path / "huge.png").write_bytes(_png_header_only(100_000, 100_000))
    cases["huge.png"] = "larger than Cerber accepts|absurd"
    bad = np.ones((5, 5), np.float32)
    bad[2, 2] = np.nan
    tifffile.imwrite(tmp_path / "nan.tif", bad)
    cases["nan.tif"] = "NaN or infinite"
    (tmp_path / "photo.jpg").write_bytes(b"\xff\xd8\xff")
    cases["photo.jpg"] = "unsupported type"
    cases["missing.tif"] = "no such file"
    for name, message in cases.items():
        with pytest.raises(ImageReadError, match=message) as info:
            read_image(tmp_path / name)
        assert name in str(info.value)


def test_inputs_are_never_written(tmp_path, gray16):
    path = tmp_path / "keep.tif"
    tifffile.imwrite(path, gray16)
    before = (path.read_bytes(), path.stat().st_mtime_ns)
    image = read_image(path)
    normalize(image.data, Normalization())
    assert (path.read_bytes(), path.stat().st_mtime_ns) == before
    np.testing.assert_array_equal(image.data, gray16)  # normalisation did not touch the array


def test_normalisation_is_bit_depth_independent(gray16):
    as8 = (gray16 // 257).astype(np.uint8)
    n16 = normalize(gray16, Normalization())
    n8 = normalize(as8, Normalization())
    assert n16.dtype == np.float32
    assert np.abs(n16 - n8).max() < 0.02
    assert normalize(as8, Normalization("scale", divisor=255)).max() <= 1.0


def test_count_pages_counts_the_images_of_a_stack_not_its_thumbnails(tmp_path):
    from cerber_model.runtime.images import count_pages

    stack = tmp_path / "stack.tif"
    tifffile.imwrite(stack, np.zeros((3, 16, 16), np.uint16), photometric="minisblack")
    with tifffile.TiffWriter(tmp_path / "thumbnail.tif") as tif:
        tif.write(np.zeros((64, 64), np.uint8))
        tif.write(np.zeros((32, 32), np.uint8), subfiletype=1)  # a reduced-resolution copy
    (tmp_path / "one.png").write_bytes(b"not even read")
    assert [count_pages(tmp_path / n) for n in ("stack.tif", "thumbnail.tif", "one.png")] == [3, 1, 1]


# -- pixel size ------------------------------------------------------------------

PLANE = np.zeros((12, 10), np.uint16)


@pytest.mark.parametrize("metadata, expected", [
    ({"PhysicalSizeX": 0.2, "PhysicalSizeXUnit": "µm", "PhysicalSizeY": 0.2, "PhysicalSizeYUnit": "µm"}, 0.2),
    ({"PhysicalSizeX": 0.65, "PhysicalSizeY": 0.65}, 0.65),  # micrometres when no unit is given
    ({"PhysicalSizeX": 325, "PhysicalSizeXUnit": "nm", "PhysicalSizeY": 325, "PhysicalSizeYUnit": "nm"}, 0.325),
    ({"PhysicalSizeX": 0.0015, "PhysicalSizeXUnit": "mm", "PhysicalSizeY": 0.0015, "PhysicalSizeYUnit": "mm"}, 1.5),
    ({"PhysicalSizeX": 4000, "PhysicalSizeXUnit": "Å", "PhysicalSizeY": 4000, "PhysicalSizeYUnit": "Å"}, 0.4),
    ({"PhysicalSizeX": 2e-4, "PhysicalSizeXUnit": "cm", "PhysicalSizeY": 2e-4, "PhysicalSizeYUnit": "cm"}, 2.0),
])
def test_pixel_size_from_ome_xml(tmp_path, metadata, expected):
    tifffile.imwrite(tmp_path / "a.ome.tif", PLANE, ome=True, metadata=metadata)
    image = read_image(tmp_path / "a.ome.tif")
    assert image.pixel_size_um == pytest.approx(expected, rel=1e-9)
    assert image.pixel_size_source == "OME-XML" and image.notes == []


def test_pixels_that_are_not_square_give_their_geometric_mean_with_a_note(tmp_path):
    tifffile.imwrite(tmp_path / "a.ome.tif", PLANE, ome=True, metadata={
        "PhysicalSizeX": 200, "PhysicalSizeXUnit": "nm", "PhysicalSizeY": 0.45, "PhysicalSizeYUnit": "µm"})
    image = read_image(tmp_path / "a.ome.tif")
    assert image.pixel_size_um == pytest.approx(0.3)  # sqrt(0.2 * 0.45): a pixel's area is 0.09 um^2
    assert any("0.2 x 0.45 um" in n and "geometric mean" in n for n in image.notes), image.notes


@pytest.mark.parametrize("unit, per_unit, expected", [
    ("CENTIMETER", 1e4 / 0.65, 0.65),  # pixels per cm
    ("INCH", 25400 / 5.0, 5.0),  # pixels per inch: a 5080 dpi scan
])
def test_pixel_size_from_resolution_tags(tmp_path, unit, per_unit, expected):
    tifffile.imwrite(tmp_path / "a.tif", PLANE, resolution=(per_unit, per_unit), resolutionunit=unit)
    image = read_image(tmp_path / "a.tif")
    assert image.pixel_size_um == pytest.approx(expected, rel=1e-6)
    assert image.pixel_size_source == "TIFF resolution tags"


@pytest.mark.parametrize("unit, expected", [("micron", 0.3), ("um", 0.3), ("\\u00B5m", 0.3), ("nm", 0.0003)])
def test_pixel_size_from_imagej_metadata(tmp_path, unit, expected):
    """ImageJ keeps the unit in its description and pixels per that unit in the resolution tags,
    whose unit it leaves at NONE (and writes the micro sign escaped)."""
    tifffile.imwrite(tmp_path / "a.tif", PLANE, imagej=True, resolution=(1 / 0.3, 1 / 0.3), metadata={"unit": unit})
    with tifffile.TiffFile(tmp_path / "a.tif") as tif:
        assert tif.pages[0].resolutionunit == 1  # NONE: without ImageJ's unit this would be unknown
    image = read_image(tmp_path / "a.tif")
    assert image.pixel_size_um == pytest.approx(expected, rel=1e-6)
    assert image.pixel_size_source == "ImageJ metadata"


def test_ome_xml_wins_over_resolution_tags(tmp_path):
    tifffile.imwrite(tmp_path / "a.ome.tif", PLANE, ome=True, resolution=(1e4, 1e4), resolutionunit="CENTIMETER",
                     metadata={"PhysicalSizeX": 0.2, "PhysicalSizeY": 0.2})
    assert read_image(tmp_path / "a.ome.tif").pixel_size_um == pytest.approx(0.2)


def test_pixel_size_unknown(tmp_path):
    tifffile.imwrite(tmp_path / "plain.tif", PLANE)  # resolution 1 x 1, unit NONE
    tifffile.imwrite(tmp_path / "none.tif", PLANE, resolution=(5, 5), resolutionunit="NONE")
    tifffile.imwrite(tmp_path / "pixel.tif", PLANE, imagej=True, resolution=(2, 2), metadata={"unit": "pixel"})
    tifffile.imwrite(tmp_path / "dpi72.tif", PLANE, resolution=(72, 72), resolutionunit="INCH")
    PILImage.fromarray(PLANE).save(tmp_path / "a.png")
    for name in ("plain.tif", "none.tif", "pixel.tif", "dpi72.tif", "a.png"):
        image = read_image(tmp_path / name)
        assert (image.pixel_size_um, image.pixel_size_source) == (None, ""), name
    # 72 dpi is what many programs write when they know nothing: not taken for 353 um pixels, and said.
    assert any("72 pixels per inch" in n and "--pixel-size" in n for n in read_image(tmp_path / "dpi72.tif").notes)


def test_an_ome_unit_that_is_not_a_length_is_said(tmp_path):
    tifffile.imwrite(tmp_path / "a.ome.tif", PLANE, ome=True, metadata={
        "PhysicalSizeX": 1, "PhysicalSizeXUnit": "pixel", "PhysicalSizeY": 1, "PhysicalSizeYUnit": "pixel"})
    image = read_image(tmp_path / "a.ome.tif")
    assert image.pixel_size_um is None and any("'pixel'" in n for n in image.notes)
