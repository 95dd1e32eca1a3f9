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
