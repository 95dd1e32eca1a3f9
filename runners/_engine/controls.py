"""The CNN references a relaxed run is compared with, recorded on the CNN's run group.

An eFCN switched at t_w and trained E more epochs has seen t_w + E epochs. The paper compares it with
the *final CNN*, trained ``--epochs`` (its Fig. 3); the fair, *matched* control is the CNN at t_w + E
epochs, so ``runners.relax --matched-controls`` trains the CNN that long (:func:`protocol`) and its
history holds every matched snapshot. The poster's protocol also names the CNN "trained until its
training loss is near zero". :func:`cnn_references` reads all three off the CNN's history:

* ``reference_epoch`` (written when the run starts): ``--epochs``, the final CNN's epoch;
  ``reference_test_acc`` / ``reference_train_loss``: its history row there;
* ``near_zero_loss_epoch``: the first epoch whose ``train_loss`` <= ``near_zero_loss_threshold``
  (:data:`NEAR_ZERO_LOSS`), NaN if the history never gets there; ``near_zero_loss_test_acc``: the
  test accuracy at that epoch (NaN likewise).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import h5py
import numpy as np

from results import read_attrs, read_curve, write_attrs

__all__ = ["NEAR_ZERO_LOSS", "cnn_references", "record_cnn_references"]

# Cross-entropy per example (ln 10 = 2.3 at chance). Measured on MNIST-1D (64 channels, Adam 1e-3): reached at
# epoch 56 with every training sequence classified right; 1e-3 was not reached in 90 epochs (1.5e-3 at 90).
NEAR_ZERO_LOSS = 1e-2


def cnn_references(history: Mapping[str, np.ndarray], reference_epoch: int, threshold: float = NEAR_ZERO_LOSS) -> dict[str, Any]:
    """The final CNN's row at ``reference_epoch`` and the first epoch of near-zero training loss.

    Args:
        history: the CNN's history columns (``epoch``, ``train_loss``, ``test_acc``, ...).
        reference_epoch: the epoch of the final CNN (``--epochs``).
        threshold: training loss counted as near zero.

    Example:
        >>> h = {"epoch": np.arange(4), "train_loss": np.array([2.3, 0.1, 5e-4, 1e-4]), "test_acc": np.array([.1, .8, .85, .86])}
        >>> refs = cnn_references(h, reference_epoch=1)
        >>> refs["reference_test_acc"], refs["near_zero_loss_epoch"], refs["near_zero_loss_test_acc"]
        (0.8, 2, 0.85)
        >>> math.isnan(cnn_references(h, 1, threshold=1e-5)["near_zero_loss_epoch"])
        True
    """
    epochs = np.asarray(history["epoch"]).astype(int)
    at = np.flatnonzero(epochs == reference_epoch)
    below = np.flatnonzero(np.asarray(history["train_loss"]) <= threshold)
    return {
        "reference_epoch": int(reference_epoch),
        "reference_test_acc": float(history["test_acc"][at[0]]) if len(at) else math.nan,
        "reference_train_loss": float(history["train_loss"][at[0]]) if len(at) else math.nan,
        "near_zero_loss_threshold": float(threshold),
        "near_zero_loss_epoch": int(epochs[below[0]]) if len(below) else math.nan,
        "near_zero_loss_test_acc": float(history["test_acc"][below[0]]) if len(below) else math.nan,
    }


def record_cnn_references(runs: h5py.Group, threshold: float = NEAR_ZERO_LOSS) -> list[str]:
    """Write :func:`cnn_references` on every finished CNN run of ``runs`` that records a ``reference_epoch``; returns their names."""
    written = []
    for name, group in runs.items():
        attrs = read_attrs(group)
        if attrs.get("space") == "cnn" and attrs.get("status") == "done" and "reference_epoch" in attrs and "history" in group:
            write_attrs(group, cnn_references(read_curve(group["history"]), attrs["reference_epoch"], threshold))
            written.append(name)
    return written
