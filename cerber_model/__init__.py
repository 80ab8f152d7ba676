"""Cerber: track detection in microscope images (no GUI code here).

Two tiers, kept apart by import contracts (``pyproject.toml``):

* :mod:`cerber_model.runtime`: what the light analyzer ships. Data flow one way:
  file -> :func:`read_image` -> :func:`analyze` (tiles -> engine -> probability map
  -> :class:`Tracks`) -> :mod:`cerber_model.runtime.export`. Models are folders:
  :func:`load_bundle`.
* :mod:`cerber_model.training` and :mod:`cerber_model.nn`: training and building graphs
  (TensorFlow, Keras, onnx), imported only when used.

The names below are the public API; everything else may change between versions.
"""

__version__ = "0.1.0"

from .runtime.analysis import AnalysisResult, analyze
from .runtime.bundle import Bundle, BundleConfig, BundleError, load_bundle, load_default_bundle, save_bundle
from .runtime.images import Image, ImageReadError, Normalization, read_image
from .runtime.progress import Cancelled, CancelToken
from .runtime.tracks import Tracks

__all__ = [
    "AnalysisResult",
    "Bundle",
    "BundleConfig",
    "BundleError",
    "CancelToken",
    "Cancelled",
    "Image",
    "ImageReadError",
    "Normalization",
    "Tracks",
    "__version__",
    "analyze",
    "load_bundle",
    "load_default_bundle",
    "read_image",
    "save_bundle",
]
