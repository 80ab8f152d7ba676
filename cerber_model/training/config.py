"""What decides a training run (:class:`TrainingConfig`), and whether this installation can train.

Importing this module needs neither TensorFlow nor Keras, so the analyzer build can
read the defaults and say why it cannot train.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any

from ..runtime.datasets import Augmentation
from ..runtime.images import Normalization

if TYPE_CHECKING:
    from ..runtime.bundle import BundleConfig

#: The inputs a model trained from fresh weights learns on, unless told otherwise (the CLI
#: and the wizard): the default model's. Noise units with 16 px blocks and the noise counted
#: at spot size: on real images and blank noise the percentile normalisation (v1's, still
#: TrainingConfig's own default for configs written before) did far worse.
FRESH_NORMALIZATION = Normalization("background", block=16, noise_scale=1.5)


#: Fine-tuning a model (``start_from``) on a few annotated images: fewer epochs and a lower
#: learning rate than training from fresh weights. Measured with benchmarks/bench_finetune.py
#: (the default model on halves of the two annotated samples): at 3e-3 the validation loss
#: tripled within 6 epochs and the chosen threshold fell to 0.1; at 1e-3 it did not.
FINE_TUNE_EPOCHS = 3
FINE_TUNE_LEARNING_RATE = 1e-3


def fine_tuning_settings(start: BundleConfig) -> dict[str, Any]:
    """What fine-tuning from the model ``start`` (a BundleConfig) takes from it unless told
    otherwise: its inputs (normalisation) and its loss (focal gamma and alpha, class balancing, as
    its provenance records them), with :data:`FINE_TUNE_EPOCHS` and :data:`FINE_TUNE_LEARNING_RATE`.

    Another loss than the one a model learnt with moves its probabilities while it adapts: the
    default model (gamma 1, alpha 0.5) fine-tuned at 3e-3 on the samples' halves scored 0.869 on
    the unseen halves with gamma 3.5 and alpha 0.25, 0.876 with its own loss, and 0.889 with its
    own loss at 1e-3 (bench_finetune.py).
    """
    settings: dict[str, Any] = {"normalization": start.normalization, "epochs": FINE_TUNE_EPOCHS,
                                "learning_rate": FINE_TUNE_LEARNING_RATE}
    training = start.provenance.get("training")
    if isinstance(training, dict):
        settings |= {key: training[key] for key in ("focal_gamma", "focal_alpha", "class_balancing")
                     if key in training}
    return settings


class TrainingError(Exception):
    """Training cannot start or continue; the message says why and what to do."""


def training_unavailable() -> str | None:
    """None when this installation can train; otherwise why not and what to do.

    The analyzer build of the standalone app leaves TensorFlow out (it is most of the size).
    """
    import importlib.util
    import sys

    missing = [name for name in ("keras", "tensorflow") if importlib.util.find_spec(name) is None]
    if not missing:
        return None
    if getattr(sys, "frozen", False):
        return ("Training needs the full build of Cerber (Cerber-full), which includes TensorFlow; "
                "this analyzer build opens, analyzes and exports only.")
    return f"Training needs {' and '.join(missing)}: install them with  pip install -e '.[train]'"


@dataclass(frozen=True)
class TrainingConfig:
    """Everything that decides a training run (stored in the bundle's provenance)."""

    width: int = 2
    epochs: int = 30
    # Batches per epoch; 0: from the data (see :meth:`steps_for`), so that fine-tuning on a few
    # annotated images takes minutes while large synthetic sets get full epochs.
    steps_per_epoch: int = 0
    patch_size: int = 128  # side of the square training patches in px (a multiple of 4)
    batch_size: int = 8  # patches per training step
    learning_rate: float = 3e-3
    weight_decay: float = 1e-3
    focal_gamma: float = 3.5
    class_balancing: bool = False
    focal_alpha: float = 0.25
    track_bias: float = 0.7
    val_patches: int = 64
    val_images: int = 8  # whole validation images analyzed per epoch for F1 (0 = all)
    match_radius: float = 3.0
    min_area_px: int = 4
    patience: int = 10  # epochs without a better validation F1 before training stops (0 = never)
    seed: int = 777
    # Compile the training step with XLA, which fuses the many small elementwise steps of the
    # three branches (Keras leaves XLA off on CPUs by default; here it is ~1.5x faster).
    xla: bool = True
    # Train the fused graph (cerber_model.fused_keras): the same network and variables with the
    # three branches stacked into wide operations; False trains the straightforward per-branch graph.
    fused: bool = True
    # A model folder whose weights training starts from (fine-tuning, e.g. the default model on a
    # few annotated images of one's own); "" starts from fresh random weights.
    start_from: str = ""
    augmentation: Augmentation = field(default_factory=Augmentation)
    normalization: Normalization = field(default_factory=Normalization)

    def __post_init__(self) -> None:
        # The default augmentation is made for 0..1 inputs; under the background normalisation
        # (inputs in noise SDs) it stands for that normalisation's defaults, so the CLI, the
        # wizard and replace(config, normalization=...) need not know about units.
        if self.normalization.method == "background" and self.augmentation == Augmentation():
            object.__setattr__(self, "augmentation", Augmentation.for_normalization(self.normalization))
        self._refuse_problems()

    def _refuse_problems(self) -> None:
        """Settings no run could use are refused when the config is made, before anything is
        read, built or replaced (the CLI prints the message as one line, the wizard shows it)."""
        if problems := self.problems():
            raise TrainingError("invalid training settings: " + "; ".join(problems) + ".")

    def problems(self) -> list[str]:
        """What is wrong with these settings, one phrase each ([] when they can be trained with)."""
        checks = [
            (self.width in range(1, 9), f"the network width must be 1 to 8 (got {self.width})"),
            (self.epochs >= 1, f"the number of epochs must be at least 1 (got {self.epochs})"),
            (self.steps_per_epoch >= 0,
             f"the batches per epoch must be 0 (from the data) or more (got {self.steps_per_epoch})"),
            (self.patch_size > 0 and self.patch_size % 4 == 0,
             f"the patch size must be a positive multiple of 4 px (got {self.patch_size})"),
            (self.batch_size >= 1, f"the batch size must be at least 1 (got {self.batch_size})"),
            (0 < self.learning_rate < math.inf, f"the learning rate must be positive (got {self.learning_rate})"),
            (0 <= self.weight_decay < math.inf, f"the weight decay must be 0 or positive (got {self.weight_decay})"),
            (0 <= self.focal_gamma < math.inf, f"the focal gamma must be 0 or positive (got {self.focal_gamma})"),
            (0 <= self.focal_alpha <= 1, f"the focal alpha must be from 0 to 1 (got {self.focal_alpha})"),
            (0 <= self.track_bias <= 1, f"the share of patches centred on tracks must be from 0 to 1 "
                                        f"(got {self.track_bias})"),
            (self.val_patches >= 0, f"the validation patches must be 0 or more (got {self.val_patches})"),
            (self.val_images >= 0, f"the validation images must be 0 (all) or more (got {self.val_images})"),
            (0 < self.match_radius < math.inf, f"the matching radius must be positive (got {self.match_radius})"),
            (self.min_area_px >= 0, f"the smallest track area must be 0 px or more (got {self.min_area_px})"),
            (self.patience >= 0, f"the patience must be 0 (never stop early) or more (got {self.patience})"),
            (self.seed >= 0, f"the seed must be 0 or more (got {self.seed})"),
        ]
        return [problem for ok, problem in checks if not ok]

    def continues(self, stored: TrainingConfig) -> bool:
        """Whether a run started with ``stored`` may be resumed with these settings.

        The number of epochs may change (train longer, or stop and keep the best so far); XLA and
        the fused graph change only the speed (the saved graph is trained on), so they may too.
        """
        same = replace(stored, epochs=self.epochs, xla=self.xla, fused=self.fused)
        # Compared as JSON would store them (tuples and lists alike).
        return json.loads(json.dumps(same.to_dict())) == json.loads(json.dumps(self.to_dict()))

    #: Bounds of the batches per epoch chosen from the data, and how many times an epoch goes over
    #: the training pixels on average before the upper bound applies.
    AUTO_STEPS = (30, 100)
    AUTO_PASSES = 8

    def steps_for(self, train_pixels: int | None) -> int:
        """Batches per epoch: ``steps_per_epoch``, or when it is 0 enough for :data:`AUTO_PASSES`
        passes over ``train_pixels``, within :data:`AUTO_STEPS` (the upper bound when unknown)."""
        if self.steps_per_epoch:
            return self.steps_per_epoch
        low, high = self.AUTO_STEPS
        if train_pixels is None:
            return high
        patch_px = self.batch_size * self.patch_size**2
        return int(min(high, max(low, math.ceil(self.AUTO_PASSES * train_pixels / patch_px))))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["normalization"] = self.normalization.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainingConfig:
        """A config from :meth:`to_dict`'s output, also as older versions wrote it (a run's
        ``.work/state.json``, a bundle's ``provenance["training"]``): settings under their earlier
        names are renamed, settings added since take their defaults."""
        d = {RENAMED.get(k, k): v for k, v in d.items()}
        augmentation: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v
                                        for k, v in d.get("augmentation", {}).items()}
        d["augmentation"] = Augmentation(**augmentation)
        d["normalization"] = Normalization.from_dict(d.get("normalization", {}))
        return cls(**d)


#: Settings renamed since configs were first written: {earlier name: current name}.
RENAMED = {"early_stopping": "patience", "patch": "patch_size", "batch": "batch_size"}
