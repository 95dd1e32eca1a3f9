"""Finite numbers or a clear stop (issue 16): diverging training, probes of non-finite models, BatchNorm extrapolation.

Each test reproduces one failure of the fault campaign (a NaN reported as a number, a traceback, a
wrong cause) and pins the one-line error or the status that replaced it.
"""

from __future__ import annotations

import math

import h5py
import numpy as np
import pytest
import torch
from torch import nn

import landscape
from results import load_checkpoint, read_attrs, read_curve
from runners import relax as relax_cli
from runners import train as train_cli

TINY = ["--data", "fake", "--n-train", "64", "--n-test", "32", "--channels", "2", "--batch-size", "16", "--quiet"]
# The campaign's --lr 1e3 gives NaN in epoch 1 on MNIST-1D at 64 channels (checked by hand, 40 s); the tiny
# ReLU net on fake data only grows its loss linearly in lr, so it needs a rate whose first step overflows float32.
DIVERGING = ["--lr", "1e37", "--optimizer", "sgd"]


def _linear(weight_fill: float | None = None) -> tuple[nn.Module, list]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3)).eval()
    if weight_fill is not None:
        with torch.no_grad():
            model[1].weight[0, 1] = weight_fill
    return model, [(torch.randn(8, 4), torch.randint(0, 3, (8,)))]


# --- training: status="diverged", no accuracy, non-zero exit ---------------------------------------------


def test_train_diverging_run_exits_non_zero_with_status_diverged(tmp_path, capsys):
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as exit_info:
        train_cli.main([*TINY, *DIVERGING, "--epochs", "3", "--save-at", "0,3", "--out", str(out)])
    message = str(exit_info.value.code)
    assert message.startswith("error: cnn diverged: its training loss became non-finite in epoch 1") and "\n" not in message
    assert "test accuracy" not in capsys.readouterr().out  # the campaign saw "test accuracy 0.0859" (argmax of NaN)
    with h5py.File(out / "results.h5", "r") as store:
        attrs = read_attrs(store["runs/cnn"])
        history = read_curve(store["runs/cnn/history"])
    assert attrs["status"] == "diverged" and attrs["diverged_epoch"] == 1
    assert not any(key.startswith("final_") or key == "best_test_acc" for key in attrs)
    assert history["epoch"].tolist() == [0.0] and np.isfinite(history["train_loss"]).all()
    assert (out / "checkpoints/cnn/epoch_0.pt").is_file()  # before the divergence: a model worth probing
    assert not (out / "checkpoints/cnn/epoch_3.pt").exists() and not (out / "checkpoints/cnn/final.pt").exists()
    assert not (out / "state").exists() or not any((out / "state").iterdir())


def test_relax_continues_other_runs_skips_children_of_a_diverged_parent_and_exits_non_zero(tmp_path, capsys):
    out = tmp_path / "relax"
    args = [*TINY, *DIVERGING, "--epochs", "2", "--relax-epochs", "1", "--t-w", "0,2", "--tw1", "", "--jobs", "1", "--out", str(out)]
    with pytest.raises(SystemExit) as exit_info:
        relax_cli.main(args)
    message = str(exit_info.value.code)
    assert message.startswith("error: runs without a result: ") and "\n" not in message
    with h5py.File(out / "results.h5", "r") as store:
        statuses = {name: group.attrs["status"] for name, group in store["runs"].items()}
        cnn = read_attrs(store["runs/cnn"])
        aggregates = read_attrs(store["aggregates"]) if "aggregates" in store else {}
        aggregated = set(store["aggregates"]) if "aggregates" in store else set()
    assert statuses["cnn"] == "diverged" and cnn["diverged_epoch"] == 1
    assert statuses["efcn_tw0"] == statuses["fcn"] == "diverged"  # snapshot 0 exists: the child trained (and diverged)
    assert statuses["efcn_tw2"] == "skipped"  # the CNN never reached epoch 2
    assert "cnn diverged in epoch 1" in message and "efcn_tw2 skipped" in message
    assert not aggregated & {"cnn", "efcn_tw0", "efcn_tw2", "fcn"}  # no mean over non-results
    assert "cnn" in aggregates.get("excluded_runs", "")
    from runners._figures import write_report

    report = write_report(out / "results.h5", tmp_path / "report.md", {}, {}, seconds=0.0).read_text()
    assert "- left out of every number and figure (no result): cnn diverged in epoch 1; " in report
    # --resume does not retrain them (the same seed diverges again) and still exits non-zero
    with pytest.raises(SystemExit, match="runs without a result"):
        relax_cli.main([*args, "--resume"])


