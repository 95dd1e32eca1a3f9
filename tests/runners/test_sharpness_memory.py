"""runners.sharpness --max-basis-vectors: bounded Lanczos end to end, and refusals in one line naming the flag."""

from __future__ import annotations

import h5py
import pytest

import landscape._basis
from runners.sharpness import main
from tests.runners.test_sharpness_cli import FAST, run_dir  # noqa: F401 (the fixture)


def test_a_bounded_basis_gives_the_unbounded_top_eigenvalues(run_dir, tmp_path):  # noqa: F811
    rows = {}
    for name, extra in (("free", []), ("bounded", ["--max-basis-vectors", "4"])):
        out = tmp_path / f"{name}.h5"
        main(["--ckpt", str(run_dir / "checkpoints/efcn_tw1/final.pt"), "--out", str(out), *FAST, "--tol", "1e-6", *extra])
        with h5py.File(out) as store:
            rows[name] = next(iter(store["sharpness"].values()))["top_eigs"][()]
    assert rows["bounded"] == pytest.approx(rows["free"], rel=1e-4)


def test_too_small_a_basis_and_one_that_cannot_fit_are_refused_in_one_line(run_dir, tmp_path, monkeypatch):  # noqa: F811
    out = tmp_path / "x.h5"
    with pytest.raises(SystemExit, match=r"--max-basis-vectors must be >= 4, got 3"):
        main(["--run-dir", str(run_dir), "--out", str(out), *FAST, "--max-basis-vectors", "3"])
    # Vectors of 250 float32 entries (1000 bytes): room for the working vectors and 5 stored.
    monkeypatch.setattr(landscape._basis, "default_max_bytes", lambda device: (landscape._basis.WORK_VECTORS + 5) * 1000)
    with pytest.raises(SystemExit, match=r"^error: Lanczos would keep 20 vectors .* pass max_basis_vectors=5 \(CLI: --max-basis-vectors 5;"):
        main(["--run-dir", str(run_dir), "--out", str(out), *FAST])
