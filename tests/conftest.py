"""Settings every test shares, set once for the session instead of at import time in each module."""

from __future__ import annotations

import pytest
import torch


def pytest_configure(config: pytest.Config) -> None:
    # One intra-op thread in the test process: CI has 2 cores, often shared with a worker process, and
    # runs compared bit for bit need one reduction order. Subprocesses take --threads / OMP_NUM_THREADS.
    torch.set_num_threads(1)
