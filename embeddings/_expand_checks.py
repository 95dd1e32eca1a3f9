"""Boundary checks of ``expand`` / ``compress``: each message says what was expected, what was
received and what to do instead."""

from __future__ import annotations

from torch import nn

MODES = ("fc", "cl", "ck", "cl+fc", "ck+fc")


def check_mode(mode: object) -> tuple[str, ...]:
    """The parts of a mode string, e.g. ``"ck+fc" -> ("ck", "fc")``."""
    if mode not in MODES:
        raise ValueError(f"expand: mode must be one of {', '.join(map(repr, MODES))}; got {mode!r}")
    return tuple(str(mode).split("+"))


def check_rate(rate: object) -> int:
    if isinstance(rate, bool) or not isinstance(rate, int) or rate < 1:
        raise ValueError(f"expand: rate must be a positive int (the paper uses 4); got {rate!r}")
    return rate


def conv_padding(name: str, conv: nn.Conv1d | nn.Conv2d) -> tuple[int, ...]:
    """The conv's padding as ints per spatial dim, refusing what a chain cannot reproduce exactly."""
    where = f"expand: layer {name!r} ({conv})"
    if conv.groups != 1:
        raise ValueError(f"{where}: grouped convolutions are not supported (groups={conv.groups}); expected groups=1")
    if any(d != 1 for d in conv.dilation):
        raise ValueError(f"{where}: dilated convolutions are not supported (dilation={conv.dilation}); expected 1")
    if isinstance(conv.padding, str):
        if conv.padding == "valid":
            return (0,) * len(conv.kernel_size)
        # 'same' pads (k - 1) / 2 on both sides only for odd kernels; even ones pad unevenly.
        if any(k % 2 == 0 for k in conv.kernel_size):
            raise ValueError(f"{where}: padding='same' with an even kernel pads unevenly; give explicit int padding")
        return tuple(k // 2 for k in conv.kernel_size)
    return tuple(int(p) for p in conv.padding)


def check_ck_kernel(name: str, conv: nn.Conv1d | nn.Conv2d) -> int:
    """CK needs a square, odd kernel k > 3: it becomes (k - 1) / 2 stacked 3x3 convolutions."""
    sizes = set(conv.kernel_size)
    k = next(iter(sizes))
    if len(sizes) != 1 or k % 2 == 0 or k <= 3:
        raise ValueError(
            f"expand: mode 'ck' replaces a k x k kernel by (k - 1) / 2 stacked 3 x 3 kernels, so it needs a square odd "
            f"kernel with k > 3 (5, 7, 9, ...); layer {name!r} has kernel_size={tuple(conv.kernel_size)}. "
            f"Use mode 'cl' (or 'cl+fc') for this net"
        )
    return k
