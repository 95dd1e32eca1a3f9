"""Own models from the command line: a torchvision ResNet-18 state dict through interpolate and sharpness,
--model flags and their one-line errors, and a checkpoint of an import-path model rebuilt in a fresh process."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from embeddings import build_model
from runners.interpolate import main as interpolate_main
from runners.sharpness import main as sharpness_main

RESNET = ["--model", "torchvision.models:resnet18", "--model-kwargs", '{"num_classes": 10}', "--input-shape", "3,16,16"]
FAKE = ["--data", "fake", "--n-train", "16", "--batch-size", "16", "--quiet"]
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def state_dicts(tmp_path_factory):
    """Two randomly initialised ResNet-18s (3x16x16 inputs, ten classes), saved as plain state dicts."""
    folder = tmp_path_factory.mktemp("resnet")
    paths = []
    for seed, name in ((0, "a.pt"), (1, "b.pt")):
        torch.manual_seed(seed)
        model = build_model("torchvision.models:resnet18", num_classes=10)
        torch.save(model.state_dict(), folder / name)
        paths.append(folder / name)
    return paths


@pytest.fixture(scope="module")
def npz_data(tmp_path_factory):
    """16 training and 8 test images of 3x16x16 in ten classes, as the arrays --data npz:PATH reads."""
    generator = np.random.default_rng(0)
    arrays = {"x_train": generator.standard_normal((16, 3, 16, 16)).astype(np.float32), "y_train": np.arange(16) % 10,
              "x_test": generator.standard_normal((8, 3, 16, 16)).astype(np.float32), "y_test": np.arange(8) % 10}
    path = tmp_path_factory.mktemp("data") / "images.npz"
    np.savez(path, **arrays)
    return path, arrays


def test_resnet18_state_dicts_interpolate_from_the_command_line(state_dicts, npz_data, tmp_path, capsys):
    out = tmp_path / "paths.h5"
    argv = ["--ckpt-a", str(state_dicts[0]), "--ckpt-b", str(state_dicts[1]), *RESNET, "--data", f"npz:{npz_data[0]}",
            "--batch-size", "16", "--quiet", "--methods", "linear", "--points", "3", "--no-bn-recalibrate", "--out", str(out),
            "--name", "resnets"]
    assert interpolate_main(argv) == 0
    assert "common space cnn" in capsys.readouterr().out
    # the endpoints' losses are those of the state dicts loaded into fresh ResNets, evaluated here on the arrays
    x, y = (torch.from_numpy(npz_data[1][key]) for key in ("x_train", "y_train"))
    losses = []
    for path in state_dicts:
        model = build_model("torchvision.models:resnet18", num_classes=10)
        model.load_state_dict(torch.load(path, weights_only=True))
        with torch.no_grad():
            losses.append(float(torch.nn.functional.cross_entropy(model.eval()(x), y)))
    with h5py.File(out, "r") as store:
        curve = store["interpolation/resnets/linear"]
        assert curve["alpha"][()].tolist() == [0.0, 0.5, 1.0]
        np.testing.assert_allclose(curve["train_loss"][()][[0, -1]], losses, rtol=1e-5)


@pytest.mark.slow  # ~20 s on 2 loaded cores: weight matching over the 11M parameters of two ResNet-18s
def test_resnet18_state_dicts_interpolate_aligned(state_dicts, npz_data, tmp_path):
    out = tmp_path / "aligned.h5"
    argv = ["--ckpt-a", str(state_dicts[0]), "--ckpt-b", str(state_dicts[1]), *RESNET, "--data", f"npz:{npz_data[0]}",
            "--batch-size", "16", "--quiet", "--methods", "linear",
            "--points", "3", "--align", "weights", "--out", str(out), "--name", "resnets"]
    assert interpolate_main(argv) == 0
    with h5py.File(out, "r") as store:
        group = store["interpolation/resnets"]
        aligned, unaligned = group["linear/train_loss"][()], group["unaligned/linear/train_loss"][()]
        # B permuted computes B's function: the path's endpoints keep their losses, its interior moves
        np.testing.assert_allclose(aligned[[0, -1]], unaligned[[0, -1]], rtol=1e-4)
        assert group.attrs["align"] == "weights"


@pytest.mark.slow  # ~17 s on 2 loaded cores: basin_width's 40 loss evaluations perturb 11M ResNet parameters
def test_resnet18_state_dict_sharpness_from_the_command_line(state_dicts, npz_data, tmp_path):
    out = tmp_path / "sharp.h5"
    argv = ["--ckpt", str(state_dicts[0]), *RESNET[:4], "--data", f"npz:{npz_data[0]}", "--batch-size", "16", "--quiet", "--coordinates", "own", "--k", "1", "--tol", "0.2",
            "--trace-probes", "3", "--basin-directions", "1", "--basin-max", "0.2", "--out", str(out)]
    assert sharpness_main(argv) == 0
    with h5py.File(out, "r") as store:
        (run,) = store["sharpness"].keys()
        curve = store[f"sharpness/{run}/curve"]
        assert np.isfinite(curve["train_loss"][()]).all() and np.isfinite(curve["trace"][()]).all()
        assert np.isfinite(store[f"sharpness/{run}/top_eigs"][0, 0])


@pytest.mark.parametrize("flags, message", [
    ([], r"is a plain state dict .* pass --model package.module:factory"),
    (["--model", "torchvision.models:no_such_net"], r"--model torchvision.models:no_such_net: module 'torchvision.models' has no attribute"),
    (["--model", "no_such_pkg_xyz.models:net"], r"--model no_such_pkg_xyz.models:net: cannot import module 'no_such_pkg_xyz.models'"),
    (["--model", "torchvision.models:resnet18", "--model-kwargs", '{"depth": 3}'],
     r"--model torchvision.models:resnet18: architecture 'torchvision.models:resnet18' does not accept arguments"),
    (["--model", "torchvision.models:resnet18"], r"weights do not fit|size mismatch|fc.weight"),  # 1000 classes by default
    (["--model", "torchvision.models:resnet18", "--model-kwargs", '{"num_classes": 10}'],
     r"--data fake needs the input shape, which .*a.pt \(model torchvision.models:resnet18\) does not record; pass --input-shape"),
])
def test_bad_model_flags_are_one_line(state_dicts, tmp_path, capsys, flags, message):
    argv = ["--ckpt-a", str(state_dicts[0]), "--ckpt-b", str(state_dicts[1]), *flags, *FAKE, "--methods", "linear",
            "--points", "2", "--out", str(tmp_path / "x.h5")]
    with pytest.raises(SystemExit) as info:
        interpolate_main(argv)
    text = str(info.value.code)
    assert text.startswith("error: ") and "\n" not in text
    assert __import__("re").search(message, text), text
    assert not (tmp_path / "x.h5").exists()


@pytest.mark.parametrize("tool", ["train", "relax", "interpolate", "sharpness"])  # expandnets: a choice of its two nets
def test_every_cli_says_the_same_line_for_a_bad_model(state_dicts, tmp_path, tool):
    """One ``--model X: <why>`` line, whichever command builds the model."""
    from runners import relax, train

    bad = ["--model", "no_such_pkg_xyz.models:net"]
    out = ["--out", str(tmp_path / "r")]
    argv = {"train": [*bad, *FAKE, *out], "relax": [*bad, *FAKE, *out],
            "interpolate": ["--ckpt-a", str(state_dicts[0]), "--ckpt-b", str(state_dicts[1]), *bad, *FAKE, *out],
            "sharpness": ["--ckpt", str(state_dicts[0]), *bad, *FAKE, *out]}[tool]
    main = {"train": train.main, "relax": relax.main, "interpolate": interpolate_main, "sharpness": sharpness_main}[tool]
    with pytest.raises(SystemExit) as info:
        main(argv)
    text = str(info.value.code)
    assert text.startswith("error: --model no_such_pkg_xyz.models:net: cannot import module 'no_such_pkg_xyz.models' of ") and "\n" not in text
    assert not (tmp_path / "r").exists()


def test_npz_data_gives_the_input_shape_no_flag_needed(state_dicts, npz_data, tmp_path):
    resnet = RESNET[:4]  # no --input-shape: the arrays have one
    assert interpolate_main(["--ckpt-a", str(state_dicts[0]), "--ckpt-b", str(state_dicts[0]), *resnet, "--data", f"npz:{npz_data[0]}",
                             "--quiet", "--methods", "linear", "--points", "2", "--no-bn-recalibrate", "--out", str(tmp_path / "p.h5")]) == 0
    with h5py.File(tmp_path / "p.h5", "r") as store:
        (name,) = store["interpolation"].keys()
        loss = store[f"interpolation/{name}/linear/train_loss"][()]
    assert loss[0] == pytest.approx(loss[1], rel=1e-6)  # A to A: one model all along


def test_sharpness_of_a_state_dict_of_unknown_shape_on_fake_data_is_one_line(state_dicts, tmp_path):
    with pytest.raises(SystemExit, match=r"^error: --data fake needs the input shape, which .*a.pt \(model torchvision.models:resnet18\) "
                                         r"does not record; pass --input-shape"):
        sharpness_main(["--ckpt", str(state_dicts[0]), *RESNET[:4], *FAKE, "--out", str(tmp_path / "s.h5")])
    assert not (tmp_path / "s.h5").exists()


SHAPELESS_MODULE = """
from torch import nn


