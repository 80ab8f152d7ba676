"""The ``cerber`` command: a thin layer over the cerber_model API.

    cerber analyze INPUTS... --out DIR [--model BUNDLE] [--threshold T]
                   [--pixel-size UM] [--roi FILE] [--save-probability] [--save-overlay]
                   [--save-rois] [--save-napari] [--spectra] [--report]
    cerber info [BUNDLE]
    cerber gui [IMAGES...]   (the desktop app, as its own process)
"""

from __future__ import annotations

import argparse
import glob
import signal
import sys
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

from . import __version__

if TYPE_CHECKING:
    from collections.abc import Iterator

    from .runtime.batch import BatchSettings, ImageResult
    from .runtime.images import Normalization
    from .runtime.pipeline import Outcome
    from .runtime.progress import CancelToken
    from .training import TrainingConfig

EXIT_OK, EXIT_FAILED_FILES, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def _fail(message: str) -> int:
    print(f"cerber: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def expand_inputs(inputs: list[str]) -> tuple[list[Path], list[tuple[str, str]]]:
    """Files, folders (their images, not recursive) and glob patterns -> image paths.

    Returns the paths as the user named them (a link keeps its own name; in order, without
    duplicates of the same file) and (input, problem) pairs for inputs that matched nothing.
    """
    from .runtime.images import is_image_file, list_images

    found: list[Path] = []
    problems: list[tuple[str, str]] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            images = list_images(path)
            if not images:
                problems.append((item, "folder holds no BMP, PNG or TIFF images"))
            found.extend(images)
        elif path.exists():
            found.append(path)
        elif any(ch in item for ch in "*?["):
            matches = sorted(Path(p) for p in glob.glob(item) if is_image_file(Path(p)))
            if not matches:
                problems.append((item, "pattern matches no images"))
            found.extend(matches)
        else:
            problems.append((item, "no such file or folder"))
    unique = {p.resolve(): p.absolute() for p in reversed(found)}  # the first naming of a file wins
    return list(dict.fromkeys(unique[p.resolve()] for p in found)), problems


#: What ``cerber analyze`` writes for an image, after its output stem; never read back as an input.
OUTPUT_SUFFIXES = ("_tracks.csv", "_probability.tif", "_overlay.png")


def is_output_of_ours(path: Path, out: Path) -> bool:
    """A probability map or overlay that an earlier run wrote into ``out`` (the same folder as the inputs)."""
    return path.parent.resolve() == out.resolve() and path.name.endswith(OUTPUT_SUFFIXES)


def output_stems(paths: list[Path]) -> dict[Path, str]:
    """Distinct file stems for the outputs of ``paths``: the image's stem; where stems collide, with
    its suffix (``a_bmp``); where those collide too (same name in different folders), with the
    folder's name (``in1_a_bmp``), and a number as the last resort."""
    def names(p: Path) -> tuple[str, str, str]:
        ext = p.suffix.lstrip(".")
        return p.stem, f"{p.stem}_{ext}", f"{p.parent.name}_{p.stem}_{ext}"

    stems: dict[Path, str] = {}
    for level in range(3):
        pending = [p for p in paths if p not in stems]
        counts = Counter(names(p)[level] for p in pending)
        for p in pending:
            name = names(p)[level]
            if counts[name] == 1 and name not in stems.values():
                stems[p] = name
    for p in paths:
        if p not in stems:
            n = 2
            while f"{names(p)[2]}_{n}" in stems.values():
                n += 1
            stems[p] = f"{names(p)[2]}_{n}"
    return stems


MODEL_HELP = ("model bundle folder, or the name of a model shipped with Cerber: 'default' (also when left out), "
              "'synthetic' (the default before it learnt from the two annotated samples; trained on synthetic "
              "images alone), 'clean' (the network the default runs on clean backgrounds; synthetic images "
              "alone) or 'v1' (the first default, for faint broad tracks of the prototype's look)")

MIN_CONTRAST_HELP = ("smallest track contrast, in noise SDs of the image's own background at the track's scale "
                     "(default: the model's; 0 keeps every track). Lower finds fainter spots, and more texture. "
                     "Setting it or --threshold turns the model's setting for clean backgrounds off")


def _setting_problem(args: argparse.Namespace) -> str:
    """What is wrong with a command's --threshold and --min-contrast ("" if nothing)."""
    if args.threshold is not None and not 0 < args.threshold < 1:
        return f"--threshold must be between 0 and 1, got {args.threshold}"
    if args.min_contrast is not None and not args.min_contrast >= 0:
        return f"--min-contrast must be 0 or more (noise SDs; 0 keeps every track), got {args.min_contrast:g}"
    return ""


def _load_model(model: str | None):
    """The bundle ``model`` names (a folder, or a bundled model's name); the default model for None."""
    from .runtime.bundle import load_model

    return load_model(model)


#: The spectra ``cerber analyze --spectra`` writes (``spectrum_<quantity>.csv``); diameters in um
#: only when every image's pixel size is known.
SPECTRA_QUANTITIES = ("integrated_intensity", "area_px", "diameter_px", "diameter_um")


def cmd_analyze(args: argparse.Namespace) -> int:
    from .cluster import ClusterUnavailable
    from .runtime.batch import BatchSettings
    from .runtime.bundle import BundleError
    from .runtime.dosimetry import DEFAULT_RESOLVING_DISTANCE_PX
    from .runtime.engine import resolve_engine
    from .runtime.export import write_summary_csv
    from .runtime.regions import RegionsError, load_regions
    from .runtime.report import REPORT_NAME
    from .runtime.spectra import spectra_csv_name

    problem = _setting_problem(args)
    if problem:
        return _fail(problem)
    if args.pixel_size is not None and not args.pixel_size > 0:
        return _fail(f"--pixel-size must be positive (micrometres per pixel), got {args.pixel_size}")
    paths, problems = expand_inputs(args.inputs)
    out = Path(args.out)
    ours = [p for p in paths if is_output_of_ours(p, out)]
    if ours:
        paths = [p for p in paths if p not in ours]
        print(f"cerber: note: {len(ours)} probability map(s) and overlay(s) written by an earlier run in {out} "
              "are results, not inputs; they were left out.", file=sys.stderr)
    for item, problem in problems:
        print(f"cerber: {item}: {problem}", file=sys.stderr)
    if not paths:
        return _fail("no images to analyze.")
    roi = None
    if args.roi:
        try:
            roi = load_regions(args.roi)
        except RegionsError as exc:
            return _fail(str(exc))
    try:
        bundle = _load_model(args.model)
    except BundleError as exc:
        return _fail(str(exc))
    try:
        # Resolved here, so that workers run what a local run would (auto: OpenVINO where installed).
        kind = resolve_engine(args.engine)
        engine = None if args.scheduler else _engine_with_notes(bundle, kind)  # workers make their own
    except ValueError as exc:  # an unknown $CERBER_ENGINE
        return _fail(str(exc))
    resolving = bundle.config.resolving_distance_px
    resolving = DEFAULT_RESOLVING_DISTANCE_PX if resolving is None else resolving
    settings = BatchSettings(out, args.threshold, args.pixel_size, args.page, str(args.roi or ""),
                             args.save_probability, args.save_overlay, args.save_rois, args.save_napari,
                             keep_tracks=args.spectra, thumbnail=args.report, resolving_distance_px=resolving,
                             engine=kind, min_contrast=args.min_contrast)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return _fail(f"cannot create the output folder {out} ({exc.strerror}).")
    stems = output_stems(paths)
    planned = [out / "summary.csv"] + [f for p in paths for f in settings.outputs(stems[p])]
    if args.spectra:
        planned += [out / spectra_csv_name(q) for q in SPECTRA_QUANTITIES]
    if args.report:
        planned.append(out / REPORT_NAME)
    existing = [p for p in planned if p.exists()]
    if existing and not args.overwrite:
        return _fail(f"{len(existing)} output file(s) already exist in {out} (e.g. {existing[0].name}); "
                     "choose another --out folder or pass --overwrite to replace them.")

    summaries, failed = [], []
    analyzed: list[ImageResult] = []
    items = [(p, stems[p]) for p in paths]
    try:
        for index, outcome in enumerate(_analyzed_images(items, settings, bundle, engine, roi, args), start=1):
            path = outcome.item[0]
            label = f"[{index}/{len(paths)}] {path.name}"
            if outcome.error is not None:
                failed.append((path, str(outcome.error)))
                print(f"cerber: {_failure_message(path, outcome.error, out)}", file=sys.stderr)
                continue
            result = outcome.value
            assert result is not None
            for note in result.notes:
                print(f"cerber: {path}: note: {note}", file=sys.stderr)
            summaries.append(result.summary)
            analyzed.append(result)
            if not args.quiet:
                print(f"{label}: {result.line}")
    except KeyboardInterrupt:
        print("cerber: interrupted; files already written are complete, nothing half-written was kept.",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    except ClusterUnavailable as exc:
        return _fail(str(exc))
    # Written even when every image failed, so an old summary never lists other images.
    pooled = _pooled_rows(analyzed, summaries, args.quiet)
    write_summary_csv(summaries + pooled, out / "summary.csv")
    spectra = _write_spectra(analyzed, out) if args.spectra and analyzed else {}
    if args.report:
        _write_folder_report(out / REPORT_NAME, summaries + pooled, analyzed, spectra, bundle, args, resolving)
    failed += [(Path(item), problem) for item, problem in problems]
    if failed:
        print(f"cerber: {len(failed)} input(s) failed, {len(summaries)} analyzed; results in {out}",
              file=sys.stderr)
        return EXIT_FAILED_FILES
    if not args.quiet:
        print(f"{len(summaries)} image(s) analyzed; results in {out}")
    return EXIT_OK


def _engine_with_notes(bundle, kind: str | None):
    """The bundle's engine of ``kind``; a fallback to ONNX Runtime is said in one line."""
    import warnings

    from .runtime.engine import EngineFallbackWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", EngineFallbackWarning)
        engine = bundle.engine(kind)
    for warning in caught:
        if issubclass(warning.category, EngineFallbackWarning):
            print(f"cerber: note: {warning.message}", file=sys.stderr)
        else:
            warnings.showwarning(warning.message, warning.category, warning.filename, warning.lineno)
    return engine


def _analyzed_images(items: list[tuple[Path, str]], settings: BatchSettings, bundle, engine, roi,
                     args: argparse.Namespace) -> Iterator[Outcome]:
    """The images analyzed here (stages overlapped) or on the Dask cluster at ``--scheduler``."""
    from tqdm import tqdm

    if args.scheduler:
        from .cluster import analyze_on_cluster

        bar, progress = _bar("images", args.quiet)
        with bar:
            yield from analyze_on_cluster(items, settings, args.model if args.model != "default" else None,
                                          args.scheduler, progress=progress)
        return
    from .runtime.batch import analyze_files

    with tqdm(desc="network", unit="tile", leave=False, file=sys.stderr, disable=args.quiet) as bar:
        def progress(done, total):
            if done < bar.n:  # the next image
                bar.reset()
            bar.total = total
            bar.update(done - bar.n)

        yield from analyze_files(items, settings, bundle, engine=engine, regions=roi,
                                 tile_progress=progress)


def _failure_message(path: Path, error: BaseException, out: Path) -> str:
    """What to tell the user when ``path`` could not be analyzed: the cause and what to do."""
    from .runtime.analysis import NotEnoughMemory
    from .runtime.files import FileProblem

    if isinstance(error, FileProblem):  # the message names the file, the problem and the fix
        return str(error)
    if isinstance(error, NotEnoughMemory):
        return f"{path}: {error}"
    if isinstance(error, MemoryError):
        return f"{path}: not enough memory to analyze it; close other programs, or crop or bin the image."
    if isinstance(error, OSError):
        return (f"{path}: could not be analyzed or its results saved ({error.strerror or error}); "
                f"check that {out} is writable and has free space.")
    log = _log_traceback(out, path, error)
    return (f"{path}: could not be analyzed ({type(error).__name__}: {error}); the details are in {log}. "
            "Please send that file with a problem report.")


def _pooled_rows(analyzed: list[ImageResult], summaries: list[dict], quiet: bool) -> list[dict]:
    """One pooled summary row per folder of images (``ALL``, or ``ALL <folder>`` for several folders)
    with the test of its counts against Poisson; says what it finds."""
    from .runtime.dosimetry import dispersion_test, pooled_fluence
    from .runtime.export import pooled_row

    folders: dict[Path, list[int]] = {}
    for index, item in enumerate(analyzed):
        folders.setdefault(item.path.parent, []).append(index)
    rows = []
    for folder, indices in folders.items():
        label = "ALL" if len(folders) == 1 else f"ALL {folder}"
        parts = [analyzed[i].fluence for i in indices]
        cm2 = [p.area_cm2 for p in parts if p.area_cm2 is not None]
        areas = cm2 if len(cm2) == len(parts) else [p.area_px for p in parts]
        dispersion = dispersion_test([p.track_count for p in parts], areas)
        rows.append(pooled_row(label, [summaries[i] for i in indices], parts, dispersion))
        if quiet:
            continue
        total = pooled_fluence(parts)
        line = f"{label}: {len(parts)} image(s), {total.track_count} tracks"
        if total.fluence_per_cm2 is not None:
            line += f", {total.describe()}"
        print(line)
        if dispersion is not None:
            print(f"{label}: {dispersion.describe()}")
            if dispersion.uneven:
                worst = analyzed[indices[dispersion.worst]]
                print(f"{label}: furthest from the rest: {worst.path.name} ({worst.fluence.track_count} tracks, "
                      f"{dispersion.worst_z:+.1f} SD from its share)")
    return rows


def _write_spectra(analyzed: list[ImageResult], out: Path) -> dict:
    """``spectrum_<quantity>.csv`` for the images' tracks (pooled as ``all``); returns the spectra by quantity.
    Spectra that cannot be made are said and left out."""
    from .runtime.spectra import track_spectra, write_spectra_csv

    tracks = {item.stem: item.tracks for item in analyzed if item.tracks is not None}
    acquisitions = {item.stem: item.acquisition for item in analyzed if item.acquisition is not None}
    made = {}
    for quantity in SPECTRA_QUANTITIES:
        if quantity == "diameter_um" and not all(t.pixel_size_um for t in tracks.values()):
            if (out / f"spectrum_{quantity}.csv").exists():
                print(f"cerber: note: {out / f'spectrum_{quantity}.csv'} is from an earlier run: these images' "
                      "pixel sizes are not all known, so no diameters in um were written.", file=sys.stderr)
            continue
        try:
            spectra = track_spectra(tracks, quantity, acquisitions=acquisitions)
        except ValueError as exc:
            print(f"cerber: the {quantity} spectrum was not written: {exc}", file=sys.stderr)
            continue
        write_spectra_csv(out / f"spectrum_{quantity}.csv", spectra, quantity)
        made[quantity] = spectra
    return made


def _write_folder_report(path: Path, rows: list[dict], analyzed: list[ImageResult], spectra: dict, bundle,
                         args: argparse.Namespace, resolving: float) -> None:
    from .runtime.dosimetry import linearity_note
    from .runtime.report import write_report

    settings = {
        "inputs": " ".join(args.inputs),
        "model": f"{bundle.name} ({bundle.path})" if bundle.path else bundle.name,
        "threshold": _threshold_setting(args, bundle.config),
        "pixel size (um)": args.pixel_size if args.pixel_size is not None else "from each file, where it says",
        "regions": str(args.roi) if args.roi else "<stem>_regions.json beside each image, where there is one",
        "page": args.page,
    }
    thumbnails = [(item.path.name, item.thumbnail) for item in analyzed if item.thumbnail is not None]
    write_report(path, rows, settings=settings, model_name=bundle.name, thumbnails=thumbnails, spectra=spectra,
                 linearity_note=linearity_note(resolving))


def _threshold_setting(args: argparse.Namespace, config) -> str | float:
    """The threshold (and smallest contrast) as the report's settings give them: the user's, where
    either was given (the other is then the model's), else the model's own."""
    if args.threshold is None and args.min_contrast is None:
        return _own_threshold(config)
    threshold = config.threshold if args.threshold is None else args.threshold
    min_contrast = config.min_contrast if args.min_contrast is None else args.min_contrast
    return f"{threshold:g} (smallest contrast {min_contrast:g})" if min_contrast > 0 else threshold


def _own_threshold(config) -> str | float:
    """The model's own threshold as the report's settings give it, with its setting for clean backgrounds."""
    clean = config.clean_background
    if clean is None:
        return config.threshold
    return (f"{config.threshold:g} (smallest contrast {config.min_contrast:g}); on a clean background "
            f"{clean.threshold:g} (smallest contrast {clean.min_contrast:g}): each image's in its row")


def _log_traceback(out: Path, path: Path, error: BaseException) -> Path:
    """Append ``error``'s traceback to ``out/cerber.log``; returns the log's path."""
    import datetime
    import traceback

    text = "".join(traceback.format_exception(error))
    log = out / "cerber.log"
    try:
        with open(log, "a", encoding="utf-8") as fh:
            fh.write(f"{datetime.datetime.now().isoformat(timespec='seconds')} {path}\n{text}\n")
    except OSError:
        print(text, file=sys.stderr)
        return Path("(the console: the log could not be written)")
    return log


def cmd_info(args: argparse.Namespace) -> int:
    from .runtime.bundle import BundleError, describe_bundle
    from .runtime.engine import engine_kind, openvino_installed, resolve_engine

    try:
        bundle = _load_model(args.model)
        kind = engine_kind()
    except BundleError as exc:
        return _fail(str(exc))
    except ValueError as exc:  # an unknown $CERBER_ENGINE
        return _fail(str(exc))
    print(describe_bundle(bundle))
    runs = resolve_engine(kind)
    how = {"auto": " (auto: OpenVINO where it is installed)"}.get(kind, f" (asked for: {kind})")
    if runs == "openvino" and not openvino_installed():  # make_engine falls back, with a warning
        runs, how = "onnxruntime", " (openvino asked for, but not installed)"
    print(f"Engine here:   {runs}{how}")
    return EXIT_OK


def _bar(desc: str, quiet: bool):
    """A tqdm bar on stderr and a ``progress(done, total)`` function that drives it."""
    from tqdm import tqdm

    bar = tqdm(desc=desc, file=sys.stderr, disable=quiet, leave=True)

    def progress(done, total):
        bar.total = total
        bar.update(done - bar.n)

    return bar, progress


def cmd_generate(args: argparse.Namespace) -> int:
    import json

    from .runtime.synthesis import (
        RECIPE_NAMES,
        AnyRecipe,
        MixedRecipe,
        Recipe,
        generate_dataset,
        named_recipe,
        recipe_from_dict,
    )

    try:
        recipe: AnyRecipe
        if args.recipe in RECIPE_NAMES:
            recipe = named_recipe(args.recipe)
        else:
            recipe = recipe_from_dict(json.loads(Path(args.recipe).read_text())) if args.recipe else Recipe()
        changes: dict[str, object] = {}
        if args.size:
            changes.update(height=args.size[0], width=args.size[1])
        if args.tracks:
            changes["tracks"] = tuple(args.tracks)
        if args.snr:
            changes["snr"] = tuple(args.snr)
        if args.smoothed_fraction is not None:
            if isinstance(recipe, Recipe):
                return _fail("--smoothed-fraction needs the realistic recipe (--recipe realistic or clean)")
            changes["smoothed_fraction"] = args.smoothed_fraction
        if args.backgrounds:
            if isinstance(recipe, Recipe):
                return _fail("--backgrounds needs the realistic recipe (--recipe realistic)")
            from .runtime.realistic import background_files

            background_files(args.backgrounds)
            changes["backgrounds"] = str(Path(args.backgrounds).resolve())
        if isinstance(recipe, MixedRecipe):
            recipe = recipe.with_settings(changes)
        else:
            recipe = recipe_from_dict({**recipe.to_dict(), **changes})
    except (OSError, ValueError, TypeError, KeyError) as exc:
        return _fail(f"bad recipe: {exc}")
    bar, progress = _bar("generating", args.quiet)
    try:
        with bar:
            generate_dataset(args.out, args.count, args.seed, recipe, args.val_fraction, args.workers, progress)
    except (FileExistsError, ValueError, OSError) as exc:
        return _fail(str(exc))
    except KeyboardInterrupt:
        print("cerber: interrupted; the images written so far are complete.", file=sys.stderr)
        return EXIT_INTERRUPTED
    print(f"{args.count} images written to {args.out}")
    return EXIT_OK


def _start_from(value: str | None) -> str:
    """A --start-from value as a model folder (a bundled model's name, such as "default", is its
    folder), relative to the working folder when inside it (it is kept in the new model's provenance)."""
    if not value:
        return ""
    from .runtime.bundle import model_path

    path = model_path(value)
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def background_settings(normalization: Normalization, block: int | None, noise_scale: float | None,
                        fix: str) -> Normalization:
    """``normalization`` with ``--background-block`` and ``--noise-scale`` applied where given.

    Raises ValueError naming the option when the normalisation is not "background" (``fix``
    says what to do) or a value is out of range.
    """
    from dataclasses import replace

    for option, value in (("--background-block", block), ("--noise-scale", noise_scale)):
        if value is not None and normalization.method != "background":
            raise ValueError(f"{option} goes with the background normalisation: {fix}")
    if block is not None:
        normalization = replace(normalization, block=block)
    if noise_scale is not None:
        normalization = replace(normalization, noise_scale=noise_scale)
    return normalization


def training_config(args: argparse.Namespace) -> TrainingConfig:
    """The TrainingConfig of ``cerber train``'s arguments. Fine-tuning (``--start-from``) keeps the
    starting model's inputs and loss, with fewer epochs and a lower learning rate
    (:func:`~cerber_model.training.config.fine_tuning_settings`), unless the options say otherwise."""

    from .runtime.images import Normalization
    from .training import FRESH_NORMALIZATION, TrainingConfig
    from .training.config import fine_tuning_settings

    start_from = _start_from(args.start_from)
    settings: dict = {"normalization": FRESH_NORMALIZATION}
    if start_from:
        from .runtime.bundle import BundleError, load_bundle

        try:
            settings = fine_tuning_settings(load_bundle(start_from).config)
        except BundleError:  # training says what is wrong with it
            pass
    if args.normalization:
        settings["normalization"] = (FRESH_NORMALIZATION if args.normalization == "background"
                                     else Normalization(args.normalization))
    fix = ("leave them out with --normalization percentile" if args.normalization == "percentile"
           else "add --normalization background (or start from a model that has it)")
    settings["normalization"] = background_settings(settings["normalization"], args.background_block,
                                                    args.noise_scale, fix)
    given = {"epochs": args.epochs, "learning_rate": args.lr, "focal_gamma": args.focal_gamma,
             "focal_alpha": args.focal_alpha}
    settings |= {key: value for key, value in given.items() if value is not None}
    return TrainingConfig(width=args.width, steps_per_epoch=args.steps, patch_size=args.patch_size,
                          batch_size=args.batch_size, seed=args.seed, patience=args.patience, xla=args.xla,
                          start_from=start_from, **settings)


def cmd_train(args: argparse.Namespace) -> int:
    from .runtime.datasets import DatasetSpec
    from .runtime.progress import Cancelled, CancelToken
    from .training import TrainingError, estimate_cost, train, training_unavailable
    from .training.events import BatchDone, EpochDone, Inspected, Stopped, TrainingEvent
    from .training.loop import check_output, work_folder

    if problem := training_unavailable():
        return _fail(problem)
    # The settings, and what --out and its checkpoints hold, are checked before anything is read,
    # built or replaced.
    if not 0 < args.val_fraction < 1:
        return _fail(f"--val-fraction must be between 0 and 1 (got {args.val_fraction})")
    try:
        config = training_config(args)
        checkpoint = check_output(args.out, overwrite=args.overwrite, resume=args.resume)
    except (TrainingError, ValueError) as exc:
        return _fail(str(exc))
    if args.resume and checkpoint is None:
        print(f"cerber: nothing to resume in {work_folder(Path(args.out))}; starting afresh.", file=sys.stderr)
    if not args.quiet:
        print(estimate_cost(config).summary())
    spec = DatasetSpec.from_folder(args.data, val_fraction=args.val_fraction, seed=args.seed)
    bar, progress = _bar("training", args.quiet)

    def on_event(event: TrainingEvent) -> None:
        if isinstance(event, Inspected):
            bar.write(event.report)
        elif isinstance(event, BatchDone):
            bar.set_description(f"epoch {event.epoch}/{event.epochs}")
            bar.set_postfix(loss=f"{event.loss:.4g}", eta=f"{event.eta_s / 60:.0f} min")
            progress(event.batch, event.batches)
        elif isinstance(event, EpochDone):
            bar.write(f"epoch {event.epoch}: loss {event.loss:.4g}, val loss {event.val_loss:.4g}, "
                      f"F1 {event.val_f1:.3f} (P {event.val_precision:.3f}, R {event.val_recall:.3f}) "
                      f"at threshold {event.val_threshold:.2f}, smallest contrast {event.val_min_contrast:g}, "
                      f"{event.seconds:.0f} s")
            bar.reset()
        elif isinstance(event, Stopped):
            bar.write(f"stopped: {event.reason}")

    token = CancelToken()
    signals = _StopOnSignal(token)
    work = work_folder(Path(args.out))
    try:
        with signals, bar:
            bundle = train(config, spec, args.out, callback=on_event, cancel=token, resume=args.resume,
                           overwrite=args.overwrite)
    except (TrainingError, Cancelled) as exc:
        if not signals.received:
            return _fail(str(exc))
        what = "before training started; nothing was written" if isinstance(exc, Cancelled) else exc
        print(f"cerber: interrupted {what}", file=sys.stderr)
        return signals.exit_code
    except KeyboardInterrupt:  # a second signal: no model is written
        print(f"cerber: aborted; no model was written; {work} keeps the checkpoints of the last whole epoch "
              "for --resume.", file=sys.stderr)
        return signals.exit_code if signals.received else EXIT_INTERRUPTED
    if signals.received:
        run = bundle.config.provenance
        print(f"cerber: interrupted; the best model so far (epoch {run['best_epoch']} of {run['epochs_run']}, "
              f"F1 {bundle.config.metrics['val_f1']:.3f}) was saved to {args.out}; {work} keeps the checkpoints: "
              "continue with --resume.", file=sys.stderr)
        return signals.exit_code
    print(f"model saved to {args.out}")
    return EXIT_OK


class _StopOnSignal:
    """While in use, SIGINT (Ctrl+C) and SIGTERM (a cluster's scheduler, a closed terminal) ask the
    work to stop as the app's Stop does: ``token`` is cancelled with the reason "interrupted", and
    the work ends cleanly with what it has. A second signal raises KeyboardInterrupt (at once)."""

    def __init__(self, token: CancelToken):
        self.token = token
        self.received: list[int] = []
        self.previous: dict[int, object] = {}

    def _handle(self, signum: int, frame: object) -> None:
        self.received.append(signum)
        if len(self.received) > 1:
            raise KeyboardInterrupt
        self.token.cancel("interrupted")
        print(f"\ncerber: {signal.Signals(signum).name}: stopping after this batch to save the best model so far "
              "(once more to abort without saving)", file=sys.stderr, flush=True)

    @property
    def exit_code(self) -> int:
        """128 + the signal's number, as shells report a process a signal ended (130, 143)."""
        return 128 + self.received[-1]

    def __enter__(self) -> _StopOnSignal:
        for signum in (signal.SIGINT, signal.SIGTERM):
            try:
                self.previous[signum] = signal.signal(signum, self._handle)
            except ValueError:  # not the main thread: signals keep their handlers
                pass
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .runtime.bundle import BundleError
    from .runtime.evaluation import evaluate

    problem = _setting_problem(args)
    if problem:
        return _fail(problem)
    try:
        bundle = _load_model(args.model)
    except BundleError as exc:
        return _fail(str(exc))
    pairs, problems = _scoring_pairs(Path(args.data))
    if problems or not pairs:
        return _fail("the data cannot be evaluated:\n" + "\n".join(str(p) for p in problems))
    bar, progress = _bar("evaluating", args.quiet)
    with bar:
        result = evaluate(bundle, pairs, args.radius, args.threshold, progress=progress, min_contrast=args.min_contrast)
    print(result.table())
    return EXIT_OK


def _scoring_pairs(root: Path):
    """The (pairs, problems) a model is scored on: DATA/val/images (or DATA/images) with their
    masks or points."""
    from .runtime.datasets import find_pairs

    folder = root / "val" if (root / "val" / "images").is_dir() else root
    masks = folder / "masks"
    pairs, problems, _ = find_pairs(folder / "images", masks if masks.is_dir() else None)
    return pairs, problems


def cmd_threshold(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from .runtime.bundle import BundleError, replace_problem, save_bundle, training_record
    from .runtime.evaluation import CONTRASTS, sweep_thresholds

    if args.min_contrast is not None and not 0 <= args.min_contrast <= 100:
        return _fail(f"--min-contrast must be from 0 to 100 noise SDs, got {args.min_contrast:g}")
    if args.grow_to is not None and not 0 < args.grow_to < 1:
        return _fail(f"--grow-to must be a fraction of the threshold between 0 and 1, got {args.grow_to:g}")
    try:
        bundle = _load_model(args.model)
    except BundleError as exc:
        return _fail(str(exc))
    try:
        normalization = background_settings(bundle.config.normalization, args.background_block, args.noise_scale,
                                            f"{args.model} uses {bundle.config.normalization.method!r}")
    except ValueError as exc:
        return _fail(str(exc))
    if args.out and (problem := replace_problem(Path(args.out))):
        return _fail(problem)
    if args.out and Path(args.out).exists() and not args.overwrite:
        return _fail(f"{args.out} already exists; choose a new folder for the model with the chosen threshold, "
                     "or allow replacing the model there (--overwrite).")
    pairs, problems = _scoring_pairs(Path(args.data))
    if problems or not pairs:
        return _fail("the data cannot be scored:\n" + "\n".join(str(p) for p in problems))
    contrasts = CONTRASTS if args.min_contrast is None else (args.min_contrast,)
    grow_to = bundle.config.grow_to if args.grow_to is None else args.grow_to
    bar, progress = _bar("scoring", args.quiet)
    with bar:
        sweep = sweep_thresholds(bundle.engine(), pairs, normalization, min_area_px=bundle.config.min_area_px,
                                 radius=args.radius, contrasts=contrasts, grow_to=grow_to, progress=progress)
    threshold, min_contrast = sweep.best_setting
    if len(contrasts) > 1:
        print(f"{'contrast':>8}  {'threshold':>9}  {'F1':>5}   (the best threshold at each smallest contrast)")
        for k, row in sweep.by_contrast.items():
            t = max(row, key=lambda t: (row[t].f1, -abs(t - 0.5)))
            print(f"{k:8g}  {t:9.2f}  {row[t].f1:5.3f}" + ("  <- best" if k == min_contrast else ""))
    print(f"at smallest contrast {min_contrast:g}:")
    print(f"{'threshold':>9}  {'precision':>9}  {'recall':>6}  {'F1':>5}")
    own = bundle.config.threshold
    for t, m in sweep.by_contrast[min_contrast].items():
        mark = "  <- best" if t == threshold else ("  (the model's)" if abs(t - own) < 1e-6 else "")
        print(f"{t:9.2f}  {m.precision:9.3f}  {m.recall:6.3f}  {m.f1:5.3f}{mark}")
    if args.out:
        config = replace(bundle.config, normalization=normalization, threshold=threshold, min_contrast=min_contrast,
                         clean_background=bundle.config.clean_background if min_contrast > 0 else None,
                         grow_to=grow_to, name=Path(args.out).name)
        # The copy carries the curves of the training that made its weights (not those of a model it replaces).
        save_bundle(replace(bundle, config=config), args.out, overwrite=args.overwrite,
                    extra_files=training_record(bundle.path) if bundle.path else None)
        print(f"model with threshold {threshold:.2f} and smallest contrast {min_contrast:g} saved to {args.out}")
    return EXIT_OK


def cmd_selftest(args) -> int:
    from .runtime.bundle import BundleError
    from .runtime.selftest import run_selftest

    if not 64 <= args.size <= 4096:
        return _fail(f"--size must be from 64 to 4096 px, got {args.size}")
    try:
        bundle = _load_model(args.model) if args.model else None
        result = run_selftest(bundle, size=args.size)
    except BundleError as exc:
        print(f"selftest FAILED: {exc}")
        return EXIT_FAILED_FILES
    print(result.line())
    return EXIT_OK if result.ok else EXIT_FAILED_FILES


def cmd_gui(args) -> int:
    # The desktop app is a separate package that depends on this one, never the other way:
    # start it as its own process.
    import importlib.util
    import subprocess

    if importlib.util.find_spec("cerber_gui") is None or importlib.util.find_spec("PySide6") is None:
        return _fail("the desktop app is not installed; install it with: pip install -e '.[gui]'")
    command = [sys.executable, "-m", "cerber_gui", *args.images] + (["--model", args.model] if args.model else [])
    return subprocess.call(command)


def build_parser() -> argparse.ArgumentParser:
    from .runtime.engine import ENGINES
    from .training.config import FINE_TUNE_EPOCHS, FINE_TUNE_LEARNING_RATE, TrainingConfig

    parser = argparse.ArgumentParser(prog="cerber", description="Detect particle tracks in microscope images.")
    parser.add_argument("--version", action="version", version=f"cerber {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    a = sub.add_parser("analyze", help="analyze images and write track tables",
                       description="Analyze images: one tracks CSV per image and a summary.csv.")
    a.add_argument("inputs", nargs="+", help="image files, folders or glob patterns (BMP, PNG, TIFF)")
    a.add_argument("--out", required=True, help="folder for the results (created if missing)")
    a.add_argument("--model", help=MODEL_HELP)
    a.add_argument("--threshold", type=float, help="probability threshold (default: the model's)")
    a.add_argument("--min-contrast", type=float, metavar="SDS", help=MIN_CONTRAST_HELP)
    a.add_argument("--pixel-size", type=float, metavar="UM",
                   help="micrometres per pixel, for fluences per cm^2 (default: what each TIFF's OME-XML, ImageJ "
                        "metadata or resolution tags say)")
    a.add_argument("--page", type=int, help="page of multi-page TIFFs (0-based)")
    a.add_argument("--save-probability", action="store_true", help="also write <name>_probability.tif (float32)")
    a.add_argument("--save-overlay", action="store_true", help="also write <name>_overlay.png")
    a.add_argument("--roi", metavar="FILE",
                   help="usable area for every image: a regions JSON or an ImageJ .roi/.zip (default: "
                        "<name>_regions.json, .zip or .roi beside each image, where there is one); tracks outside "
                        "it are dropped and fluences are over its area")
    a.add_argument("--save-rois", action="store_true", help="also write <name>_rois.zip (an ImageJ/Fiji ROI set)")
    a.add_argument("--save-napari", action="store_true", help="also write <name>_napari.csv (a napari points layer)")
    a.add_argument("--spectra", action="store_true",
                   help="also write spectrum_<quantity>.csv: histograms of integrated intensity, area and diameter "
                        "per image and pooled")
    a.add_argument("--report", action="store_true", help="also write report.html (counts, fluences, spectra, "
                                                           "overlays in one page)")
    a.add_argument("--engine", choices=ENGINES,
                   help="inference engine (default: $CERBER_ENGINE, else auto: openvino where it is installed, else "
                        "onnxruntime); one that does not give ONNX Runtime's output on the model's test input is "
                        "replaced by ONNX Runtime, with a note")
    a.add_argument("--scheduler", metavar="ADDRESS",
                   help="send one task per image to the Dask cluster whose scheduler is at ADDRESS "
                        "(tcp://host:8786); workers read the inputs and write the results on shared storage "
                        "(needs: pip install 'cerber[cluster]')")
    a.add_argument("--overwrite", action="store_true", help="replace existing result files")
    a.add_argument("--quiet", action="store_true", help="no progress bars or per-image lines")
    a.set_defaults(func=cmd_analyze)

    g = sub.add_parser("generate", help="write a synthetic training data set",
                       description="Synthetic spots on uneven, noisy backgrounds, with masks and true centres.")
    g.add_argument("out", help="new folder for train/ and val/ (must be empty or missing)")
    g.add_argument("--count", type=int, required=True, help="number of images (train + val)")
    g.add_argument("--seed", type=int, required=True, help="random seed; same seed, same images")
    g.add_argument("--size", type=int, nargs=2, metavar=("HEIGHT", "WIDTH"), help="image size (default 1608 1608)")
    g.add_argument("--tracks", type=int, nargs=2, metavar=("MIN", "MAX"), help="tracks per image (default 0 20)")
    g.add_argument("--snr", type=float, nargs=2, metavar=("LOW", "HIGH"),
                   help="track amplitude / noise SD range (default: the prototype's amplitudes)")
    g.add_argument("--recipe", metavar="NAME_OR_JSON",
                   help="recipe to start from: a named one (training: what the v1 model was trained on, "
                        "as the wizard generates; prototype: the prototype's defaults; realistic: small, "
                        "clustered and saturated spots among clutter, 8/12/16-bit cameras; clean: the same "
                        "without clutter; the default model learnt from realistic and clean; mixed: 7 in 10 "
                        "images realistic, 3 in 10 training) or a recipe JSON "
                        "(see recipe.json of a generated set)")
    g.add_argument("--smoothed-fraction", type=float, metavar="F",
                   help="realistic (or clean, or mixed) recipe: share of images whose noise is smoothed over "
                        "0.4-1.2 px, as processing leaves most microscope images (default 0.5; 0 for a camera "
                        "whose noise is white)")
    g.add_argument("--backgrounds", metavar="DIR",
                   help="realistic (or mixed) recipe: draw backgrounds from the lab's own images in DIR (their spots "
                        "are found and painted over first, so they never count as background)")
    g.add_argument("--val-fraction", type=float, default=0.2, help="share of images for validation (default 0.2)")
    g.add_argument("--workers", type=int, help="processes (default: all cores); output is the same for any number")
    g.add_argument("--quiet", action="store_true")
    g.set_defaults(func=cmd_generate)

    t = sub.add_parser("train", help="train a model on image/mask folders",
                       description="Train on DATA/train/{images,masks} (+ DATA/val/...) and save the best epoch.")
    t.add_argument("data", help="data folder with train/images, train/masks and optionally val/images, val/masks")
    t.add_argument("--out", required=True, help="model folder to write")
    # The defaults are TrainingConfig's, as in the wizard.
    d = TrainingConfig()
    t.add_argument("--width", type=int, default=d.width, help="network width n (default %(default)s)")
    t.add_argument("--epochs", type=int,
                   help=f"epochs to train (default {d.epochs}; {FINE_TUNE_EPOCHS} with --start-from)")
    low, high = TrainingConfig.AUTO_STEPS
    t.add_argument("--steps", type=int, default=d.steps_per_epoch,
                   help=f"batches per epoch (default: from the data, {low}-{high}: about "
                        f"{TrainingConfig.AUTO_PASSES} passes over the training images, so fine-tuning on a few "
                        "images is quick)")
    t.add_argument("--patch-size", "--patch", type=int, default=d.patch_size,
                   help="side of the training patches in px, a multiple of 4 (default %(default)s)")
    t.add_argument("--batch-size", "--batch", type=int, default=d.batch_size,
                   help="patches per training step (default %(default)s)")
    t.add_argument("--lr", type=float,
                   help=f"learning rate (default {d.learning_rate:g}; {FINE_TUNE_LEARNING_RATE:g} with --start-from)")
    t.add_argument("--focal-gamma", type=float,
                   help="focusing of the focal loss: 0 is plain cross-entropy; higher values squash the "
                        f"probabilities of easy pixels (default {d.focal_gamma:g}; with --start-from the "
                        "starting model's)")
    t.add_argument("--focal-alpha", type=float,
                   help="weight of the track class in the focal loss, 0-1; 0.5 weighs both classes alike "
                        f"(default {d.focal_alpha:g}; with --start-from the starting model's)")
    t.add_argument("--seed", type=int, default=d.seed,
                   help="seed of the initial weights, the patches and the validation split (default %(default)s)")
    t.add_argument("--patience", "--early-stopping", type=int, default=d.patience,
                   help="epochs without a better validation F1 before stopping (0 = never; default %(default)s)")
    t.add_argument("--val-fraction", type=float, default=0.2, help="held out when DATA has no val/ folder")
    t.add_argument("--xla", action=argparse.BooleanOptionalAction, default=d.xla,
                   help="compile the training step with XLA (default %(default)s); "
                        "--no-xla: about 2x slower, about 1 GiB less memory")
    t.add_argument("--start-from", metavar="MODEL",
                   help="start from this model folder's weights instead of random ones (fine-tuning; "
                        "a bundled model's name: 'default', 'v1'); --width must match it")
    t.add_argument("--normalization", choices=("percentile", "background"),
                   help="how images become network input: 'percentile' stretches each image's 1st-99.8th "
                        "percentiles to 0..1 (the v1 model's); 'background' subtracts the local background and "
                        "divides by the local noise SD, counted at a spot's size (--noise-scale 1.5) "
                        "(default: the --start-from model's, else background, as the default model's)")
    t.add_argument("--background-block", type=int, metavar="PX",
                   help="with the background normalisation (--normalization background, or a --start-from "
                        "model that has it): the side of the blocks in which the background and the noise "
                        "are estimated (default 16 px; a starting model's own otherwise)")
    t.add_argument("--noise-scale", type=float, metavar="PX",
                   help="with the background normalisation: count the noise as it is at this scale, the "
                        "size of a spot (its SD), rather than from pixel to pixel, so that noise that is "
                        "smooth over a few pixels, as in most microscope images, is not taken for spots "
                        "(0 = pixel noise; default 1.5 px, a starting model's own otherwise)")
    t.add_argument("--resume", action="store_true", help="continue the last run into --out")
    t.add_argument("--overwrite", action="store_true", help="replace an existing model at --out")
    t.add_argument("--quiet", action="store_true")
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("evaluate", help="score a model (and a LoG baseline) against ground truth",
                       description="Precision, recall and F1 of matched track centres, per image and overall, "
                                   "for the model and a Laplacian-of-Gaussian detector tuned on the same images.")
    e.add_argument("model", help=MODEL_HELP)
    e.add_argument("data", help="data folder: DATA/val/{images,masks} (or DATA/{images,masks})")
    e.add_argument("--radius", type=float, default=3.0, help="matching radius in px (default 3)")
    e.add_argument("--threshold", type=float, help="probability threshold (default: the model's)")
    e.add_argument("--min-contrast", type=float, metavar="SDS", help=MIN_CONTRAST_HELP)
    e.add_argument("--quiet", action="store_true")
    e.set_defaults(func=cmd_evaluate)

    h = sub.add_parser("threshold", help="choose a model's decision threshold on annotated images",
                       description="F1 of matched track centres at thresholds 0.10-0.90 (and smallest track "
                                   "contrasts) on DATA's validation images (masks or points); with --out, a copy of "
                                   "the model with the best ones.")
    h.add_argument("model", help=MODEL_HELP)
    h.add_argument("data", help="data folder: DATA/val/{images,masks|points} (or DATA/{images,...})")
    h.add_argument("--out", metavar="NEW_MODEL", help="save a copy of the model with the best threshold here (a new "
                                                       "folder, or an existing model with --overwrite)")
    h.add_argument("--background-block", type=int, metavar="PX",
                   help="models with the background normalisation: score (and save) with blocks of this size")
    h.add_argument("--noise-scale", type=float, metavar="PX",
                   help="models with the background normalisation: score (and save) with the noise counted at "
                        "this scale (see cerber train --noise-scale)")
    h.add_argument("--min-contrast", type=float, metavar="SDS",
                   help="keep only tracks this many noise SDs above the image's own background at their own "
                        "size (0: all); without it the best of 0, 3, 4, 5, 6, 7 and 8 is chosen with the threshold")
    h.add_argument("--grow-to", type=float, metavar="FRACTION",
                   help="score (and save) with tracks grown down to this fraction of the threshold, those only "
                        "growing makes kept where round (README, \"Tracks that grow\"; default: the model's own)")
    h.add_argument("--overwrite", action="store_true",
                   help="replace the model at --out (its other files, such as a model card, are kept)")
    h.add_argument("--radius", type=float, default=3.0, help="matching radius in px (default 3)")
    h.add_argument("--quiet", action="store_true")
    h.set_defaults(func=cmd_threshold)

    w = sub.add_parser("gui", help="open the desktop app", description="Open the desktop app (same as cerber-gui).")
    w.add_argument("images", nargs="*", help="images or folders to open")
    w.add_argument("--model", help=MODEL_HELP)
    w.set_defaults(func=cmd_gui)

    s = sub.add_parser("selftest", help="check the installation on a synthetic image with known tracks",
                       description="Analyze a synthetic image with known tracks and check they are found.")
    s.add_argument("--model", help=MODEL_HELP)
    s.add_argument("--size", type=int, default=512, help="image side in px (default 512)")
    s.set_defaults(func=cmd_selftest)

    i = sub.add_parser("info", help="describe a model bundle")
    i.add_argument("model", nargs="?", help=MODEL_HELP)
    i.set_defaults(func=cmd_info)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
