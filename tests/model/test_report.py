"""The folder report: a self-contained HTML page, read back as a browser would parse it."""

import base64
import io
from datetime import datetime
from html.parser import HTMLParser

import numpy as np
import pytest
from PIL import Image as PILImage

from cerber_model.runtime.report import render_report, thumbnail_png, write_report
from cerber_model.runtime.spectra import folder_spectra

ODD_NAME = 'a<b>&"c".tif'


class _Page(HTMLParser):
    """What a reader of the page sees: the fluence table's cells, images, plots, headings."""

    def __init__(self, text):
        super().__init__()
        self.tags, self.stack = [], []
        self.header, self.rows, self.row_classes = [], [], []
        self.images, self.bars, self.lines, self.svgs = [], [], [], 0
        self.headings, self.paragraphs, self.settings = [], [], {}
        self._text = None
        self.feed(text)
        self.close()

    def _inside(self, tag, cls=None):
        return any(t == tag and (cls is None or cls in (a.get("class") or "").split()) for t, a in self.stack)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append(tag)
        if tag not in ("img", "meta", "br", "line", "path"):
            self.stack.append((tag, a))
        if tag == "img":
            self.images.append((a["alt"], a["src"]))
        if tag == "svg":
            self.svgs += 1
        if tag == "rect" and a.get("class") == "bar":
            self.bars.append(a)
        if tag == "polyline":
            self.lines.append(a)
        if tag == "tr" and self._inside("table", "fluence") and self._inside("tbody"):
            self.rows.append([])
            self.row_classes.append(a.get("class"))
        if tag in ("td", "th", "h2", "p", "title"):
            self._text = ""

    def handle_endtag(self, tag):
        while self.stack:
            t, a = self.stack.pop()
            if t == tag:
                break
        if tag in ("td", "th", "h2", "p", "title") and self._text is not None:
            text, self._text = self._text, None
            if tag == "td" and self._inside("table", "fluence"):
                self.rows[-1].append(text)
            elif tag == "th" and self._inside("table", "fluence"):
                self.header.append(text)
            elif tag == "th" and self._inside("table", "settings"):
                self._key = text
            elif tag == "td" and self._inside("table", "settings"):
                self.settings[self._key] = text
            elif tag == "h2":
                self.headings.append(text)
            elif tag == "p":
                self.paragraphs.append(text)
            elif tag == "title" and self._inside("rect") and self.bars:
                self.bars[-1]["tip"] = text

    def handle_data(self, data):
        if self._text is not None:
            self._text += data


def _rows():
    base = {"height_px": 400, "width_px": 600, "pixel_size_um": 0.5, "threshold": 0.5, "model": "default-v2",
            "density_per_mm2": None, "regions": ""}
    return [
        {**base, "file": "first.tif", "track_count": 120, "fluence_per_cm2": 2.0e6,
         "fluence_ci95_low": 1.66e6, "fluence_ci95_high": 2.39e6, "images": 1},
        {**base, "file": ODD_NAME, "track_count": 95, "fluence_per_cm2": 1.58e6,
         "fluence_ci95_low": 1.28e6, "fluence_ci95_high": 1.93e6, "images": 1, "regions": "x_regions.json"},
        {**base, "file": "third.tif", "track_count": 101, "fluence_per_cm2": 1.68e6,
         "fluence_ci95_low": 1.37e6, "fluence_ci95_high": 2.04e6, "images": 1},
        {**base, "file": "ALL", "track_count": 316, "fluence_per_cm2": 1.75e6,
         "fluence_ci95_low": 1.56e6, "fluence_ci95_high": 1.95e6, "images": 3},
    ]


def _spectra():
    rng = np.random.default_rng(3)
    intensity = {n: rng.lognormal(8 + i * 0.3, 0.3, 100) for i, n in enumerate(["first.tif", ODD_NAME, "third.tif"])}
    area = {n: rng.integers(3, 30, 80) for n in intensity}
    return {"integrated_intensity": folder_spectra(intensity, bins=24, log=True),
            "area_px": folder_spectra(area, bins=40, integer=True)}


def _report(tmp_path, **kwargs):
    red = np.zeros((400, 600, 3), np.uint8)
    red[..., 0] = 255
    gray = np.full((40, 50), 128, np.uint8)
    args = dict(settings={"threshold": 0.5, "pixel size": "0.5 µm (from the TIFF)", "note": "<script>x</script>"},
                model_name="default-v2 <dev>", thumbnails=[("first.tif", red), (ODD_NAME, gray)],
                spectra=_spectra(), linearity_note="Counts are linear up to 1e6 per cm².\n\nAbove, they saturate.",
                created=datetime(2026, 3, 1, 12, 0))
    args.update(kwargs)
    path = write_report(tmp_path / "report.html", _rows(), **args)
    return path, path.read_text(encoding="utf-8")


