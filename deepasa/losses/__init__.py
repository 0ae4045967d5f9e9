"""deepasa.losses: PIT with one shared permutation, signal losses and the DeepASA objectives (docs/spec.md §4, §5)."""

from deepasa.losses.multitask import (
    Estimates,
    LossOutput,
    LossWeights,
    Targets,
    class_loss,
    multitask_loss,
    sed_targets,
    seld_loss,
    seld_loss_matrix,
    seld_losses_per_slot,
    uss_loss,
)
from deepasa.losses.pit import (
    EXHAUSTIVE_MAX_SOURCES,
    apply_permutation,
    find_best_permutation,
    neg_sa_sdr,
    neg_si_sdr,
    neg_snr,
    pairwise_neg_si_sdr,
    pairwise_neg_snr,
    pairwise_squared_error,
    permutation_cost,
    pit_loss,
    pit_sa_sdr,
    sa_sdr,
    si_sdr,
    snr,
)

__all__ = [
    "EXHAUSTIVE_MAX_SOURCES", "Estimates", "LossOutput", "LossWeights", "Targets", "apply_permutation",
    "class_loss", "find_best_permutation", "multitask_loss", "neg_sa_sdr", "neg_si_sdr", "neg_snr",
    "pairwise_neg_si_sdr", "pairwise_neg_snr", "pairwise_squared_error", "permutation_cost", "pit_loss",
    "pit_sa_sdr", "sa_sdr", "sed_targets", "seld_loss", "seld_loss_matrix", "seld_losses_per_slot", "si_sdr", "snr", "uss_loss",
]
