"""Full float32 arithmetic for curvature probes, whatever the training code set globally."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


@contextlib.contextmanager
def full_float32() -> Iterator[None]:
    """Disable TF32 matmuls and convolutions (cuDNN's default is on) inside the block; restore after.

    TF32 rounds products to 10 mantissa bits, about 1e-3 relative: far above the 1e-5 agreement that
    Lanczos and Hutchinson need between two Hessian-vector products of the same vector.
    """
    flags = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = flags