def net():
    return nn.Sequential(nn.Conv1d(1, 2, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(16, 3))
"""


def test_efcn_coordinates_of_a_shapeless_checkpoint_use_the_data_shape(tmp_path):
    """--coordinates both embeds a CNN whose factory records no input shape, for the inputs of --data npz:."""
    generator = np.random.default_rng(1)
    np.savez(tmp_path / "d.npz", x_train=generator.standard_normal((12, 1, 8)).astype(np.float32), y_train=np.arange(12) % 3,
             x_test=generator.standard_normal((3, 1, 8)).astype(np.float32), y_test=np.arange(3))
    (tmp_path / "shapeless_for_test.py").write_text(textwrap.dedent(SHAPELESS_MODULE))
    sys.path.insert(0, str(tmp_path))
    try:
        torch.manual_seed(0)
        torch.save(build_model("shapeless_for_test:net").state_dict(), tmp_path / "m.pt")
        assert sharpness_main(["--ckpt", str(tmp_path / "m.pt"), "--model", "shapeless_for_test:net", "--data", f"npz:{tmp_path / 'd.npz'}",
                               "--quiet", "--k", "1", "--trace-probes", "3", "--basin-directions", "1", "--coordinates", "both",
                               "--out", str(tmp_path / "s.h5")]) == 0
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("shapeless_for_test", None)
    with h5py.File(tmp_path / "s.h5", "r") as store:
        (run,) = store["sharpness"].keys()
        curve = store[f"sharpness/{run}/curve"]
        # the eFCN is the CNN embedded exactly: the same loss in both coordinates
        assert curve["train_loss_efcn"][0] == pytest.approx(curve["train_loss"][0], rel=1e-5)
        assert np.isfinite(store[f"sharpness/{run}/top_eigs_efcn"][0, 0])


def test_arch_aliases_still_parse():
    from runners.interpolate import build_parser

    args = build_parser().parse_args(["--ckpt-a", "a", "--ckpt-b", "b", "--arch", "mlp", "--arch-kwargs", '{"hidden": [4]}'])
    assert (args.arch, args.arch_kwargs, args.input_shape) == ("mlp", {"hidden": [4]}, None)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--ckpt-a", "a", "--ckpt-b", "b", "--input-shape", "3,x"])


def test_input_shape_flag_and_model_kwargs_must_agree():
    from runners.cli import model_kwargs
    from runners.interpolate import build_parser

    args = build_parser().parse_args(["--ckpt-a", "a", "--ckpt-b", "b", "--model-kwargs", '{"input_shape": [1, 40]}', "--input-shape", "1,40"])
    assert model_kwargs(args) == {"input_shape": (1, 40)}
    args.input_shape = (3, 8, 8)
    with pytest.raises(SystemExit, match=r"^error: --input-shape 3,8,8 and --model-kwargs input_shape \[1, 40\] disagree; give one$"):
        model_kwargs(args)


USER_MODULE = """
from torch import nn


def net(width=3, num_classes=4):
    return nn.Sequential(nn.Conv1d(1, width, 3, padding=1), nn.BatchNorm1d(width), nn.ReLU(), nn.Flatten(),
                         nn.Linear(width * 8, num_classes))
"""

FRESH_PROCESS = """
import sys, torch
from results import load_checkpoint
model, meta = load_checkpoint(sys.argv[1])
x = torch.load(sys.argv[2], weights_only=True)
torch.save({"y": model(x), "arch": model.arch, "shape": list(model.input_shape), "meta": meta}, sys.argv[3])
"""


def _in_a_fresh_process(tmp_path: Path, checkpoint: Path, x: torch.Tensor) -> dict:
    """What FRESH_PROCESS reports of ``checkpoint`` loaded by a new Python that imports only what tmp_path and the repo hold."""
    torch.save(x, tmp_path / "x.pt")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT), os.environ.get("PYTHONPATH", "")])}
    subprocess.run([sys.executable, "-c", FRESH_PROCESS, str(checkpoint), str(tmp_path / "x.pt"), str(tmp_path / "y.pt")],
                   check=True, env=env, cwd=tmp_path, timeout=120)
    return torch.load(tmp_path / "y.pt", weights_only=True)


def test_import_path_model_checkpoint_reloads_in_a_fresh_process(tmp_path):
    from results import save_checkpoint

    (tmp_path / "own_models_for_test.py").write_text(textwrap.dedent(USER_MODULE))
    sys.path.insert(0, str(tmp_path))
    try:
        torch.manual_seed(0)
        model = build_model("own_models_for_test:net", width=2, input_shape=(1, 8)).eval()
        with torch.no_grad():  # non-trivial BatchNorm statistics: buffers must travel too
            model[1].running_mean.uniform_(-1, 1)
        save_checkpoint(tmp_path / "own.pt", model, epoch=2)
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("own_models_for_test", None)
    x = torch.randn(5, 1, 8)
    fresh = _in_a_fresh_process(tmp_path, tmp_path / "own.pt", x)
    assert fresh["arch"] == "own_models_for_test:net" and fresh["shape"] == [1, 8] and fresh["meta"] == {"epoch": 2}
    torch.testing.assert_close(fresh["y"], model(x), rtol=0, atol=0)


REGISTERING_MODULE = """
from torch import nn
from embeddings import register_architecture


@register_architecture("own_registered_net_for_test")
def registered(*, input_shape=(1, 8), num_classes=4):
    return nn.Sequential(nn.Flatten(), nn.Linear(input_shape[0] * input_shape[1], num_classes))
"""


def test_registered_model_checkpoint_reloads_in_a_process_that_never_registered_it(tmp_path):
    from embeddings import ARCHITECTURES
    from results import save_checkpoint

    (tmp_path / "own_registering_for_test.py").write_text(textwrap.dedent(REGISTERING_MODULE))
    sys.path.insert(0, str(tmp_path))
    try:
        __import__("own_registering_for_test")
        model = build_model("own_registered_net_for_test", num_classes=3)
        assert model.arch == "own_registering_for_test:registered"  # a path every process can import
        save_checkpoint(tmp_path / "reg.pt", model)
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("own_registering_for_test", None)
        ARCHITECTURES.pop("own_registered_net_for_test", None)
    x = torch.randn(4, 1, 8)
    fresh = _in_a_fresh_process(tmp_path, tmp_path / "reg.pt", x)
    torch.testing.assert_close(fresh["y"], model(x), rtol=0, atol=0)


TRAIN = ["--data", "fake", "--n-train", "32", "--n-test", "16", "--epochs", "1", "--batch-size", "16", "--quiet"]


def test_train_an_import_path_model_and_probe_its_checkpoint(tmp_path):
    """train --model package.module:factory, then interpolate its checkpoints with no --model (they rebuild themselves)."""
    (tmp_path / "own_train_models.py").write_text(textwrap.dedent(USER_MODULE))
    sys.path.insert(0, str(tmp_path))
    try:
        from runners.train import main as train_main

        out = tmp_path / "run"
        own = ["--model", "own_train_models:net", "--model-kwargs", '{"width": 2, "num_classes": 3}', "--input-shape", "1,8"]
        assert train_main([*own, *TRAIN, "--out", str(out), "--save-at", "0"]) == 0
        checkpoints = out / "checkpoints" / "cnn"
        assert interpolate_main(["--ckpt-a", str(checkpoints / "epoch_0.pt"), "--ckpt-b", str(checkpoints / "final.pt"),
                                 "--data", "fake", "--n-train", "32", "--n-test", "16", "--quiet",
                                 "--methods", "linear", "--points", "2", "--out", str(tmp_path / "p.h5")]) == 0
        # a plain state dict as --init: loaded into the --model, then trained on
        trained = build_model("own_train_models:net", width=2, num_classes=3)
        torch.save(trained.state_dict(), tmp_path / "plain.pt")
        assert train_main([*own, *TRAIN, "--init", str(tmp_path / "plain.pt"), "--save-at", "0", "--out", str(tmp_path / "tuned")]) == 0
        from results import load_checkpoint

        start, _ = load_checkpoint(tmp_path / "tuned" / "checkpoints" / "cnn" / "epoch_0.pt")
        assert start.arch == "own_train_models:net"
        for name, tensor in trained.state_dict().items():
            torch.testing.assert_close(start.state_dict()[name], tensor, rtol=0, atol=0)
        with pytest.raises(SystemExit, match=r"error: checkpoint .*plain.pt: weights do not fit|error: .*plain.pt.*size mismatch"):
            train_main([*own[:2], "--model-kwargs", '{"width": 3, "num_classes": 3}', *own[4:], *TRAIN, "--init", str(tmp_path / "plain.pt"),
                        "--out", str(tmp_path / "wrong")])
        with pytest.raises(SystemExit, match=r"--input-shape 1,9 does not match the inputs of digits, 1,8,8; drop the flag"):
            train_main([*own[:4], "--input-shape", "1,9", "--data", "digits", "--out", str(tmp_path / "bad")])
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("own_train_models", None)


def test_relax_embeds_an_import_path_model(tmp_path):
    """relax --model package.module:factory: the user's CNN trained, embedded into its eFCN and eLCN, and trained on."""
    from runners import relax

    (tmp_path / "own_relax_models.py").write_text(textwrap.dedent(USER_MODULE))
    sys.path.insert(0, str(tmp_path))
    try:
        assert relax.main(["--model", "own_relax_models:net", "--model-kwargs", '{"width": 2, "num_classes": 3}', "--input-shape", "1,8",
                           "--data", "fake", "--n-train", "32", "--n-test", "16", "--batch-size", "16", "--epochs", "1",
                           "--relax-epochs", "1", "--t-w", "1", "--tw1", "", "--space", "efcn", "--jobs", "1", "--quiet",
                           "--out", str(tmp_path / "relax")]) == 0
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("own_relax_models", None)
    with h5py.File(tmp_path / "relax" / "results.h5", "r") as store:
        runs = store["runs"]
        assert {"cnn", "efcn_tw1"} <= set(runs)
        # right after the switch the eFCN is the CNN embedded exactly: no off-local weight yet
        assert runs["efcn_tw1/history/delta"][0] == pytest.approx(0.0, abs=1e-6)


def test_reproduce_and_expandnets_take_model_flags(monkeypatch):
    import runners.reproduce as reproduce
    from runners.expandnets import build_parser as expandnets_parser

    assert expandnets_parser().parse_args(["--out", "x", "--model", "smallnet1d"]).arch == "smallnet1d"
    assert expandnets_parser().parse_args(["--out", "x", "--arch", "smallnet2d"]).arch == "smallnet2d"
    args = reproduce.build_parser().parse_args(["--out", "x", "--model", "own:net", "--model-kwargs", '{"width": 2}',
                                                "--input-shape", "1,8"])
    seen = []
    monkeypatch.setattr(reproduce.relax_cli, "main", seen.append)
    reproduce._relax(args, Path("x"), {"relax": []}, (0,))
    flags = seen[0]
    assert flags[flags.index("--model") + 1] == "own:net" and flags[flags.index("--input-shape") + 1] == "1,8"
    assert flags[flags.index("--model-kwargs") + 1] == '{"width": 2}'