@pytest.mark.slow  # two spawned worker processes (about 40 s on a loaded 2-core machine)
def test_relax_in_parallel_skips_the_last_children_and_ends(tmp_path):
    # The pool's loop once ended with "runs [] wait for parents []" when the last pending runs were skipped.
    out = tmp_path / "relax"
    with pytest.raises(SystemExit, match=r"^error: runs without a result: cnn diverged in epoch 1; efcn_tw2 skipped: "):
        relax_cli.main([*TINY, *DIVERGING, "--epochs", "2", "--relax-epochs", "1", "--t-w", "2", "--tw1", "", "--jobs", "2",
                        "--threads", "1", "--out", str(out)])


# --- probes: refuse non-finite parameters, never return NaN ---------------------------------------------

PROBES = {
    "lanczos": lambda m, b: landscape.hessian_eigenvalues(m, None, b),
    "hutchinson": lambda m, b: landscape.hessian_trace(m, None, b, method="hutchinson", num_matvecs=3),
    "hutch++": lambda m, b: landscape.hessian_trace(m, None, b, method="hutch++", num_matvecs=3),
    "density": lambda m, b: landscape.hessian_density(m, None, b, max_iter=3),
    "basin": lambda m, b: landscape.basin_width(m, None, b, num_directions=1),
    "epsilon": lambda m, b: landscape.epsilon_sharpness(m, None, b, steps=2),
    "interpolate": lambda m, b: landscape.interpolate(m, m, None, b, alphas=[0.0, 1.0]),
    "surface": lambda m, b: landscape.loss_surface(m, None, b, dims=1, grid_points=3),
    "cosines": lambda m, b: landscape.gradient_cosines(m, None, [b[0], b[0]]),
}


@pytest.mark.parametrize("probe", PROBES)
def test_probes_refuse_nan_parameters_naming_the_first(probe):
    model, batches = _linear(float("nan"))
    with pytest.raises(landscape.NonFiniteError, match=r"^parameter '1\.weight' holds 1 non-finite value \(NaN or inf\) of 12;"):
        PROBES[probe](model, batches)
    assert issubclass(landscape.NonFiniteError, ValueError)


def test_probes_refuse_nan_batchnorm_statistics():
    model = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3)).eval()
    model[1].running_var[0] = float("inf")
    with pytest.raises(landscape.NonFiniteError, match=r"^buffer '1\.running_var'"):
        landscape.hessian_eigenvalues(model, None, [(torch.randn(8, 4), torch.randint(0, 3, (8,)))])


@pytest.mark.parametrize("algorithm", [landscape.lanczos, landscape.hutchinson, landscape.hutch_plus_plus])
def test_free_algorithms_report_a_non_finite_operator(algorithm):
    matrix = torch.eye(4, dtype=torch.float64)
    matrix[2, 2] = float("nan")
    kwargs = {"num_matvecs": 6} if algorithm is not landscape.lanczos else {}
    with pytest.raises(landscape.NonFiniteError, match="is not finite"):
        algorithm(matrix, **kwargs)


def test_basin_and_epsilon_sharpness_report_an_overflowing_loss():
    model, batches = _linear(3e38)  # finite weights, infinite logits: the loss is NaN
    for probe in (PROBES["basin"], PROBES["epsilon"]):
        with pytest.raises(landscape.NonFiniteError, match=r"^the loss at the model's parameters is not finite \(nan\)"):
            probe(model, batches)


def test_filter_normalized_direction_names_nan_not_all_zero_filters():
    model, _ = _linear(float("nan"))
    with pytest.raises(landscape.NonFiniteError, match="parameter '1.weight'"):
        landscape.filter_normalized_direction(landscape.parameter_subspace(model))


# --- interpolation: non-finite points marked, BatchNorm extrapolation refused -----------------------------


def test_interpolation_marks_non_finite_points_and_keeps_metrics_finite():
    model_a, batches = _linear()
    model_b, _ = _linear(5.0)
    result = landscape.interpolate(model_a, model_b, None, batches, alphas=[0.0, 0.5, 1.0, 1e38], method="linear",
                                   test_batches=batches)
    assert result.nonfinite_alphas == (1e38,)
    assert math.isnan(result.train_acc[-1]) and math.isnan(result.test_acc[-1])  # not the argmax of NaN logits
    assert np.isfinite(result.train_acc[:3]).all()
    assert math.isfinite(result.metrics.barrier) and math.isfinite(result.metrics.peak_test_acc)


