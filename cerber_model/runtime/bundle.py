"""Model bundles: a trained model as a folder.

A bundle folder holds::

    config.json    what the model is: network, input normalisation, decision
                   threshold, minimum track area, provenance, metrics, and the
                   SHA-256 of every other file
    weights.npz    the weights, {"layer/variable": array} (numpy, no pickles)
    model.onnx     the fused graph for the light engine, made from weights.npz

Bundles are written atomically (a temporary folder in the same place, then a
rename) and validated on loading: a missing file, an unknown format version, a
checksum mismatch, weights that do not fit the configuration, or a graph that does
not run or does not give the probe output recorded on saving raise
:class:`BundleError` naming the file and what to do. Replacing a folder is refused
unless it holds a Cerber model, and the user's own files in it are kept.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .architecture import ConfigError, NetworkConfig, parameter_shapes
from .engine import REFERENCE_ENGINE, engine_kind, resolve_engine
from .files import temporary_folder
from .images import Normalization

#: Version 2 added the "background" normalisation, version 3 its noise scale, version 4 the
#: smallest track contrast, version 5 the network of another bundled model on clean backgrounds
#: (``CleanBackground.network``), version 6 the coarse look there (``CleanBackground.coarse``),
#: version 7 contrast counted by its rarity there (``CleanBackground.rarity``); older configs
#: load unchanged. An older Cerber refuses a newer version instead of misreading it.
FORMAT_VERSION = 7
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "weights.npz"
ONNX_FILE = "model.onnx"
#: Where the default model lives, relative to the cerber_model package folder: package data, so
#: a source tree, an installed wheel and the frozen app (which keeps the package's layout) have it alike.
DEFAULT_BUNDLE_RELPATH = Path("models") / "default"


class BundleError(Exception):
    """A model bundle cannot be used; the message names the file, the cause and the fix."""


@dataclass(frozen=True)
class CleanBackground:
    """The setting a model uses on images whose background is clean: a texture
    (:attr:`~cerber_model.runtime.contrast.SpotContrast.texture`, dark dips per megapixel) of at
    most ``max_texture``. There a faint bump is rarely anything but a spot, so a lower
    ``threshold`` and smallest contrast ``min_contrast`` find fainter tracks. With ``coarse``, the
    network looks again at the image binned 2 x 2 (:func:`~cerber_model.runtime.analysis.coarse_look`),
    where broad faint spots stand out twice as far from the noise; its tracks that overlap none
    found at full resolution are added. With ``rarity``, contrast there is counted by how rarely
    noise reaches it at the track's scale (:attr:`~cerber_model.runtime.contrast.SpotContrast.rarity`),
    so that broad faint tracks need fewer noise SDs than small ones."""

    threshold: float
    min_contrast: float
    max_texture: float
    #: The bundled model (its name, as :func:`bundled_models` lists them) whose network analyzes these
    #: images; None: the model's own network.
    network: str | None = None
    coarse: bool = False
    rarity: bool = False

    def __post_init__(self) -> None:
        for name in ("coarse", "rarity"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"clean_background {name} must be true or false, got {getattr(self, name)!r}")
        if not 0.0 < float(self.threshold) < 1.0:
            raise ConfigError(f"clean_background threshold must be between 0 and 1, got {self.threshold!r}")
        if self.network is not None and (not isinstance(self.network, str) or Path(self.network).name != self.network
                                         or self.network in ("", ".", "..")):
            raise ConfigError(f"clean_background network must name a model shipped with Cerber (such as "
                              f"'clean'), got {self.network!r}")
        if not 0 < float(self.min_contrast) <= 100:
            raise ConfigError(f"clean_background min_contrast must be above 0 and at most 100 noise SDs, "
                              f"got {self.min_contrast!r}")
        if not 0 <= float(self.max_texture) < 1e6:
            raise ConfigError(f"clean_background max_texture must be dips per megapixel from 0, "
                              f"got {self.max_texture!r}")

    def to_dict(self) -> dict[str, Any]:
        return {"threshold": float(self.threshold), "min_contrast": float(self.min_contrast),
                "max_texture": float(self.max_texture)} | ({} if self.network is None else {"network": self.network}) \
            | ({"coarse": True} if self.coarse else {}) | ({"rarity": True} if self.rarity else {})

    @classmethod
    def from_dict(cls, data: Any) -> CleanBackground:
        needed = {"threshold", "min_contrast", "max_texture"}
        if not isinstance(data, dict) or not needed <= set(data) <= needed | {"network", "coarse", "rarity"}:
            raise ConfigError(f"clean_background must have threshold, min_contrast and max_texture (and may name "
                              f"a network, ask for a coarse look and count contrast by rarity), got {data!r}")
        try:
            values = float(data["threshold"]), float(data["min_contrast"]), float(data["max_texture"])
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"clean_background values must be numbers, got {data!r}") from exc
        return cls(*values, data.get("network"), data.get("coarse", False), data.get("rarity", False))


@dataclass(frozen=True)
class BundleConfig:
    """The contents of ``config.json`` (file checksums are added when saving).

    threshold: probability at or above which a pixel belongs to a track (0..1).
    min_area_px: tracks smaller than this many pixels are dropped.
    min_contrast: tracks whose contrast (:mod:`cerber_model.runtime.contrast`: noise SDs above
    the image's own background at the track's own size) is below this are dropped; 0 keeps all
    (bundles before format 4).
    provenance: how the model was made (data, seeds, epochs, software versions).
    metrics: validation results (e.g. precision, recall, F1 at 3 px).
    resolving_distance_px: the overlap correction's resolving distance for this model, as
    ``benchmarks/bench_linearity.py`` measures it; None (left out of config.json): the documented
    default, :data:`cerber_model.runtime.dosimetry.DEFAULT_RESOLVING_DISTANCE_PX`. An optional
    key: bundles without it load as before, and older Cerbers ignore it.
    clean_background: the threshold and smallest contrast on images with a clean background
    (:class:`CleanBackground`; needs ``min_contrast`` above 0, which measures the texture), used
    where no threshold is given; None (left out): the same setting on every image. Optional
    like ``resolving_distance_px``.
    grow_to: where the clean setting does not apply, tracks are the regions above this fraction of
    the threshold (0..1) that reach the threshold, those with fewer than ``min_area_px`` pixels at
    it counted where round (hysteresis, :func:`~cerber_model.runtime.tracks.extract_tracks`); None
    (left out): the regions above the threshold. Optional like ``resolving_distance_px``.
    """

    network: NetworkConfig = field(default_factory=NetworkConfig)
    normalization: Normalization = field(default_factory=Normalization)
    threshold: float = 0.5
    min_area_px: int = 1
    min_contrast: float = 0.0
    name: str = "cerber"
    provenance: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    resolving_distance_px: float | None = None
    clean_background: CleanBackground | None = None
    grow_to: float | None = None

    def __post_init__(self) -> None:
        if not 0.0 < float(self.threshold) < 1.0:
            raise ConfigError(f"threshold must be between 0 and 1, got {self.threshold!r}")
        if not isinstance(self.min_area_px, int) or self.min_area_px < 1:
            raise ConfigError(f"min_area_px must be a positive integer, got {self.min_area_px!r}")
        if not (isinstance(self.min_contrast, (int, float)) and 0 <= self.min_contrast <= 100):
            raise ConfigError(f"min_contrast must be from 0 to 100 noise SDs, got {self.min_contrast!r}")
        if self.resolving_distance_px is not None and not 0 <= float(self.resolving_distance_px) < 1000:
            raise ConfigError(f"resolving_distance_px must be a distance in px from 0 to 1000, "
                              f"got {self.resolving_distance_px!r}")
        if self.grow_to is not None and not (isinstance(self.grow_to, (int, float)) and 0 < self.grow_to < 1):
            raise ConfigError(f"grow_to must be a fraction of the threshold between 0 and 1, got {self.grow_to!r}")
        if self.clean_background is not None and not self.min_contrast > 0:
            raise ConfigError("clean_background needs min_contrast above 0 (the texture is measured with the contrast)")

    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "name": self.name,
            "network": self.network.to_dict(),
            "normalization": self.normalization.to_dict(),
            "threshold": float(self.threshold),
            "min_area_px": int(self.min_area_px),
            "min_contrast": float(self.min_contrast),
            "provenance": self.provenance,
            "metrics": self.metrics,
        } | ({} if self.resolving_distance_px is None else {"resolving_distance_px": self.resolving_distance_px}) | (
            {} if self.clean_background is None else {"clean_background": self.clean_background.to_dict()}) | (
            {} if self.grow_to is None else {"grow_to": float(self.grow_to)})

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BundleConfig:
        data = upgrade(dict(data))
        return cls(
            network=NetworkConfig.from_dict(data["network"]),
            normalization=Normalization.from_dict(data["normalization"]),
            threshold=float(data["threshold"]),
            min_area_px=int(data["min_area_px"]),
            min_contrast=data.get("min_contrast", 0.0),  # checked, with its name, by __post_init__
            name=str(data.get("name", "cerber")),
            provenance=dict(data.get("provenance", {})),
            metrics=dict(data.get("metrics", {})),
            resolving_distance_px=None if data.get("resolving_distance_px") is None
            else float(data["resolving_distance_px"]),
            clean_background=None if data.get("clean_background") is None
            else CleanBackground.from_dict(data["clean_background"]),
            grow_to=data.get("grow_to"),  # checked, with its name, by __post_init__
        )


def upgrade(data: dict[str, Any]) -> dict[str, Any]:
    """Bring a config.json dict from an older format version to the current one."""
    version = data.get("format_version")
    if version == FORMAT_VERSION:
        return data
    if isinstance(version, int) and version > FORMAT_VERSION:
        raise ConfigError(f"format version {version} is newer than this Cerber understands "
                          f"({FORMAT_VERSION}); update Cerber to use this model")
    if version in (1, 2, 3, 4, 5, 6):
        # Version 1 knew the "percentile" and "scale" normalisations only, whose settings
        # version 2 reads the same way; version 3 added the background normalisation's
        # optional noise scale, absent (0) in version 2; version 4 the smallest track
        # contrast, absent (0, every track kept) in version 3; version 5 the optional network
        # for clean backgrounds, absent (the model's own) in version 4; version 6 the optional
        # coarse look there, absent (none) in version 5; version 7 contrast counted by its rarity
        # there, absent (counted plainly) in version 6: nothing to convert.
        return {**data, "format_version": FORMAT_VERSION}
    raise ConfigError(f"unknown format version {version!r}")


@dataclass
class Bundle:
    """A loaded, validated model bundle."""

    path: Path | None
    config: BundleConfig
    weights: dict[str, np.ndarray]
    onnx: bytes
    _engines: dict[str, Any] = field(default_factory=dict, repr=False)
    _clean_network: Bundle | None = field(default=None, init=False, repr=False)

    @property
    def name(self) -> str:
        return self.config.name

    def clean_network(self) -> Bundle:
        """The bundle whose network analyzes images with a clean background: the bundled model
        that ``config.clean_background.network`` names (loaded on first use, then kept), else this one.
        Raises :class:`BundleError` if that model is missing or reads its input otherwise."""
        clean = self.config.clean_background
        if clean is None or clean.network is None:
            return self
        if self._clean_network is None:
            self._clean_network = load_clean_network(self, clean.network)
        return self._clean_network

    def engine(self, kind: str | None = None):
        """The light inference engine for this bundle, created once per kind, then reused.

        ``kind``: ``"auto"``, ``"onnxruntime"`` or ``"openvino"``; None takes ``CERBER_ENGINE``,
        else ``auto``: OpenVINO where it is installed, else ONNX Runtime
        (:func:`cerber_model.runtime.engine.engine_kind`). An engine other than ONNX Runtime is
        used only if it gives ONNX Runtime's :func:`probe` output; if it does not, or if OpenVINO
        is installed (or asked for by name) but cannot be imported, ONNX Runtime runs instead, with an
        :class:`~cerber_model.runtime.engine.EngineFallbackWarning` saying why.
        """
        from .engine import EngineFallbackWarning, make_engine

        kind = resolve_engine(kind)
        if kind not in self._engines:
            engine = make_engine(self.onnx, kind)
            if engine.name != REFERENCE_ENGINE:
                output, reference = probe(engine), probe(self.engine(REFERENCE_ENGINE))
                if not probe_matches(output, reference):
                    warnings.warn(f"the {engine.name} engine gives {output} on the test input where ONNX Runtime "
                                  f"gives {reference}; running ONNX Runtime instead", EngineFallbackWarning,
                                  stacklevel=2)
                    engine = self.engine(REFERENCE_ENGINE)
            self._engines[kind] = engine
        return self._engines[kind]


def load_clean_network(bundle: Bundle, name: str) -> Bundle:
    """The bundled model ``name``, loaded to run its network on ``bundle``'s images with a clean
    background; :class:`BundleError` if this Cerber does not ship it, or if it reads its input
    otherwise than ``bundle`` or has such a network of its own."""
    other = load_bundle(_clean_network_path(bundle, name))
    if other.config.normalization != bundle.config.normalization or other.config.clean_background is not None:
        raise BundleError(f"{other.path}: the model '{name}', whose network {bundle.name} runs on "
                          "clean backgrounds, must read its input as that model does and have no network "
                          "of its own for them. Remove 'network' from clean_background in "
                          f"{bundle.name}'s {CONFIG_FILE}, or pair it with another model.")
    return other


def _clean_network_path(bundle: Bundle, name: str) -> Path:
    """Where the bundled model ``name``, whose network ``bundle`` runs on clean backgrounds, is;
    :class:`BundleError` naming the fix where this Cerber does not ship it."""
    path = bundled_models().get(name)
    if path is None or not (path / CONFIG_FILE).is_file():
        where = bundle.path / CONFIG_FILE if bundle.path else f"{bundle.name}'s {CONFIG_FILE}"
        raise BundleError(f"{where}: on clean backgrounds this model runs the network of the model '{name}', "
                          "which this Cerber does not ship. Update Cerber, or remove 'network' from "
                          "clean_background in that file.")
    return path


def weights_problem(network: NetworkConfig, weights: dict[str, np.ndarray]) -> str | None:
    expected = parameter_shapes(network)
    missing = sorted(set(expected) - set(weights))
    extra = sorted(set(weights) - set(expected))
    if missing:
        return f"{len(missing)} weights missing (e.g. {missing[0]})"
    if extra:
        return f"{len(extra)} unexpected weights (e.g. {extra[0]})"
    for name, shape in expected.items():
        if tuple(weights[name].shape) != shape:
            return f"{name} has shape {tuple(weights[name].shape)}, the network needs {shape}"
    return None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _fsync_write(path: Path, data: bytes) -> None:
    with open(path, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


#: Files a bundle folder consists of; anything else found in a bundle folder is the user's.
MODEL_FILES = (CONFIG_FILE, WEIGHTS_FILE, ONNX_FILE)
#: What training adds to a bundle's folder: the metrics of every epoch, and a plot of them.
HISTORY_FILE, LOSS_PLOT_FILE = "history.csv", "loss.png"
TRAINING_FILES = (HISTORY_FILE, LOSS_PLOT_FILE)


def training_record(folder: Path) -> dict[str, bytes]:
    """The training files (:data:`TRAINING_FILES`) that the bundle folder ``folder`` holds, for
    :func:`save_bundle`'s ``extra_files``: a copy of a model carries the record of the training
    that made its weights, and replaces the record of the model it overwrites."""
    return {name: (folder / name).read_bytes() for name in TRAINING_FILES if (folder / name).is_file()}


def is_bundle_folder(path: Path) -> bool:
    """True for a folder that Cerber wrote as a model: its config.json names a format version and a network."""
    try:
        data = json.loads((path / CONFIG_FILE).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return isinstance(data, dict) and "format_version" in data and "network" in data


def replace_problem(path: Path) -> str | None:
    """Why ``path`` must not be replaced by a model (None: it may, being missing, empty or a bundle)."""
    if not path.exists() and not path.is_symlink():
        return None
    if not path.is_dir() or path.is_symlink():
        return f"{path} is not a folder; Cerber replaces only model folders. Choose another output folder."
    if any(path.iterdir()) and not is_bundle_folder(path):
        return (f"{path} is a folder that does not hold a Cerber model; Cerber will not replace it. "
                "Choose another output folder (or a new name inside it).")
    return None


PROBE_SIZE = 32


def probe(engine) -> dict[str, float]:
    """The engine's output on a fixed 32 x 32 test input (a bright spot on a dim ramp): its sum
    and maximum. Stored on saving; a model.onnx that no longer gives them is damaged."""
    rr, cc = np.indices((PROBE_SIZE, PROBE_SIZE), dtype=np.float32)
    x = 0.1 + 0.005 * cc + 0.8 * np.exp(-((rr - 15.5) ** 2 + (cc - 12.0) ** 2) / 8.0)
    out = np.asarray(engine.predict(x.astype(np.float32)), dtype=np.float64)
    return {"sum": round(float(out.sum()), 4), "max": round(float(out.max()), 6)}


def probe_matches(output: dict[str, float], expected: dict[str, Any]) -> bool:
    """Whether two :func:`probe` outputs agree (to 1e-3, relative above 1)."""
    return all(abs(output[k] - float(expected.get(k, np.nan))) <= 1e-3 * max(1.0, abs(output[k])) for k in output)


def save_bundle(bundle: Bundle, path: Path | str, overwrite: bool = False,
                extra_files: dict[str, bytes] | None = None) -> Path:
    """Write ``bundle`` as a folder at ``path``, atomically.

    The files are written into a temporary folder beside ``path`` and renamed
    into place at the end, so a crash or a full disk never leaves a half-written
    bundle. An existing folder is replaced only with ``overwrite=True``, and only if it
    is a Cerber model (or empty); files of the user's in it (a model card, notes) are
    kept. ``extra_files`` (name -> bytes: training history, loss plot) are written beside
    the model files. Files and folders get the modes the umask gives.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise BundleError(f"{path} already exists; choose another folder or allow overwriting.")
    if problem := replace_problem(path):
        raise BundleError(problem)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_folder(path)
    ours = set(MODEL_FILES) | set(extra_files or {})
    try:
        with open(tmp / WEIGHTS_FILE, "wb") as fh:
            np.savez(fh, **bundle.weights)  # type: ignore[arg-type]  # numpy's stub types **kwds as bool
            fh.flush()
            os.fsync(fh.fileno())
        _fsync_write(tmp / ONNX_FILE, bundle.onnx)
        for name, data in (extra_files or {}).items():
            _fsync_write(tmp / name, data)
        config = bundle.config.to_dict()
        config["files"] = {name: _sha256(tmp / name) for name in (WEIGHTS_FILE, ONNX_FILE)}
        config["probe"] = probe(bundle.engine(REFERENCE_ENGINE))  # the reference, whichever engine runs
        _fsync_write(tmp / CONFIG_FILE, (json.dumps(config, indent=2, sort_keys=False) + "\n").encode())
        if path.exists():
            # The user's files in the old folder move into the new one; only Cerber's own are replaced.
            for entry in path.iterdir():
                if entry.name not in ours:
                    entry.rename(tmp / entry.name)
            old = path.with_name(f".{path.name}.old-{os.getpid()}-{time.time_ns()}")
            path.rename(old)
            tmp.rename(path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(path)
    except OSError as exc:
        _restore_user_files(tmp, path, ours)
        shutil.rmtree(tmp, ignore_errors=True)
        raise BundleError(f"could not write the model to {path} ({exc.strerror or exc}); "
                          "nothing was changed there. Free some disk space or choose another folder.") from exc
    except BaseException:
        _restore_user_files(tmp, path, ours)
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    bundle.path = path
    return path


def _restore_user_files(tmp: Path, path: Path, ours: set[str]) -> None:
    """After a failed save, move the user's files that were already moved into ``tmp`` back."""
    if not tmp.is_dir() or not path.is_dir():
        return
    for entry in tmp.iterdir():
        if entry.name not in ours and not (path / entry.name).exists():
            entry.rename(path / entry.name)


def load_bundle(path: Path | str) -> Bundle:
    """Load and validate the bundle folder at ``path``."""
    path = Path(path)
    if not path.is_dir():
        raise BundleError(f"{path} is not a model folder. Choose the folder that holds {CONFIG_FILE}.")
    config_path = path / CONFIG_FILE
    if not config_path.is_file():
        raise BundleError(f"{config_path} is missing: {path} is not a Cerber model folder.")
    try:
        data = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"{config_path} is not valid JSON ({exc}). The model is damaged; "
                          "copy it again from its source.") from exc
    if not isinstance(data, dict):
        raise BundleError(f"{config_path} does not hold a model configuration.")
    try:
        config = BundleConfig.from_dict(data)
    except (ConfigError, ValueError, KeyError, TypeError) as exc:
        raise BundleError(f"{config_path}: {exc}.") from exc
    files = data.get("files")
    if not isinstance(files, dict):
        raise BundleError(f"{config_path} lists no file checksums; the model is damaged. Copy it again.")
    for name in (WEIGHTS_FILE, ONNX_FILE):
        file = path / name
        if not file.is_file():
            raise BundleError(f"{file} is missing. The model is incomplete; copy the whole folder again.")
        if files.get(name) != _sha256(file):
            raise BundleError(f"{file} does not match the checksum in {CONFIG_FILE}: the file is damaged "
                              "or was changed. Copy the model again from its source.")
    try:
        with np.load(path / WEIGHTS_FILE, allow_pickle=False) as npz:
            weights = {k: npz[k] for k in npz.files}
    except Exception as exc:
        raise BundleError(f"{path / WEIGHTS_FILE} cannot be read ({exc}). Copy the model again.") from exc
    problem = weights_problem(config.network, weights)
    if problem:
        raise BundleError(f"{path / WEIGHTS_FILE} does not fit {CONFIG_FILE}: {problem}.")
    bundle = Bundle(path, config, weights, (path / ONNX_FILE).read_bytes())
    engine_kind()  # an unknown CERBER_ENGINE is the setting's fault, not the model's
    try:  # parse the graph and run it once now, not in the middle of an analysis
        output = probe(bundle.engine(REFERENCE_ENGINE))
    except Exception as exc:  # ONNX Runtime raises its own types for graphs it cannot load
        raise BundleError(f"{path / ONNX_FILE} cannot be run ({type(exc).__name__}: {exc}). The model is "
                          "damaged; copy it again from its source.") from exc
    expected = data.get("probe")
    if isinstance(expected, dict) and not probe_matches(output, expected):
        raise BundleError(f"{path / ONNX_FILE} does not give the output recorded when the model was saved "
                          f"({output} instead of {expected}): the model is damaged or was changed. "
                          "Copy it again from its source.")
    if config.clean_background is not None and config.clean_background.network is not None:
        _clean_network_path(bundle, config.clean_background.network)  # there now; loaded on first use
    return bundle


