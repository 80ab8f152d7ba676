"""The training tier: fitting a Cerber model on pairs of images and masks.

Importing this package is light (no TensorFlow); :func:`train` imports Keras when it
starts. The analyzer build leaves this tier out.
"""

from .config import FRESH_NORMALIZATION, TrainingConfig, TrainingError, training_unavailable
from .cost import CostEstimate, estimate_cost
from .events import BatchDone, EpochDone, Inspected, Saved, Stopped, TrainingEvent
from .loop import loss_plot_png, train, validate_objects

__all__ = ["FRESH_NORMALIZATION", "BatchDone", "CostEstimate", "EpochDone", "Inspected", "Saved",
           "Stopped", "TrainingConfig", "TrainingError", "TrainingEvent", "estimate_cost", "loss_plot_png", "train",
           "training_unavailable", "validate_objects"]
