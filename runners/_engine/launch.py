"""Run a probing CLI under ``torchrun``: every rank computes, rank 0 alone writes the result file.

``torchrun --nproc-per-node R -m runners.sharpness ...`` starts R copies of the command. Inside
:func:`launched` each joins the process group (NCCL on GPUs, one GPU per local rank; gloo on CPUs), and
the landscape probes shard the data and all-reduce (:mod:`landscape.distributed`). Only rank 0 writes
``--out``. The other ranks run the very same code on a private scratch copy of ``--out`` (copied before
rank 0 touches it, deleted afterwards) with their prints silenced: every rank then takes the same
branches -- which points a ``--resume`` still has to compute, above all -- and so issues the same
collectives, which guarding each write separately could not promise.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator

import torch.distributed as dist

from landscape import is_main_process, process_group


@contextlib.contextmanager
def launched(args: argparse.Namespace) -> Iterator[None]:
    """Join the ``torchrun`` group (a no-op without a launcher) and point other ranks' ``args.out`` at scratch.

    Under NCCL ``--device auto`` or ``cuda`` becomes this rank's GPU (``cuda:LOCAL_RANK``).
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        yield
        return
    with process_group() as device:
        if device.type == "cuda" and args.device in ("auto", "cuda"):
            args.device = str(device)
        if is_main_process():
            dist.barrier()  # the other ranks have copied --out: rank 0 may now change it
            yield
            return
        with tempfile.TemporaryDirectory(prefix="rank-scratch-") as scratch, open(os.devnull, "w") as devnull:
            private = os.path.join(scratch, os.path.basename(args.out))
            if os.path.exists(args.out):
                shutil.copy2(args.out, private)
            args.out = private
            dist.barrier()
            with contextlib.redirect_stdout(devnull):
                try:
                    yield
                except SystemExit:
                    sys.exit(1)  # rank 0 prints the error line; others exit quietly
