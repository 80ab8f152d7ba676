"""The folder report: one self-contained HTML page a person reads, prints or mails.

:func:`write_report` writes ``report.html`` (:data:`REPORT_NAME`) with, in this order: the
model and the analysis settings; the table of counts and fluences (one row per summary row,
as :func:`cerber_model.runtime.export.summary_row` gives them); a note on the linearity of
the count; the spectra as inline SVG plots drawn from the histogram counts; and small
thumbnails of the overlays. Everything is in the one file (images as base64 PNG, no scripts,
no links), so it opens anywhere and survives being copied. Every string that comes from the
user or the file system (file names, settings, notes) is HTML-escaped.

Table columns: those of the rows that hold a value in at least one row, known ones first in
a fixed order with readable headings and units, then any others under their own names;
``fluence_ci95_low``/``high`` are shown together as one interval. With several rows, settings
the rows all share (model, threshold, pixel size) are said once above the table instead of
in every row. A row covering several images (``images`` > 1, the pooled rows) is set in bold.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from .files import atomic_write
from .spectra import POOLED, QUANTITIES, Spectrum, quantity_label

REPORT_NAME = "report.html"
#: Longest side of a thumbnail (px).
THUMBNAIL_PX = 256
#: Spectra of more images than this show the pooled spectrum only (the lines would be a tangle).
MAX_IMAGE_LINES = 8
#: Known summary columns in the order shown, with their headings.
COLUMN_LABELS = {
    "file": "image",
    "track_count": "tracks",
    "area_cm2": "usable area (cm²)",
    "fluence_per_cm2": "fluence (cm⁻²)",
    "fluence_ci95": "95% interval (cm⁻²)",
    "corrected_count": "tracks, overlap-corrected",
    "corrected_fluence_per_cm2": "fluence, overlap-corrected (cm⁻²)",
    "density_per_mm2": "density (mm⁻²)",
    "images": "images",
    "area_px": "usable area (px)",
    "regions": "regions",
    "height_px": "height (px)",
    "width_px": "width (px)",
    "pixel_size_um": "pixel size (µm)",
    "pixel_size_source": "pixel size from",
    "threshold": "threshold",
    "min_contrast": "smallest contrast",
    "resolving_distance_px": "resolving distance (px)",
    "dispersion_chi2": "dispersion χ²",
    "dispersion_dof": "dispersion dof",
    "dispersion_p": "dispersion p",
    "model": "model",
    "network": "network (clean background)",
}
#: Columns kept in the table even when every row shares their value.
_ALWAYS_SHOWN = {"file", "track_count", "fluence_per_cm2", "fluence_ci95", "corrected_count",
                 "corrected_fluence_per_cm2", "density_per_mm2", "area_cm2", "area_px", "images"}
_PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")
_POOLED_COLOUR = "#b8b8b8"
_SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")

_CSS = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 2em auto; max-width: 60em; color: #222; }
h1 { font-size: 1.5em; margin-bottom: 0.2em; } h2 { font-size: 1.15em; margin-top: 1.6em; }
.meta { color: #555; margin-top: 0; }
table { border-collapse: collapse; font-size: 0.92em; }
th, td { border-bottom: 1px solid #ddd; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr.pooled td { font-weight: bold; }
.plots, .thumbs { display: flex; flex-wrap: wrap; gap: 1em; }
figure { margin: 0; break-inside: avoid; } figcaption { font-size: 0.85em; color: #444; max-width: 256px;
  overflow-wrap: anywhere; }
svg text { font: 11px system-ui, sans-serif; fill: #333; }
@media print { body { margin: 0; max-width: none; } }
"""


def write_report(path: Path | str, rows: Sequence[Mapping[str, Any]], *, settings: Mapping[str, Any],
                 model_name: str, thumbnails: Sequence[tuple[str, np.ndarray]] = (),
                 spectra: Mapping[str, Mapping[str, Spectrum]] | None = None, linearity_note: str = "",
                 title: str | None = None, created: datetime | None = None) -> Path:
    """Write the report (see the module's docstring) to ``path`` atomically; returns the path.

    rows: summary rows (dicts of column -> value; None or "" for no value), one per image and
    any pooled rows. settings: the analysis settings, shown as given (values str()-ed, dicts
    and lists as JSON). thumbnails: (image name, RGB or gray uint8 array [row, col(, 3)]), such
    as :func:`cerber_model.runtime.export.render_overlay` makes; shrunk to at most
    :data:`THUMBNAIL_PX`. spectra: per quantity (a key of
    :data:`cerber_model.runtime.spectra.QUANTITIES`, or an axis label of one's own), the
    spectra by image name on common edges, the pooled one named ``all``. linearity_note:
    plain text, paragraphs separated by blank lines. title: the page's heading (default
    "Cerber report"); created: the time printed (default now).
    """
    text = render_report(rows, settings=settings, model_name=model_name, thumbnails=thumbnails, spectra=spectra,
                         linearity_note=linearity_note, title=title, created=created)
    data = text.encode("utf-8")
    return atomic_write(path, lambda fh: fh.write(data))


