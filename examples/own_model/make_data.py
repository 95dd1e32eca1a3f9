"""Write the walkthrough's data set: four wave shapes hidden at random shifts in noisy 1-D signals.

``python -m examples.own_model.make_data --out data.npz`` writes the arrays ``--data npz:PATH`` reads
(``x_train``, ``y_train``, ``x_test``, ``y_test``): inputs of shape ``(N, 1, 32)`` float32, labels 0..3
(a bump, a step, a sine burst, a sawtooth), so 4 classes and length 32 where MNIST-1D has 10 and 40.
Each pattern sits at a random position, so weight sharing (a CNN) helps and a dense net must learn
every position: the setting in which the paper compares CNNs with their eFCNs.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

LENGTH = 32
WIDTH = 12  # length of a pattern; it is placed anywhere in the signal


def patterns() -> np.ndarray:
    """The four class templates, each of length :data:`WIDTH`, scaled to unit peak."""
    t = np.linspace(0.0, 1.0, WIDTH)
    bump = np.exp(-((t - 0.5) ** 2) / 0.02)
    step = np.where(t < 0.5, -1.0, 1.0)
    sine = np.sin(4 * np.pi * t)
    saw = 2 * ((2 * t) % 1.0) - 1
    return np.stack([bump, step, sine, saw])


def make(n: int, generator: np.random.Generator, noise: float) -> tuple[np.ndarray, np.ndarray]:
    """``n`` signals ``(n, 1, LENGTH)`` and their labels ``(n,)``, classes balanced by construction."""
    labels = np.arange(n) % len(patterns())
    generator.shuffle(labels)
    x = noise * generator.standard_normal((n, 1, LENGTH))
    shifts = generator.integers(0, LENGTH - WIDTH + 1, size=n)
    for i, (label, shift) in enumerate(zip(labels, shifts)):
        x[i, 0, shift:shift + WIDTH] += patterns()[label]
    return x.astype(np.float32), labels.astype(np.int64)


def main(argv: list[str] | None = None) -> Path:
    """Write the ``.npz`` file and return its path."""
    parser = argparse.ArgumentParser(prog="python -m examples.own_model.make_data", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="the .npz file to write")
    parser.add_argument("--n-train", type=int, default=512, help="training signals (default: 512)")
    parser.add_argument("--n-test", type=int, default=512, help="test signals (default: 512)")
    parser.add_argument("--noise", type=float, default=0.6, help="standard deviation of the noise (default: 0.6)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the generator (default: 0)")
    args = parser.parse_args(argv)
    generator = np.random.default_rng(args.seed)
    x_train, y_train = make(args.n_train, generator, args.noise)
    x_test, y_test = make(args.n_test, generator, args.noise)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(args.out, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    print(f"wrote {args.out}: {len(x_train)} training and {len(x_test)} test signals of shape {x_train.shape[1:]}, "
          f"{len(patterns())} classes")
    return args.out


if __name__ == "__main__":
    main()