def test_report_has_a_row_per_image_and_the_pooled_row_in_bold(tmp_path):
    path, text = _report(tmp_path)
    assert text.startswith("<!DOCTYPE html>")
    page = _Page(text)
    assert [r[0] for r in page.rows] == ["first.tif", ODD_NAME, "third.tif", "ALL"]
    assert page.row_classes == [None, None, None, "pooled"]
    header = page.header
    assert header[:4] == ["image", "tracks", "fluence (cm⁻²)", "95% interval (cm⁻²)"]
    row = dict(zip(header, page.rows[0], strict=True))
    assert (row["tracks"], row["fluence (cm⁻²)"], row["95% interval (cm⁻²)"]) == ("120", "2·10⁶", "1.66·10⁶ – 2.39·10⁶")
    assert dict(zip(header, page.rows[1], strict=True))["regions"] == "x_regions.json"
    # Columns no row fills are left out; settings every row shares are said once, not repeated.
    assert "density (mm⁻²)" not in header and "tracks, overlap-corrected" not in header
    assert "threshold" not in header and "model" not in header
    shared = next(p for p in page.paragraphs if p.startswith("Every row:"))
    assert "threshold 0.5" in shared and "model default-v2" in shared and "pixel size (µm) 0.5" in shared
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]


def test_user_strings_are_escaped(tmp_path):
    _, text = _report(tmp_path)
    assert "a&lt;b&gt;&amp;&quot;c&quot;.tif" in text
    assert ODD_NAME not in text
    page = _Page(text)
    assert "script" not in page.tags and "dev" not in page.tags
    assert page.settings["note"] == "<script>x</script>"
    assert page.settings["pixel size"] == "0.5 µm (from the TIFF)"
    assert [alt for alt, _ in page.images] == ["first.tif", ODD_NAME]
    assert "default-v2 &lt;dev&gt;" in text


def test_thumbnails_are_small_pngs_of_the_overlays(tmp_path):
    _, text = _report(tmp_path)
    images = _Page(text).images
    decoded = []
    for _, src in images:
        assert src.startswith("data:image/png;base64,")
        decoded.append(PILImage.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))).convert("RGB"))
    assert decoded[0].size == (256, 171)  # 600 x 400 shrunk to 256 on its longer side
    assert decoded[1].size == (50, 40)  # small images are not enlarged
    assert np.asarray(decoded[0])[80, 128].tolist() == [255, 0, 0]
    assert np.asarray(decoded[1])[20, 25].tolist() == [128, 128, 128]
    with pytest.raises(ValueError, match="uint8"):
        thumbnail_png(np.zeros((4, 4), np.float32))


def test_spectra_plots_show_the_counts(tmp_path):
    _, text = _report(tmp_path)
    page = _Page(text)
    spectra = _spectra()
    assert page.svgs == 2
    assert "Spectra" in page.headings and "Linearity" in page.headings
    n_intensity = len(spectra["integrated_intensity"]["all"].counts)
    n_area = len(spectra["area_px"]["all"].counts)
    assert len(page.bars) == n_intensity + n_area
    counts = [int(b["tip"].rsplit(": ", 1)[1]) for b in page.bars]
    assert counts == spectra["integrated_intensity"]["all"].counts.tolist() + spectra["area_px"]["all"].counts.tolist()
    # Taller bars for larger counts, and one line per image in each plot.
    heights = np.array([float(b["height"]) for b in page.bars[:n_intensity]])
    assert np.argmax(heights) == np.argmax(spectra["integrated_intensity"]["all"].counts)
    assert len(page.lines) == 2 * 3
    assert "integrated intensity (image units)" in text and "area (px)" in text
    assert any("linear up to 1e6" in p for p in page.paragraphs) and any("saturate" in p for p in page.paragraphs)


def test_report_without_images_or_spectra_still_reads(tmp_path):
    text = render_report([], settings={}, model_name="m", thumbnails=[], spectra=None, linearity_note="")
    page = _Page(text)
    assert page.rows == [] and page.images == [] and page.svgs == 0
    assert "No images were analyzed." in page.paragraphs
    assert "Spectra" not in page.headings and "Linearity" not in page.headings
