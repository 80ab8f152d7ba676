"""Cerber: track detection in microscope images (no GUI code here).

The public API, in the order data flows: :func:`cerber_model.images.read_image`
-> :func:`cerber_model.analysis.analyze` (tiling + engine + tracks) ->
:mod:`cerber_model.export`. Models are folders: :func:`cerber_model.bundle.load_bundle`.
"""

__version__ = "0.1.0"