def render_report(rows: Sequence[Mapping[str, Any]], *, settings: Mapping[str, Any], model_name: str,
                  thumbnails: Sequence[tuple[str, np.ndarray]] = (),
                  spectra: Mapping[str, Mapping[str, Spectrum]] | None = None, linearity_note: str = "",
                  title: str | None = None, created: datetime | None = None) -> str:
    """The report's HTML as a string (what :func:`write_report` writes)."""
    title = title or "Cerber report"
    created = created or datetime.now().astimezone()
    version = _version()
    e = _escape
    parts = [
        "<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
        f"<title>{e(title)}</title>", f"<style>{_CSS}</style>", "</head>", "<body>",
        f"<h1>{e(title)}</h1>",
        f'<p class="meta">Model <b>{e(model_name)}</b> · written {e(created.strftime("%Y-%m-%d %H:%M"))}'
        f"{e(' by Cerber ' + version) if version else ''}</p>",
        '<h2>Settings</h2>', _settings_table(settings),
        '<h2>Counts and fluence</h2>', _fluence_table(rows),
    ]
    if linearity_note.strip():
        parts.append("<h2>Linearity</h2>")
        parts += [f"<p>{e(p.strip())}</p>" for p in linearity_note.split("\n\n") if p.strip()]
    if spectra:
        parts.append('<h2>Spectra</h2><div class="plots">')
        for quantity, by_name in spectra.items():
            label = quantity_label(quantity) if quantity in QUANTITIES else quantity
            parts.append(f"<figure>{spectrum_svg(by_name, label)}<figcaption>{e(label)}</figcaption></figure>")
        parts.append("</div>")
    if thumbnails:
        parts.append('<h2>Images</h2><div class="thumbs">')
        for name, rgb in thumbnails:
            png = base64.b64encode(thumbnail_png(rgb)).decode("ascii")
            parts.append(f'<figure><img src="data:image/png;base64,{png}" alt="{e(name)}">'
                         f"<figcaption>{e(name)}</figcaption></figure>")
        parts.append("</div>")
    parts += ["</body>", "</html>", ""]
    return "\n".join(parts)


def shrink(image: np.ndarray, max_side: int = THUMBNAIL_PX) -> np.ndarray:
    """``image`` (uint8 gray or RGB) shrunk to at most ``max_side`` px on its longer side (never
    enlarged): the thumbnail a report shows of an overlay."""
    from PIL import Image as PILImage

    picture = PILImage.fromarray(np.asarray(image))
    picture.thumbnail((max_side, max_side), PILImage.Resampling.LANCZOS)
    return np.asarray(picture)


def thumbnail_png(image: np.ndarray, max_side: int = THUMBNAIL_PX) -> bytes:
    """A PNG of ``image`` (uint8, gray [row, col] or RGB [row, col, 3]) shrunk to at most
    ``max_side`` px on its longer side (never enlarged)."""
    from PIL import Image as PILImage

    array = np.asarray(image)
    if array.dtype != np.uint8 or array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] != 3):
        raise ValueError(f"a thumbnail needs a uint8 gray or RGB image, got {array.dtype} {array.shape}")
    picture = PILImage.fromarray(shrink(array, max_side))
    out = io.BytesIO()
    picture.save(out, format="PNG", optimize=True)
    return out.getvalue()