def package_folder() -> Path:
    """The ``cerber_model`` package folder: in the source tree (an editable install points there too),
    in site-packages for an installed wheel, or ``cerber_model/`` in the frozen app's unpack folder
    (PyInstaller gives each module a ``__file__`` there, and the spec copies the default model beside).

    A plain folder rather than an ``importlib.resources`` traversable: a bundle is loaded from files,
    and neither a wheel nor the frozen app leaves the package zipped.
    """
    return Path(__file__).resolve().parents[1]


def default_bundle_path() -> Path:
    """Where the bundled default model is, ``cerber_model/models/default`` (``CERBER_DEFAULT_MODEL``
    overrides it)."""
    override = os.environ.get("CERBER_DEFAULT_MODEL")
    return Path(override) if override else package_folder() / DEFAULT_BUNDLE_RELPATH


def load_default_bundle() -> Bundle:
    path = default_bundle_path()
    if not (path / CONFIG_FILE).is_file():
        raise BundleError(f"no default model at {path}. Pass a model folder with --model, "
                          "or train one (see the README).")
    return load_bundle(path)


def bundled_models() -> dict[str, Path]:
    """The models shipped inside the package by name (``cerber_model/models/<name>``), the default
    first: all of them in a source tree or an installed wheel; the frozen analyzer packs the default
    and the model whose network it runs on clean backgrounds. ``default`` is where
    :func:`default_bundle_path` says."""
    folder = package_folder() / DEFAULT_BUNDLE_RELPATH.parent
    others = sorted(q.parent.name for q in folder.glob(f"*/{CONFIG_FILE}") if q.parent.name != "default")
    return {"default": default_bundle_path()} | {name: folder / name for name in others}


