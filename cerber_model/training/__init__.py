"""The training tier: fitting a Cerber model on pairs of images and masks.

Importing this package is light (no TensorFlow); :func:`train` imports Keras when it
starts. The analyzer build leaves this tier out.
"""

from .config import TrainingConfig, TrainingError, training_unavailable
from .loop import loss_plot_png, train, validate_objects

__all__ = ["TrainingConfig", "TrainingError", "loss_plot_png", "train", "training_unavailable", "validate_objects"]