def _escape(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("cerber")
    except PackageNotFoundError:
        return ""


def _settings_table(settings: Mapping[str, Any]) -> str:
    if not settings:
        return "<p>None given.</p>"
    rows = []
    for key, value in settings.items():
        if isinstance(value, (dict, list, tuple)):
            shown = json.dumps(value, ensure_ascii=False, default=str)
        else:
            shown = "—" if value is None or value == "" else _cell_text(value)
        rows.append(f"<tr><th>{_escape(key)}</th><td>{_escape(shown)}</td></tr>")
    return '<table class="settings">' + "".join(rows) + "</table>"


def _blank(value: Any) -> bool:
    return value is None or value == "" or (isinstance(value, float) and math.isnan(value))


def _cell_text(value: Any) -> str:
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        v = float(value)
        if not math.isfinite(v):
            return ""
        if abs(v) >= 1e5 or 0 < abs(v) < 1e-3:  # as 1.66·10⁶, what people read in a table
            exponent = math.floor(math.log10(abs(v)))
            mantissa = float(f"{v / 10**exponent:.4g}")
            if abs(mantissa) >= 10:  # rounded up to the next power
                mantissa, exponent = mantissa / 10, exponent + 1
            return f"{mantissa:.4g}·10{str(exponent).translate(_SUPERSCRIPT)}"
        return str(int(round(v))) if v == int(v) or abs(v) >= 1000 else f"{v:.4g}"
    return str(value)


def _table_rows(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The rows with the two interval bounds joined into one ``fluence_ci95`` column."""
    out = []
    for row in rows:
        r = dict(row)
        low, high = r.pop("fluence_ci95_low", None), r.pop("fluence_ci95_high", None)
        if not (_blank(low) and _blank(high)):
            r["fluence_ci95"] = f"{_cell_text(low)} – {_cell_text(high)}"
        out.append(r)
    return out


def _fluence_table(rows: Sequence[Mapping[str, Any]]) -> str:
    if not rows:
        return "<p>No images were analyzed.</p>"
    table = _table_rows(rows)
    seen: list[str] = []
    for r in table:
        seen += [k for k, v in r.items() if k not in seen and not _blank(v)]
    columns = [c for c in COLUMN_LABELS if c in seen] + [c for c in seen if c not in COLUMN_LABELS]
    shared: list[tuple[str, Any]] = []
    if len(table) > 1:
        for c in [c for c in columns if c not in _ALWAYS_SHOWN]:
            values = {_cell_text(r.get(c)) if not _blank(r.get(c)) else "" for r in table}
            if len(values) == 1:
                shared.append((c, values.pop()))
                columns.remove(c)
    parts = []
    if shared:
        said = "; ".join(f"{COLUMN_LABELS.get(c, c)} {v}" for c, v in shared)
        parts.append(f'<p class="shared">Every row: {_escape(said)}.</p>')
    head = "".join(f'<th title="{_escape(c)}">{_escape(COLUMN_LABELS.get(c, c))}</th>' for c in columns)
    body = []
    for r in table:
        pooled = isinstance(r.get("images"), (int, float, np.integer, np.floating)) and r["images"] > 1
        cells = []
        for c in columns:
            value = r.get(c)
            numeric = isinstance(value, (int, float, np.integer, np.floating)) or c == "fluence_ci95"
            text = "" if _blank(value) else _cell_text(value)
            cells.append(f'<td class="num">{_escape(text)}</td>' if numeric else f"<td>{_escape(text)}</td>")
        body.append(("<tr class=\"pooled\">" if pooled else "<tr>") + "".join(cells) + "</tr>")
    parts.append(f'<table class="fluence"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>')
    return "\n".join(parts)


def _nice_ticks(lo: float, hi: float, target: int = 5) -> list[float]:
    """Round numbers (1, 2 or 5 x 10^k apart) between ``lo`` and ``hi``."""
    if not hi > lo:
        return [lo]
    raw = (hi - lo) / target
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    return [first + i * step for i in range(int((hi - first) / step + 1e-9) + 1)]


def _tick_label(v: float) -> str:
    """A short label: plain below 10^5 (and above 0.01), else as m·10ⁿ."""
    if v == 0:
        return "0"
    if 1e-2 <= abs(v) < 1e5:
        if abs(v) >= 1000 or abs(v - round(v)) < 1e-9 * abs(v):
            return str(int(round(v)))
        return f"{v:.4g}"
    exponent = math.floor(math.log10(abs(v)) + 1e-9)
    mantissa = v / 10**exponent
    power = "10" + str(exponent).translate(_SUPERSCRIPT)
    return power if abs(mantissa - 1) < 1e-9 else f"{mantissa:.3g}·{power}"


def _log_ticks(lo: float, hi: float) -> list[float]:
    """Ticks for a log axis from ``lo`` to ``hi`` (> 0): 1, 2 and 5 x 10^k over a short range,
    decades only over a long one."""
    decades = range(math.floor(math.log10(lo)) - 1, math.ceil(math.log10(hi)) + 1)
    for mantissas in ((1, 2, 5), (1,)):
        ticks = [m * 10.0**k for k in decades for m in mantissas if lo * (1 - 1e-9) <= m * 10.0**k <= hi * (1 + 1e-9)]
        if len(ticks) <= 7:
            break
    if len(ticks) > 7:  # many decades: every few
        ticks = ticks[:: math.ceil(len(ticks) / 6)]
    return ticks or [lo, hi]


def spectrum_svg(spectra: Mapping[str, Spectrum], label: str, width: int = 520, height: int = 230) -> str:
    """An inline SVG histogram: the pooled spectrum (``all``, else the sum of all) as grey bars,
    each image's as a coloured step line (up to :data:`MAX_IMAGE_LINES` images), a legend on
    the right. Log-spaced edges get a log axis. Each bar carries a tooltip: its bin and count."""
    items = [(n, s) for n, s in spectra.items() if n != POOLED]
    pooled = spectra.get(POOLED)
    if pooled is None:
        if not items:
            return "<p>No spectrum.</p>"
        pooled = items[0][1]
        for _, s in items[1:]:
            pooled = pooled + s
    edges = pooled.edges.astype(np.float64)
    log = pooled.is_log
    left, right, top, bottom = 46, 150, 10, 40  # the legend goes in the right margin
    pw, ph = width - left - right, height - top - bottom
    xe = np.log10(edges) if log else edges
    x0, x1 = float(xe[0]), float(xe[-1])
    lines = items if len(items) <= MAX_IMAGE_LINES else []
    highest = max([int(pooled.counts.max(initial=0)), *(int(s.counts.max(initial=0)) for _, s in lines), 1])
    yticks = [t for t in _nice_ticks(0, highest) if t == int(t)]
    ymax = max(highest * 1.05, yticks[-1])

    def sx(v: float) -> float:
        return left + (v - x0) / (x1 - x0) * pw

    def sy(v: float) -> float:
        return top + ph - v / ymax * ph

    e = _escape
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" role="img" aria-label="{e(label)}">']
    for i, count in enumerate(pooled.counts):
        xa, xb = sx(xe[i]), sx(xe[i + 1])
        tip = f"{_tick_label(edges[i])} – {_tick_label(edges[i + 1])}: {int(count)}"
        out.append(f'<rect class="bar" x="{xa:.2f}" y="{sy(count):.2f}" width="{max(xb - xa, 0.5):.2f}" '
                   f'height="{ph + top - sy(count):.2f}" fill="{_POOLED_COLOUR}"><title>{e(tip)}</title></rect>')
    for k, (name, s) in enumerate(lines):
        pts = [f"{sx(xe[0]):.2f},{sy(0):.2f}"]
        for i, count in enumerate(s.counts):
            pts += [f"{sx(xe[i]):.2f},{sy(count):.2f}", f"{sx(xe[i + 1]):.2f},{sy(count):.2f}"]
        pts.append(f"{sx(xe[-1]):.2f},{sy(0):.2f}")
        colour = _PALETTE[k % len(_PALETTE)]
        out.append(f'<polyline class="image" points="{" ".join(pts)}" fill="none" stroke="{colour}" '
                   f'stroke-width="1.3"><title>{e(name)}</title></polyline>')
    # Axes, ticks and labels.
    out.append(f'<path d="M{left},{top} V{top + ph} H{left + pw}" fill="none" stroke="#333"/>')
    for t in yticks:
        out.append(f'<line x1="{left - 4}" y1="{sy(t):.2f}" x2="{left}" y2="{sy(t):.2f}" stroke="#333"/>'
                   f'<text x="{left - 6}" y="{sy(t) + 4:.2f}" text-anchor="end">{int(t)}</text>')
    if log:
        xticks = [math.log10(t) for t in _log_ticks(float(edges[0]), float(edges[-1]))]
        xlabels = [_tick_label(10**t) for t in xticks]
    else:
        xticks = _nice_ticks(x0, x1)
        xlabels = [_tick_label(t) for t in xticks]
    for t, text in zip(xticks, xlabels, strict=True):
        out.append(f'<line x1="{sx(t):.2f}" y1="{top + ph}" x2="{sx(t):.2f}" y2="{top + ph + 4}" stroke="#333"/>'
                   f'<text x="{sx(t):.2f}" y="{top + ph + 16}" text-anchor="middle">{e(text)}</text>')
    out.append(f'<text x="{left + pw / 2:.1f}" y="{height - 6}" text-anchor="middle">{e(label)}</text>')
    out.append(f'<text transform="translate(12,{top + ph / 2:.1f}) rotate(-90)" text-anchor="middle">tracks</text>')
    legend = [(POOLED if POOLED in spectra else "pooled", _POOLED_COLOUR)]
    legend += [(n, _PALETTE[k % len(_PALETTE)]) for k, (n, _) in enumerate(lines)]
    for k, (name, colour) in enumerate(legend):
        y = top + 8 + 15 * k
        shown = name if len(name) <= 20 else name[:19] + "…"
        out.append(f'<rect x="{left + pw + 14}" y="{y - 8}" width="10" height="10" fill="{colour}"/>'
                   f'<text x="{left + pw + 28}" y="{y + 1}">{e(shown)}<title>{e(name)}</title></text>')
    out.append("</svg>")
    return "".join(out)
