"""Checkpoints rebuild their model with no other input, in every space; bad files fail in one line."""

import pytest
import torch

import embeddings
from results import CHECKPOINT_FORMAT, CheckpointError, load_checkpoint, payload_sha256, save_checkpoint


def _model(space: str, arch: str = "vanilla1d", **kwargs) -> torch.nn.Module:
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    cnn = embeddings.build_model(arch, **kwargs)
    if space == "elcn":
        return embeddings.to_elcn(cnn)
    if space == "efcn":
        return embeddings.to_efcn(cnn)
    if space == "fcn":
        return embeddings.fcn_of_same_size(cnn, generator=gen)
    return cnn


@pytest.mark.parametrize("space", ["cnn", "elcn", "efcn", "fcn"])
@pytest.mark.parametrize("arch,kwargs,shape", [
    ("vanilla1d", {"channels": 4}, (1, 40)),
    ("vanilla2d", {"channels": 3, "input_shape": (1, 8, 8), "kernel_sizes": (3, 3), "strides": 1, "paddings": 1, "pool": False}, (1, 8, 8)),
])
def test_round_trip_every_space(tmp_path, space, arch, kwargs, shape):
    model = _model(space, arch, **kwargs)
    with torch.no_grad():  # perturb so that off-local entries are non-zero in the eFCN
        for p in model.parameters():
            p.add_(0.01 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    path = save_checkpoint(tmp_path / "m.pt", model, epoch=2, t_w=1, tags=["a", 1.5])
    raw = torch.load(path, weights_only=True)
    assert set(raw) == {"format", "arch", "arch_kwargs", "space", "input_shape", "state_dict", "meta", "sha256"}
    assert raw["format"] == CHECKPOINT_FORMAT and raw["space"] == space and raw["input_shape"] == shape
    again, meta = load_checkpoint(path)
    assert meta == {"epoch": 2, "t_w": 1, "tags": ["a", 1.5]}
    assert (again.arch, again.space, again.input_shape) == (arch, space, shape)
    x = torch.randn(3, *shape, generator=torch.Generator().manual_seed(1))
    model.eval()
    torch.testing.assert_close(again(x), model(x), rtol=0, atol=1e-6)
    for name, tensor in model.state_dict().items():
        assert torch.equal(again.state_dict()[name], tensor)
    assert not list(tmp_path.glob("*.partial"))


def test_missing_corrupt_foreign_and_mismatched_files(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "none.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="is corrupt or not a torch file"):
        load_checkpoint(tmp_path / "junk.pt")
    torch.save({"weights": [1, 2]}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match=r"has format None, expected 'needle-checkpoint/2' or a state dict"):
        load_checkpoint(tmp_path / "foreign.pt")
    path = save_checkpoint(tmp_path / "m.pt", _model("cnn", channels=4))
    payload = torch.load(path, weights_only=True)
    payload["arch_kwargs"]["channels"] = 5
    payload["sha256"] = payload_sha256(payload)  # a consistent file whose weights do not fit
    torch.save(payload, tmp_path / "mismatch.pt")
    with pytest.raises(CheckpointError, match=r"weights do not fit vanilla1d \(cnn\)"):
        load_checkpoint(tmp_path / "mismatch.pt")
    payload["arch"] = "nope"
    payload["sha256"] = payload_sha256(payload)
    torch.save(payload, tmp_path / "arch.pt")
    with pytest.raises(CheckpointError, match="names an architecture that cannot be built: unknown architecture 'nope'"):
        load_checkpoint(tmp_path / "arch.pt")
    data = path.read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="is corrupt"):
        load_checkpoint(tmp_path / "cut.pt")


def test_save_refuses_unrebuildable_models_and_objects_in_meta(tmp_path):
    with pytest.raises(ValueError, match=r"model has no \.arch, \.arch_kwargs, \.input_shape, \.space, .*embeddings\.build_model\(\"package\.module:factory\""):
        save_checkpoint(tmp_path / "m.pt", torch.nn.Linear(2, 2))
    with pytest.raises(TypeError, match=r"meta\['when'\] must hold only"):
        save_checkpoint(tmp_path / "m.pt", _model("cnn", channels=2), when=object())
    assert not (tmp_path / "m.pt").exists()


def _resnet(seed: int, num_classes: int = 10) -> torch.nn.Module:
    torch.manual_seed(seed)
    return embeddings.build_model("torchvision.models:resnet18", num_classes=num_classes, input_shape=(3, 16, 16)).eval()


def test_plain_state_dicts_load_into_the_model_given_and_ask_for_it_otherwise(tmp_path):
    trained = _resnet(seed=1)
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    state = trained.state_dict()
    layouts = {
        "plain.pth": state,
        "nested.pt": {"state_dict": state, "epoch": 7},  # a training script's usual layout
        "parallel.pt": {f"module.{name}": tensor for name, tensor in state.items()},  # saved from DataParallel
    }
    for name, payload in layouts.items():
        torch.save(payload, tmp_path / name)
        with pytest.raises(CheckpointError, match=rf"{name} is a plain state dict \(\d+ tensors\) .*pass --model package.module:factory \(and --input-shape"):
            load_checkpoint(tmp_path / name)
        loaded, meta = load_checkpoint(tmp_path / name, model=_resnet(seed=2))
        assert meta == {} and not loaded.training
        torch.testing.assert_close(loaded(x), trained(x), rtol=0, atol=0)
    with pytest.raises(CheckpointError, match=r"weights do not fit the model given \(ResNet\): shape mismatch 2 \(fc.weight: file \(10, 512\) vs model \(1000, 512\)"):
        load_checkpoint(tmp_path / "plain.pth", model=_resnet(seed=2, num_classes=1000))


def test_models_built_from_an_import_path_round_trip_with_no_flag(tmp_path):
    model = _resnet(seed=3)
    path = save_checkpoint(tmp_path / "resnet.pt", model, epoch=1)
    raw = torch.load(path, weights_only=True)
    assert (raw["arch"], raw["arch_kwargs"], raw["input_shape"]) == ("torchvision.models:resnet18", {"num_classes": 10, "input_shape": (3, 16, 16)}, (3, 16, 16))
    again, meta = load_checkpoint(path)
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    assert meta == {"epoch": 1} and again.arch == "torchvision.models:resnet18"
    torch.testing.assert_close(again(x), model(x), rtol=0, atol=0)


def test_format_1_files_without_checksum_load_with_a_warning(tmp_path):
    model = _model("cnn", channels=3)
    payload = torch.load(save_checkpoint(tmp_path / "m.pt", model, epoch=4), weights_only=True)
    del payload["sha256"]
    torch.save({**payload, "format": "needle-checkpoint/1"}, tmp_path / "old.pt")
    with pytest.warns(UserWarning, match=r"old.pt \(needle-checkpoint/1\) carries no checksum and is loaded unverified"):
        again, meta = load_checkpoint(tmp_path / "old.pt")
    assert meta == {"epoch": 4} and all(torch.equal(again.state_dict()[k], v) for k, v in model.state_dict().items())


def test_save_names_the_missing_input_shape(tmp_path):
    model = embeddings.build_model("torchvision.models:resnet18", num_classes=3)
    with pytest.raises(ValueError, match=r"model.input_shape is unknown.*build_model\('torchvision.models:resnet18', input_shape=\(C, H, W\)"):
        save_checkpoint(tmp_path / "m.pt", model)
    assert not list(tmp_path.iterdir())
