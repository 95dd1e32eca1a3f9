"""Command-line entry points (``python -m runners.X``): thin CLIs over three private subpackages.

``runners._engine`` trains (data sets, the one training loop, runs, pool, file layout), ``runners._figures``
draws, ``runners._bench`` times. The data sets and the training loop's types are re-exported here.
"""

# The loop itself is runners._engine.train: the name runners.train is the CLI module.
from runners._engine import Dataset, EpochRecord, TrainConfig, TrainResult, load_data

__all__ = ["Dataset", "load_data", "TrainConfig", "EpochRecord", "TrainResult"]