def _batchnorm_pair() -> tuple[nn.Module, nn.Module, list]:
    torch.manual_seed(0)
    model_a = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3)).eval()
    model_b = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3)).eval()
    model_a[1].running_var.fill_(1.0)
    model_b[1].running_var.fill_(3.0)
    return model_a, model_b, [(torch.randn(16, 4), torch.randint(0, 3, (16,)))]


def test_extrapolating_batchnorm_variances_below_zero_is_refused():
    model_a, model_b, batches = _batchnorm_pair()
    # 1 + alpha (3 - 1) < 0 at alpha = -1: the campaign got NaN losses and no warning
    with pytest.raises(ValueError, match=r"^at alpha=-1 the interpolated BatchNorm variance '1\.running_var' is negative"):
        landscape.interpolate(model_a, model_b, None, batches, alphas=[-1.0, 0.0, 1.0], bn_recalibrate=False)
    fine = landscape.interpolate(model_a, model_b, None, batches, alphas=[-0.25, 0.0, 1.0, 2.0], bn_recalibrate=False)
    assert np.isfinite(fine.train_loss).all()  # still positive: allowed
    recalibrated = landscape.interpolate(model_a, model_b, None, batches, alphas=[-1.0, 0.0, 1.0], bn_recalibrate=True)
    assert np.isfinite(recalibrated.train_loss).all()


# --- smaller items -----------------------------------------------------------------------------------------


def test_run_killed_after_final_checkpoint_is_not_retrained(tmp_path, monkeypatch):
    out = tmp_path / "run"
    base = [*TINY, "--epochs", "2", "--out", str(out)]
    assert train_cli.main(base) == 0
    with h5py.File(out / "results.h5", "r+") as store:  # the kill: final.pt written, the group not yet marked done
        store["runs/cnn"].attrs["status"] = "running"
        before = read_attrs(store["runs/cnn"])
    trained = []
    from runners._engine import loop

    monkeypatch.setattr(loop, "_record", lambda *a, **k: trained.append(1) or pytest.fail("retrained"))
    assert train_cli.main([*base, "--resume"]) == 0
    with h5py.File(out / "results.h5", "r") as store:
        after = read_attrs(store["runs/cnn"])
        history = read_curve(store["runs/cnn/history"])
    assert after["status"] == "done" and after["final_test_acc"] == before["final_test_acc"] and not trained
    assert history["epoch"].tolist() == [0.0, 1.0, 2.0]
    assert load_checkpoint(out / "checkpoints/cnn/final.pt")[1]["epoch"] == 2


def test_relax_resume_reports_a_deleted_final_checkpoint_and_restores_it(tmp_path, capsys):
    out = tmp_path / "relax"
    args = [*TINY, "--lr", "0.01", "--epochs", "1", "--relax-epochs", "1", "--t-w", "0", "--tw1", "", "--jobs", "1",
            "--out", str(out)]
    assert relax_cli.main(args) == 0
    (out / "checkpoints/fcn/final.pt").unlink()
    capsys.readouterr()
    assert relax_cli.main([*args, "--resume"]) == 0
    err = capsys.readouterr().err
    assert f"missing checkpoints of finished runs, trained again: {out / 'checkpoints/fcn/final.pt'}" in err
    assert (out / "checkpoints/fcn/final.pt").is_file()


def test_threads_honoured_with_one_job(tmp_path, monkeypatch):
    from runners._engine import pool

    seen = []

    def executor(spec, context, emit):
        seen.append(torch.get_num_threads())
        return pool.Outcome({})

    context = type("Context", (), {"out": str(tmp_path)})()
    torch.set_num_threads(1)
    with h5py.File(tmp_path / "r.h5", "w") as store:
        pool.run_all([pool.RunSpec("a", "cnn", 1)], context, store.create_group("runs"), executor=executor, jobs=1, threads=2)
    assert seen == [2] and torch.get_num_threads() == 1  # set for the run, restored after


# --- CLIs over probes: a diverged checkpoint is one line, before anything is written -----------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A finished tiny run (snapshot 0 and final.pt) and a checkpoint of its CNN with one NaN weight."""
    out = tmp_path_factory.mktemp("trained")
    assert train_cli.main([*TINY, "--epochs", "1", "--save-at", "0", "--out", str(out)]) == 0
    model, meta = load_checkpoint(out / "checkpoints/cnn/final.pt")
    with torch.no_grad():
        next(model.parameters()).view(-1)[0] = float("nan")
    from results import save_checkpoint

    save_checkpoint(out / "nan.pt", model, **meta)
    return out


