"""``runners.interpolate --align``: both barriers stored, the aligned endpoint unchanged, the README table written from
the file; and ``landscape.align`` on networks trained by the project's loop (tests/landscape may not import runners)."""

from __future__ import annotations

import h5py
import pytest
import torch

from embeddings import build_model
from landscape import align, interpolate
from results import save_checkpoint
from runners._engine import TrainConfig, load_data, train
from runners.figures import main as figures_main
from runners.interpolate import main

FAKE = ["--data", "fake", "--n-train", "64", "--n-test", "32", "--batch-size", "32", "--quiet", "--points", "5"]


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ckpt")
    paths = []
    for seed in (0, 1):  # two independent initialisations: their units are in unrelated orders
        torch.manual_seed(seed)
        paths.append(str(save_checkpoint(folder / f"cnn_s{seed}.pt", build_model("vanilla1d", channels=6))))
    return paths


def _run(pair, out, *extra: str) -> int:
    return main(["--ckpt-a", pair[0], "--ckpt-b", pair[1], "--out", str(out), *FAKE, *extra])


def test_align_weights_stores_both_barriers(pair, tmp_path, capsys):
    out = tmp_path / "paths.h5"
    assert _run(pair, out, "--align", "weights", "--methods", "output") == 0
    assert "unaligned" in capsys.readouterr().out
    with h5py.File(out, "r") as store:
        group = store["interpolation/cnn_s0__cnn_s1"]
        assert group.attrs["align"] == "weights"
        assert set(group) == {"linear", "output", "unaligned"}  # the linear path is added to compare
        aligned, unaligned = group["linear"], group["unaligned/linear"]
        assert group.attrs["barrier_aligned"] == aligned.attrs["barrier"]
        assert group.attrs["barrier_unaligned"] == unaligned.attrs["barrier"]
        assert group.attrs["align_similarity_after"] > group.attrs["align_similarity_before"]
        # B keeps its function, so both paths end at the same loss, but they differ in between.
        assert aligned["train_loss"][-1] == pytest.approx(unaligned["train_loss"][-1], abs=1e-6)
        assert aligned["train_loss"][0] == pytest.approx(unaligned["train_loss"][0], abs=1e-6)
        assert abs(aligned["train_loss"][2] - unaligned["train_loss"][2]) > 1e-4
    readme = tmp_path / "README.md"
    readme.write_text("# title\n\n<!-- alignment-table -->\nold\n<!-- /alignment-table -->\n\nafter\n")
    assert figures_main(["--results", str(out), "--alignment-md", str(readme)]) == 0
    text = readme.read_text()
    assert text.startswith("# title\n\n<!-- alignment-table -->\n| pair") and text.endswith("<!-- /alignment-table -->\n\nafter\n")
    with h5py.File(out, "r") as store:
        group = store["interpolation/cnn_s0__cnn_s1"]
        row = next(line for line in text.splitlines() if line.startswith("| cnn_s0__cnn_s1"))
        assert f"| {group.attrs['barrier_unaligned']:.3f} | {group.attrs['barrier_aligned']:.3f} |" in row
    assert "old" not in text


def test_align_activations_and_default_none(pair, tmp_path):
    out = tmp_path / "paths.h5"
    assert _run(pair, out, "--align", "activations", "--methods", "linear", "--name", "act") == 0
    assert _run(pair, out, "--methods", "linear", "--name", "plain") == 0
    with h5py.File(out, "r") as store:
        assert store["interpolation/act"].attrs["align"] == "activations"
        assert "barrier_unaligned" in store["interpolation/act"].attrs
        plain = store["interpolation/plain"]
        assert plain.attrs["align"] == "none" and "unaligned" not in plain and "barrier_unaligned" not in plain.attrs
    with pytest.raises(SystemExit, match="no interpolation computed with --align"):
        with h5py.File(tmp_path / "none.h5", "w") as store:
            store.create_group("interpolation/plain").attrs["align"] = "none"
        figures_main(["--results", str(tmp_path / "none.h5"), "--alignment-md", str(tmp_path / "t.md")])


@pytest.mark.slow
def test_torchvision_resnet18_state_dicts_are_aligned_from_the_command_line(tmp_path):
    torchvision = pytest.importorskip("torchvision")
    paths = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        paths.append(str(tmp_path / f"resnet_s{seed}.pt"))
        torch.save(torchvision.models.resnet18(num_classes=10).state_dict(), paths[-1])
    out = tmp_path / "paths.h5"
    assert main(["--ckpt-a", paths[0], "--ckpt-b", paths[1], "--model", "torchvision.models:resnet18", "--model-kwargs",
                 '{"num_classes": 10}', "--input-shape", "3,16,16", "--data", "fake", "--n-train", "32", "--n-test", "16",
                 "--batch-size", "16", "--points", "3", "--methods", "linear", "--align", "weights", "--quiet", "--out", str(out)]) == 0
    with h5py.File(out, "r") as store:
        group = store["interpolation/resnet_s0__resnet_s1"]
        assert group.attrs["align"] == "weights" and group.attrs["align_converged"]
        assert group.attrs["align_similarity_after"] > group.attrs["align_similarity_before"]
        assert group["linear"]["train_loss"][-1] == pytest.approx(group["unaligned/linear"]["train_loss"][-1], abs=1e-5)


@pytest.mark.parametrize("arch, kwargs, epochs", [("vanilla1d", {"channels": 16}, 6), ("mlp", {"hidden": [64, 64]}, 10)])
def test_alignment_lowers_the_linear_barrier_of_independently_trained_networks(arch, kwargs, epochs):
    data = load_data("mnist1d", n_train=800, n_test=100)
    models = []
    for seed in (0, 1):
        torch.manual_seed(seed)  # different initialisations, different data orders
        model = build_model(arch, **kwargs)
        train(model, data, config=TrainConfig(epochs=epochs, batch_size=50, lr=3e-3), seed=seed)
        models.append(model)
    batches = data.batches("train", 400)
    alphas = [0.0, 0.25, 0.5, 0.75, 1.0]
    unaligned = interpolate(models[0], models[1], None, batches, alphas=alphas).metrics.barrier
    result = align(models[0], models[1])
    aligned = interpolate(models[0], result.model, None, batches, alphas=alphas).metrics.barrier
    assert result.converged and result.similarity_after > result.similarity_before
    assert aligned < 0.75 * unaligned, (aligned, unaligned)
