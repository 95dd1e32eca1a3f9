"""Persistence: self-describing checkpoints and the HDF5 result store (schema in ``results/README.md``)."""

from results.checkpoint import CHECKPOINT_FORMAT, CheckpointError, load_checkpoint, save_checkpoint
from results.store import CurveWriter, open_store, provenance, read_attrs, read_curve, write_attrs
from results.merge import merge_stores

__all__ = [
    # checkpoints
    "CHECKPOINT_FORMAT",
    "CheckpointError",
    "save_checkpoint",
    "load_checkpoint",
    # HDF5 store
    "open_store",
    "CurveWriter",
    "read_curve",
    "write_attrs",
    "read_attrs",
    "provenance",
    # sharded sweeps (job arrays): one file per shard, merged
    "merge_stores",
]
