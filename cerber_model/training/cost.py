"""What a training run will cost before it starts: time per epoch and in all, and peak memory.

The figures are measured on the 2-core development CPU by ``benchmarks/bench_training.py``;
the wizard shows the estimate as the settings change and ``cerber train`` prints it first.
"""

from __future__ import annotations

from dataclasses import dataclass

from .config import TrainingConfig

#: Training speed on a 2-core CPU (patch pixels per second, fused graph with XLA): measured by
#: benchmarks/bench_training.py (batch 8, 256 px patches for n = 1, 2; n = 4 between its 256 px
#: (59 k) and 128 px (84 k) figures; n = 3 interpolated). Wider networks: n = 4's over (n / 4)^2.
PX_PER_S = {1: 262_000, 2: 153_000, 3: 105_000, 4: 70_000}
#: Without XLA training is about 2x slower (1.5-2.3x in that run).
XLA_SPEEDUP = 2.0


@dataclass(frozen=True)
class CostEstimate:
    """Training time (validation not included) and peak memory of the whole process."""

    seconds_per_epoch: float
    seconds_total: float
    peak_ram_gib: float
    at_most: bool = False  # batches per epoch come from the data, which was not seen yet


    def summary(self) -> str:
        """One sentence for people, e.g. 'Estimate on a 2-core CPU: about 4 min per epoch ...'."""
        minutes = self.seconds_per_epoch / 60
        total = self.seconds_total / 60
        per_epoch = "under a minute" if minutes < 1 else f"about {minutes:.0f} min"
        in_all = f"{total:.0f} min" if total < 90 else f"{total / 60:.1f} h"
        if self.at_most:
            per_epoch, in_all = f"at most {per_epoch.removeprefix('about ')}", f"at most {in_all}"
        return (f"Estimate on a 2-core CPU: {per_epoch} per epoch of training ({in_all} in all, plus validation), "
                f"about {self.peak_ram_gib:.1f} GiB of RAM.")


def estimate_cost(config: TrainingConfig, train_pixels: int | None = None) -> CostEstimate:
    """The time and memory a run with ``config`` needs on a 2-core CPU (see :data:`PX_PER_S`);
    ``train_pixels`` (of the training images) decides the batches per epoch when the config leaves
    them to the data; without it the estimate is an upper bound."""
    n = config.width
    rate = PX_PER_S.get(n, PX_PER_S[4] * 16 / n**2)
    if not config.xla:
        rate /= XLA_SPEEDUP
    patch_px = config.batch_size * config.patch_size**2
    per_epoch = config.steps_for(train_pixels) * patch_px / rate
    # Peak RSS measured at n = 4, batch 8 (bench_training.py): 1.66 / 3.69 GiB for 128 / 256 px
    # patches without XLA, 2.75 / 5.54 GiB with it, i.e. about 1.0 / 1.8 GiB plus 5.4 / 7.4 kB per
    # patch pixel (scaled here by n / 4; it matches the n = 1 and n = 2 runs within 0.4 GiB).
    per_px = (7400 if config.xla else 5400) * n / 4 / 2**30
    ram = (1.8 if config.xla else 1.0) + patch_px * per_px
    return CostEstimate(seconds_per_epoch=per_epoch, seconds_total=per_epoch * config.epochs, peak_ram_gib=ram,
                        at_most=not config.steps_per_epoch and train_pixels is None)