def model_path(spec: str) -> Path:
    """The folder a ``--model`` value names: an existing folder first, else a bundled model's
    name (``default``, ``v1``), else the value as a path (loading it says what is missing)."""
    path = Path(spec)
    if path.is_dir():
        return path
    return bundled_models().get(spec, path)


def load_model(spec: str | None = None) -> Bundle:
    """The bundle a ``--model`` value names (see :func:`model_path`); the default model for None."""
    if spec is None or (spec == "default" and not Path(spec).is_dir()):
        return load_default_bundle()
    return load_bundle(model_path(spec))


def describe_bundle(bundle) -> str:
    """A human-readable card for a bundle (architecture, size, threshold, provenance, metrics)."""
    from .architecture import count_parameters

    cfg = bundle.config
    n = cfg.network.width
    params = count_parameters(cfg.network)
    lines = [
        f"Model:         {cfg.name}" + (f"  ({bundle.path})" if bundle.path else ""),
        f"Architecture:  Cerber, width n={n}: three cross-connected branches (x, y, z) "
        f"-> bridge at 1/4 resolution -> two decoders -> sigmoid",
        f"Parameters:    {params['trainable']:,} trainable ({params['total']:,} with batch-norm statistics)",
        f"Input:         grayscale, any size; normalisation {cfg.normalization.to_dict()}",
        f"Threshold:     {cfg.threshold:.3f}   minimum track area: {cfg.min_area_px} px"
        + (f"   minimum contrast: {cfg.min_contrast:g} noise SDs" if cfg.min_contrast else "")
        + (f"   tracks grown down to {cfg.grow_to:g} x the threshold" if cfg.grow_to is not None else ""),
    ]
    if cfg.clean_background is not None:
        clean = cfg.clean_background
        lines.append(f"Clean images:  threshold {clean.threshold:.3f}   minimum contrast: {clean.min_contrast:g} "
                     f"noise SDs   (background texture up to {clean.max_texture:g} dips per Mpx)"
                     + (f"; the network of the model '{clean.network}'" if clean.network else "")
                     + ("; a second look at the image binned 2 x 2" if clean.coarse else "")
                     + ("; contrast counted by its rarity at the track's scale" if clean.rarity else ""))
    if cfg.resolving_distance_px is not None:
        lines.append(f"Overlaps:      resolving distance {cfg.resolving_distance_px:g} px")
    if cfg.provenance:
        lines.append("Provenance:")
        lines += [f"  {k}: {v}" for k, v in cfg.provenance.items()]
    if cfg.metrics:
        lines.append("Metrics:")
        lines += [f"  {k}: {v}" for k, v in cfg.metrics.items()]
    return "\n".join(lines)