def test_interpolate_refuses_a_diverged_endpoint_in_one_line(trained, tmp_path):
    from runners import interpolate as interpolate_cli

    out = tmp_path / "paths.h5"
    with pytest.raises(SystemExit) as exit_info:
        interpolate_cli.main(["--ckpt-a", str(trained / "checkpoints/cnn/epoch_0.pt"), "--ckpt-b", str(trained / "nan.pt"),
                              "--methods", "linear", "--points", "3", "--out", str(out), *TINY[:6], "--quiet"])
    message = str(exit_info.value.code)
    assert message.startswith(f"error: {trained / 'nan.pt'}: parameter ") and "non-finite" in message and "\n" not in message
    assert not out.exists()  # the campaign got exit 0, NaN curves and a "peak test acc"


def test_sharpness_refuses_a_diverged_checkpoint_in_one_line(trained, tmp_path):
    from runners import sharpness as sharpness_cli

    out = tmp_path / "sharp.h5"
    with pytest.raises(SystemExit) as exit_info:  # the campaign got a SciPy traceback from Lanczos
        sharpness_cli.main(["--ckpt", str(trained / "nan.pt"), "--out", str(out), *TINY[:4], "--k", "1", "--trace-probes", "3",
                            "--basin-directions", "1", "--epsilon", "0", "--quiet"])
    assert str(exit_info.value.code).startswith(f"error: {trained / 'nan.pt'}: parameter ")
    assert not out.exists()


def test_sharpness_run_dir_reports_a_deleted_final_checkpoint(trained, tmp_path):
    from runners import sharpness as sharpness_cli

    final = trained / "checkpoints/cnn/final.pt"
    kept = final.read_bytes()
    final.unlink()
    try:
        with pytest.raises(SystemExit, match=r"^error: checkpoints of finished runs are missing: .*checkpoints/cnn/final\.pt; restore"):
            sharpness_cli.main(["--run-dir", str(trained), "--out", str(tmp_path / "sharp.h5"), *TINY[:4], "--quiet"])
    finally:
        final.write_bytes(kept)


def test_ck_expands_the_eligible_convs_and_lists_those_left_compact():
    from embeddings import compress, expand, expanded_layers

    torch.manual_seed(0)
    compact = nn.Sequential(nn.Conv2d(2, 3, 5, padding=2), nn.ReLU(), nn.Conv2d(3, 4, 3, padding=1), nn.Flatten(),
                            nn.Linear(4 * 6 * 6, 10)).double()
    with pytest.warns(UserWarning, match=r"^expand: mode 'ck' leaves 2 compact \(kernels that are not square"):
        expanded = expand(compact, "ck", rate=2)
    assert set(expanded_layers(expanded)) == {"0"} and type(expanded[2]) is nn.Conv2d
    assert expanded.expansion["left_compact"] == ["2"]
    x = torch.randn(3, 2, 6, 6, dtype=torch.float64)
    torch.testing.assert_close(compress(expanded)(x), expanded(x), atol=1e-10, rtol=0)  # still exact
    with pytest.raises(ValueError, match=r"layer '0' has kernel_size=\(3, 3\)"):  # nothing eligible: refused as before
        expand(nn.Sequential(nn.Conv2d(2, 3, 3), nn.Flatten(), nn.Linear(48, 2)), "ck")


def test_expandnets_diverging_runs_are_left_out_of_the_summary_and_exit_non_zero(tmp_path):
    from runners import expandnets as expandnets_cli

    out = tmp_path / "xn"
    with pytest.raises(SystemExit, match=r"^error: runs without a result: compact_seed0 diverged in epoch 1"):
        expandnets_cli.main(["--data", "fake", "--n-train", "60", "--n-test", "30", "--batch-size", "20", "--epochs", "1",
                             "--cosine-batches", "2", "--quiet", "--kernel-size", "5", "--modes", "compact", *DIVERGING,
                             "--out", str(out)])
    with h5py.File(out / "expandnets.h5", "r") as store:
        attrs = read_attrs(store["runs/compact_seed0"])
        summary = read_attrs(store["runs"])["summary"]
    assert attrs["status"] == "diverged" and "final_test_acc" not in attrs and "compact" not in summary
    assert not (out / "checkpoints/compact_seed0").exists() or not any((out / "checkpoints/compact_seed0").glob("compressed*"))
