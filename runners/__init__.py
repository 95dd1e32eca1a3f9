"""Command-line entry points (``python -m runners.X``), the data sets and the one training loop."""

from runners.data import Dataset, load_data
# The loop itself is runners.training.train: the name runners.train is the CLI module.
from runners.training import EpochRecord, TrainConfig, TrainResult, evaluate
