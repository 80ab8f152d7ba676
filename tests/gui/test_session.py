"""The app's session driven without a window, and without Qt."""

import subprocess
import sys

import numpy as np
import pytest
import tifffile

from cerber_gui.exports import ExportKind, nothing_to_export, suggested_path, write_export
from cerber_gui.session import Session, read_images
from cerber_model.runtime.analysis import analyze
from cerber_model.runtime.bundle import load_default_bundle


def spots_image(path, centres, shape=(96, 96), amplitude=3000, seed=0):
    rng = np.random.default_rng(seed)
    rr, cc = np.indices(shape)
    data = 400 + rng.normal(0, 30, shape)
    for r, c in centres:
        data += amplitude * np.exp(-0.5 * ((rr - r) ** 2 + (cc - c) ** 2) / 2.5**2)
    tifffile.imwrite(path, data.clip(0, 65535).astype(np.uint16))
    return path


def record(session):
    """Every event the session emits, in order, as (name, args)."""
    seen = []
    for name in vars(session.events):
        getattr(session.events, name).connect(lambda *args, n=name: seen.append((n, args)))
    return seen


def test_the_session_and_exports_import_no_qt():
    code = ("import sys, cerber_gui.session, cerber_gui.annotations, cerber_gui.exports, cerber_gui.dose, "
            "cerber_gui.region_editor; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('PySide6', 'pyqtgraph', 'shiboken6')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_opening_files_and_folders(tmp_path, bundle):
    folder = tmp_path / "folder"
    folder.mkdir()
    b = spots_image(folder / "b.tif", [(40, 40)])
    a = spots_image(folder / "a.tif", [(50, 50)])
    (folder / "notes.txt").write_text("not an image")
    (folder / ".hidden.tif").write_bytes(b"")
    empty = tmp_path / "empty"
    empty.mkdir()
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    single = spots_image(tmp_path / "single.tif", [(30, 30)])
    session = Session(bundle)
    seen = record(session)
    assert not session.can_analyze  # nothing open yet
    report = session.open([single, folder, empty, broken])
    assert report.added == [single.resolve(), a.resolve(), b.resolve()]  # folder contents sorted by name
    assert list(session.images) == report.added
    assert report.empty_folders == [empty]
    assert len(report.unreadable) == 1 and "broken.png" in report.unreadable[0]
    assert report.opened == [folder, single] and report.folder == tmp_path
    assert seen == [("images_added", ([single.resolve()],)), ("selected", (single.resolve(),)),  # as they are read
                    ("images_added", ([a.resolve()],)), ("images_added", ([b.resolve()],))]
    assert session.selected == single.resolve() and session.can_analyze
    # Opening an open image again adds nothing and keeps the selection, but it counts as opened.
    seen.clear()
    again = session.open([a])
    assert again.added == [] and again.opened == [a] and seen == [] and session.selected == single.resolve()
    with pytest.raises(KeyError):
        session.select(tmp_path / "never-opened.tif")


def test_jobs_carry_the_settings_they_were_started_with(tmp_path, bundle):
    session = Session(bundle, pixel_size_um=0.5)
    paths = [spots_image(tmp_path / f"{i}.tif", [(30 + 10 * i, 40)]) for i in range(3)]
    session.open(paths)
    own = round(bundle.config.threshold, 2)
    assert session.threshold == own  # the model's threshold in the slider's steps of 0.01
    seen = record(session)
    assert session.queue_unanalyzed() == [p.resolve() for p in paths]
    job = session.next_job()
    assert session.busy and not session.can_analyze and seen == [("busy_changed", (True,))]
    # At the model's own threshold the job leaves it to the model (its setting for clean backgrounds included).
    assert (job.path, job.threshold, job.pixel_size_um, job.waiting) == (paths[0].resolve(), None, 0.5, 2)
    assert job.image is session.images[job.path] and job.bundle is bundle
    session.set_threshold(0.7)
    session.set_pixel_size(0)
    assert (job.threshold, job.pixel_size_um) == (None, 0.5)  # a snapshot: later changes do not reach it
    assert session.pixel_size_um is None
    assert session.queue_unanalyzed() == [] and not session.queue_selected()  # not while busy
    result = analyze(job.image, job.bundle, threshold=job.threshold, pixel_size_um=job.pixel_size_um)
    seen.clear()
    session.add_result(job, result)
    assert session.results[job.path] is result and seen == [("result_added", (job.path,))]
    second = session.next_job()
    assert (second.path, second.threshold, second.pixel_size_um, second.waiting) == (paths[1].resolve(), 0.7, None, 1)
    session.clear_queue()  # what cancelling does
    seen.clear()
    assert session.next_job() is None and not session.busy and seen == [("busy_changed", (False,))]
    # Analyze all queues only the images without a result; analyze queues the selected one.
    assert session.queue_unanalyzed() == [p.resolve() for p in paths[1:]]
    session.clear_queue()
    session.select(paths[2].resolve())
    assert session.queue_selected() and session.queue == [paths[2].resolve()]


def test_retracking_uses_the_current_settings_and_a_new_model_drops_results(tmp_path, bundle):
    session = Session(bundle)
    path = spots_image(tmp_path / "two.tif", [(30, 30), (60, 70)]).resolve()
    session.open([path])
    assert session.retrack_job() is None  # nothing analyzed yet
    session.queue_selected()
    job = session.next_job()
    session.add_result(job, analyze(job.image, job.bundle, threshold=job.threshold))
    assert session.selected_result().tracks.count == 2
    session.set_threshold(0.9)
    retrack = session.retrack_job()
    assert (retrack.path, retrack.threshold, retrack.min_area_px) == (path, 0.9, bundle.config.min_area_px)
    assert retrack.result is session.results[path]
    seen = record(session)
    other = analyze(job.image, bundle, threshold=0.99).tracks
    assert session.set_tracks(retrack, other) and session.results[path].tracks is other
    assert seen == [("tracks_changed", (path,))]
    # A new model: results go, the threshold becomes the model's, and late tracks are dropped.
    seen.clear()
    session.set_bundle(bundle)
    assert session.results == {} and session.threshold == round(bundle.config.threshold, 2)
    assert seen == [("model_changed", (bundle,))]
    assert not session.set_tracks(retrack, other) and session.results == {}
    assert seen == [("model_changed", (bundle,))]


def test_exports_name_their_files_after_the_image_and_summarise_every_result(tmp_path, bundle):
    session = Session(bundle)
    paths = [spots_image(tmp_path / f"{n}.tif", centres).resolve()
             for n, centres in [("one", [(40, 40)]), ("three", [(20, 20), (50, 60), (75, 30)])]]
    session.open(paths)
    assert nothing_to_export(ExportKind.TRACKS, session) == "Analyze the image first."
    assert nothing_to_export(ExportKind.SUMMARY, session) == "Analyze some images first."
    session.queue_unanalyzed()
    while (job := session.next_job()) is not None:
        session.add_result(job, analyze(job.image, job.bundle, threshold=job.threshold))
    assert all(nothing_to_export(kind, session) is None for kind in ExportKind)
    assert suggested_path(ExportKind.OVERLAY, session, tmp_path / "last") == tmp_path / "one_overlay.png"
    assert suggested_path(ExportKind.SUMMARY, session, tmp_path / "last") == tmp_path / "last" / "summary.csv"
    write_export(ExportKind.SUMMARY, session, tmp_path / "summary.csv", opacity=0.6)
    lines = (tmp_path / "summary.csv").read_text().splitlines()
    assert [line.split(",")[:4] for line in lines[1:]] == [[str(paths[0]), "96", "96", "1"],
                                                            [str(paths[1]), "96", "96", "3"],
                                                            ["ALL", "", "", "4"]]  # pooled, as cerber analyze


def test_a_result_that_arrives_after_a_new_model_is_dropped(tmp_path, bundle):
    session = Session(bundle)
    path = spots_image(tmp_path / "late.tif", [(40, 40)]).resolve()
    session.open([path])
    session.queue_selected()
    job = session.next_job()
    result = analyze(job.image, job.bundle, threshold=job.threshold)
    session.set_bundle(load_default_bundle())  # the user loads a model while the analysis runs
    seen = record(session)
    assert not session.add_result(job, result)
    assert session.results == {} and seen == []
    assert session.next_job() is None  # the job has ended
    # Loading the very same model again counts as a new model too: its threshold was reset.
    session.queue_selected()
    job = session.next_job()
    session.set_bundle(session.bundle)
    assert not session.add_result(job, analyze(job.image, job.bundle, threshold=job.threshold))
    assert session.results == {}


def test_tracks_from_an_old_probability_map_do_not_reach_a_newer_result(tmp_path, bundle):
    session = Session(bundle)
    path = spots_image(tmp_path / "again.tif", [(30, 30), (60, 70)]).resolve()
    session.open([path])
    session.queue_selected()
    job = session.next_job()
    session.add_result(job, analyze(job.image, job.bundle, threshold=job.threshold))
    assert session.next_job() is None
    session.set_threshold(0.9)
    retrack = session.retrack_job()  # re-tracking the first result starts...
    session.queue_selected()
    job = session.next_job()
    newer = analyze(job.image, job.bundle, threshold=job.threshold)
    session.add_result(job, newer)  # ...and the image is analyzed again before it ends
    newer_tracks = newer.tracks
    seen = record(session)
    stale = analyze(retrack.result.image, bundle, threshold=0.99).tracks
    assert not session.set_tracks(retrack, stale)
    assert session.results[path] is newer and newer.tracks is newer_tracks and seen == []


def test_tracks_not_at_the_current_settings_are_re_tracked(tmp_path, bundle):
    session = Session(bundle)
    paths = [spots_image(tmp_path / f"{n}.tif", [(30, 30), (60, 70)]).resolve() for n in ("a", "b")]
    session.open(paths)
    session.queue_unanalyzed()
    job = session.next_job()  # started at the model's threshold...
    session.set_threshold(0.7)  # ...the slider moves while it runs
    assert session.retrack_job() is None  # nothing to re-track yet
    session.add_result(job, analyze(job.image, job.bundle, threshold=job.threshold))
    assert not session.tracks_current(job.path)
    retrack = session.retrack_job()  # the result arrived at the model's: its tracks are re-found at 0.7
    assert (retrack.path, retrack.threshold) == (job.path, 0.7)
    session.set_tracks(retrack, analyze(job.image, bundle, threshold=0.7).tracks)
    assert session.tracks_current(job.path) and session.retrack_job() is None
    # The other image, analyzed at 0.7, then the threshold goes back: selecting it re-tracks it.
    second = session.next_job()
    session.add_result(second, analyze(second.image, second.bundle, threshold=second.threshold))
    session.set_pixel_size(0.5)
    session.select(second.path)
    assert (session.retrack_job().path, session.retrack_job().pixel_size_um) == (second.path, 0.5)


def test_closing_images_drops_them_their_results_queue_places_and_late_work(tmp_path, bundle):
    session = Session(bundle)
    a, b, c = (spots_image(tmp_path / f"{n}.tif", [(40, 40)]).resolve() for n in "abc")
    session.open([a, b, c])
    session.queue_unanalyzed()
    job = session.next_job()  # a is being analyzed; b and c wait
    result = analyze(job.image, job.bundle, threshold=job.threshold)
    seen = record(session)
    assert session.close([a]) == [a]
    assert seen == [("images_closed", ([a],)), ("selected", (b,))]  # the next image is shown
    assert list(session.images) == [b, c] and session.queue == [b, c]
    assert not session.add_result(job, result) and a not in session.results  # it came too late
    session.open([a])  # opened again, it is a new image: the old job's result still does not apply
    assert not session.add_result(job, result)
    second = session.next_job()
    session.add_result(second, analyze(second.image, second.bundle, threshold=second.threshold))
    session.select(c)
    assert session.close([c, tmp_path / "never-open.tif"]) == [c]
    assert session.selected == a.resolve() and session.queue == [] and list(session.results) == [b]
    # Annotation ends with its image; unsaved points are the window's to ask about first.
    session.select(b)
    session.annotate(True)
    session.annotations.click(10, 10)
    with pytest.raises(RuntimeError):
        session.close([b])
    session.annotations.revert()
    seen.clear()
    assert session.close_all() == [b, a]
    assert seen == [("annotating_changed", (False,)), ("images_closed", ([b, a],)), ("selected", (None,))]
    assert (session.images, session.results, session.selected, session.annotations) == ({}, {}, None, None)
    # Files still being read when everything is closed are not added when they arrive.
    job = session.start_open([a])
    session.close_all()
    assert not session.add_read(job, next(read_images(job.files))) and session.images == {}


class _StubEngine:
    """The normalised image over its maximum as the probability map (spots near 1, background near 0
    whether the inputs are in percentiles or in noise units): no network, the same work around it."""

    name = "stub"

    def predict(self, x):
        return np.clip(x / max(float(x.max()), 1e-6), 0, 1).astype(np.float32)


def test_soak_open_analyze_close_100_images_keeps_memory_flat(tmp_path, bundle):
    import gc
    import tracemalloc

    path = spots_image(tmp_path / "soak.tif", [(60, 60), (150, 180)], shape=(256, 256))
    session, engine = Session(bundle), _StubEngine()

    def cycle():
        session.open([path])
        session.queue_selected()
        job = session.next_job()
        assert session.add_result(job, analyze(job.image, job.bundle, threshold=job.threshold, engine=engine))
        assert session.next_job() is None
        session.close_all()

    for _ in range(5):  # first-time allocations (imports, caches) are not growth
        cycle()
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        for _ in range(100):
            cycle()
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    assert (session.images, session.results, session.reading, session.queue, session.job) == ({}, {}, {}, [], None)
    # Each image holds ~0.6 MiB while open (pixels 128 KiB, probability map and labels 256 KiB each):
    # keeping even the pixels of every closed image would grow by 12.5 MiB.
    assert grown < 2**20, f"grew by {grown / 2**20:.1f} MiB over 100 images"


def test_a_clean_image_keeps_the_models_clean_setting_at_its_own_threshold_only(tmp_path, bundle):
    """Analyzed at the model's own threshold, an image with a clean background gets the model's
    setting for those, as `cerber analyze` gives it; its tracks count as current (no endless
    re-tracking). Off the model's threshold every image gets the slider's value, and back at it the
    clean setting returns."""
    clean = bundle.config.clean_background
    assert clean is not None
    session = Session(bundle)
    # 320 px: room for one window of 256 px, on which the texture is counted.
    path = spots_image(tmp_path / "a.tif", [(30, 40), (60, 60)], shape=(320, 320)).resolve()
    session.open([path])
    session.queue_unanalyzed()
    job = session.next_job()
    session.add_result(job, analyze(job.image, job.bundle, threshold=job.threshold))
    tracks = session.results[path].tracks
    assert tracks.clean_background and tracks.threshold == clean.threshold
    assert session.retrack_job() is None
    for threshold, expect_clean in ((0.5, False), (bundle.config.threshold, True)):
        session.set_threshold(threshold)
        job = session.retrack_job()
        assert job is not None
        session.set_tracks(job, job.result.tracks_at(job.threshold, job.min_area_px, job.pixel_size_um,
                                                     job.min_contrast, job.clean))
        tracks = session.results[path].tracks
        assert tracks.clean_background == expect_clean
        assert tracks.threshold == (clean.threshold if expect_clean else threshold)
        assert session.retrack_job() is None
