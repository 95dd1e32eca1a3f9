"""The experiment engine: everything that trains, for ``runners.train``, ``runners.relax`` and ``runners.expandnets``.

It owns the data sets held in memory (:mod:`.data`; the user's own ``npz:``, ``folder:`` and
import-path sources: :mod:`.sources`), the check that a model fits a data set (:mod:`.fit`), the
objectives by name (``--loss``: :mod:`.losses`), the one training loop with its per-epoch resume
state (:mod:`.loop`), the one run specification :class:`RunSpec` and the context runs share
(:mod:`.specs`), what one run does (:mod:`.execute`; ExpandNets' runs: :mod:`.expandnets`), the
paper's relax protocol and its split over a job array (:mod:`.protocol`), the CNN references relaxed
runs are compared with (:mod:`.controls`), the process pool that
trains dependent runs with one process writing HDF5, and its resume rule (:mod:`.pool`), where runs
keep checkpoints and states (:mod:`.layout`), opening an experiment's named result through
``results.open_result`` (:mod:`.experiment`, with the shared training flags in :mod:`.flags`),
``runners.sharpness``' checkpoints to probe (run directories, seeds, weight twins: :mod:`.sharpness_runs`)
and its probes of one checkpoint (:mod:`.sharpness_probes`), and running probing CLIs under ``torchrun``
(:mod:`.launch`). CLIs import what this ``__init__``
re-exports, never its modules.
"""

from runners._engine.aggregates import aggregate_table, write_aggregates
from runners._engine.controls import NEAR_ZERO_LOSS, cnn_references, record_cnn_references
from runners._engine.data import MNIST1D_TEST_SIZE, Dataset, default_cache, load_data
from runners._engine.fit import check_model
from runners._engine.losses import LOSSES, mse_one_hot, resolve_loss
from runners._engine.execute import execute, fresh_cnn
from runners._engine.expandnets import (
    COLUMNS as EXPANDNETS_COLUMNS,
    MODES as EXPANDNETS_MODES,
    ExpandNetsRun,
    expandnets_specs,
    landscape_probes,
    penalised,
    run_name,
    seed_summary,
    squared_norms,
)
from runners._engine.experiment import EXECUTION_ONLY, context_from_args, experiment_config, open_experiment, preflight
from runners._engine.flags import add_training_arguments, byte_size, int_list, json_dict, shard_arg
from runners._engine.launch import launched
from runners._engine.layout import checkpoint_path, final_path, remove_run_files, snapshot_of, snapshot_path, state_path
from runners._engine.loop import (
    HISTORY_COLUMNS,
    EpochRecord,
    TrainConfig,
    TrainResult,
    on_device,
    peak_memory_bytes,
    reset_peak_memory,
    train,
)
from runners._engine.pool import default_threads, run_all
from runners._engine.protocol import SPACES, default_switch_times, protocol, seeded, seeded_name, shard_folder, shard_runs
from runners._engine.sharpness_probes import (
    COLUMNS as SHARPNESS_COLUMNS,
    EIGS as SHARPNESS_EIGS,
    copy_row,
    eigs_dataset,
    probe_model,
    probe_subspace,
)
from runners._engine.sharpness_runs import SharpnessCheckpoint, discover_checkpoints, run_index, weights_digest
from runners._engine.specs import Outcome, RunContext, RunSpec

__all__ = [
    # data sets
    "Dataset", "load_data", "default_cache", "MNIST1D_TEST_SIZE", "check_model",
    # objectives (--loss)
    "LOSSES", "resolve_loss", "mse_one_hot",
    # the training loop
    "TrainConfig", "EpochRecord", "TrainResult", "HISTORY_COLUMNS", "train", "on_device", "peak_memory_bytes", "reset_peak_memory",
    # runs: specification, execution, file layout
    "RunSpec", "RunContext", "Outcome", "execute", "fresh_cnn",
    "checkpoint_path", "snapshot_path", "snapshot_of", "final_path", "state_path", "remove_run_files",
    # the relax protocol and job arrays
    "SPACES", "protocol", "default_switch_times", "seeded", "seeded_name", "shard_runs", "shard_folder",
    # the CNN references of relaxed runs (final, matched, near-zero training loss)
    "NEAR_ZERO_LOSS", "cnn_references", "record_cnn_references", "aggregate_table", "write_aggregates",
    # the pool
    "run_all", "default_threads",
    # ExpandNets runs
    "EXPANDNETS_MODES", "EXPANDNETS_COLUMNS", "ExpandNetsRun", "expandnets_specs", "run_name", "penalised",
    "squared_norms", "landscape_probes", "seed_summary",
    # experiments: flags, checks, the result file
    "add_training_arguments", "int_list", "json_dict", "byte_size", "shard_arg",
    "EXECUTION_ONLY", "experiment_config", "context_from_args", "preflight", "open_experiment",
    # sharpness: the checkpoints probed, the probes of one checkpoint
    "SharpnessCheckpoint", "discover_checkpoints", "run_index", "weights_digest",
    "SHARPNESS_COLUMNS", "SHARPNESS_EIGS", "probe_subspace", "probe_model", "copy_row", "eigs_dataset",
    # torchrun
    "launched",
]
