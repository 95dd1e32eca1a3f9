"""Persistence: self-describing checkpoints and the HDF5 result store (schema in ``results/README.md``)."""

from results.checkpoint import CHECKPOINT_FORMAT, CheckpointError, load_checkpoint, save_checkpoint
from results.durable import DurableWriteError, atomic_save, payload_sha256
from results.store import (CurveWriter, UnreadableData, open_store, provenance, read_attrs, read_curve, read_dataset, write_array,
                           write_attrs)
from results.merge import PATH_ATTRIBUTES, merge_stores, rebase_paths
from results.seeds import run_key, unfinished_runs
from results.writer import PENDING, Result, ResultError, check_result_name, open_result, result_names
from results.lock import OutputLocked, OutputUnwritable, output_lock
from results.recovery import DamagedStore, StoreFull, disk_full_message, is_disk_full, open_checked, restore_store
from results.stats import RankCorrelation, Summary, paired, rank_correlation, summarize

__all__ = [
    # checkpoints
    "CHECKPOINT_FORMAT",
    "CheckpointError",
    "save_checkpoint",
    "load_checkpoint",
    # durable files: temp + fsync + rename, one-line write errors; SHA-256 of checkpoint / state payloads
    "atomic_save",
    "DurableWriteError",
    "payload_sha256",
    # the one result writer of every CLI: named results, resume / overwrite one name
    "open_result",
    "Result",
    "ResultError",
    "result_names",
    "check_result_name",
    "PENDING",
    # one writer per output folder; result files that survive a full disk or a kill; checked reads
    "output_lock",
    "OutputLocked",
    "OutputUnwritable",
    "open_checked",
    "restore_store",
    "DamagedStore",
    "StoreFull",
    "is_disk_full",
    "disk_full_message",
    "read_dataset",
    "write_array",
    "UnreadableData",
    # runs of several seeds: (protocol_run, seed) of a run group
    "run_key",
    "unfinished_runs",
    # HDF5 store
    "open_store",
    "CurveWriter",
    "read_curve",
    "write_attrs",
    "read_attrs",
    "provenance",
    # sharded sweeps (job arrays): one file per shard, merged
    "merge_stores",
    # copying results between files: path attributes rebased to the new file's folder
    "rebase_paths",
    "PATH_ATTRIBUTES",
    # statistics over seeds (defined once): mean with its Student-t 95% CI, paired differences, Spearman rho
    "Summary",
    "summarize",
    "paired",
    "RankCorrelation",
    "rank_correlation",
]
