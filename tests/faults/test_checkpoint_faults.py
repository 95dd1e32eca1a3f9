"""Checkpoints and training state files under faults (issue 16): bit rot, a full disk, crafted files.

Each test reproduces one failure of the fault campaign (a flipped bit resumed as a loss of 2.5e35, a
25-line traceback and a ``.partial`` file on a full disk, an 8.6 KB checkpoint asking for 5.4 GiB,
plain exceptions for malformed fields) and pins the one-line error that replaced it.
"""

from __future__ import annotations

import errno
import os
import re
import resource
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import torch

import embeddings
import results.durable
from results import CheckpointError, DurableWriteError, atomic_save, load_checkpoint, payload_sha256, save_checkpoint
from runners._engine import TrainConfig, load_data, train

SPACES = {"cnn": lambda m: m, "elcn": embeddings.to_elcn, "efcn": embeddings.to_efcn, "fcn": embeddings.fcn_of_same_size}


def _cnn(channels: int = 4) -> torch.nn.Module:
    torch.manual_seed(0)
    return embeddings.build_model("vanilla1d", channels=channels)


def _flip_a_bit(path: Path, tensor: torch.Tensor) -> None:
    """Flip one bit inside ``tensor``'s bytes where they are stored in ``path`` (as a disk error would)."""
    data = bytearray(path.read_bytes())
    needle = tensor.detach().contiguous().numpy().tobytes()
    at = data.find(needle)
    assert at >= 0 and data.find(needle, at + 1) < 0, "the tensor's bytes must occur exactly once"
    data[at + len(needle) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def _crafted(tmp_path: Path, source_space: str = "cnn", **changes) -> Path:
    """A small real checkpoint with some fields changed and its checksum recomputed (a crafted file)."""
    source = save_checkpoint(tmp_path / f"source_{source_space}.pt", SPACES[source_space](_cnn()))
    payload = torch.load(source, weights_only=True)
    for key, value in changes.items():
        if key == "channels":
            payload["arch_kwargs"]["channels"] = value
        else:
            payload[key] = value
    payload["sha256"] = payload_sha256(payload)
    torch.save(payload, tmp_path / "crafted.pt")
    return tmp_path / "crafted.pt"


def _one_line(err: pytest.ExceptionInfo) -> str:
    message = str(err.value)
    assert "\n" not in message
    return message


# --- bit rot -------------------------------------------------------------------------------------------


def test_a_flipped_bit_in_a_checkpoint_is_one_error_naming_the_file(tmp_path):
    model = _cnn()
    path = save_checkpoint(tmp_path / "m.pt", model, epoch=3)
    weight = model.state_dict()["features.2.weight"]
    _flip_a_bit(path, weight)
    # torch itself reads the damaged tensor without complaint: only the checksum can tell.
    assert not torch.equal(torch.load(path, weights_only=True)["state_dict"]["features.2.weight"], weight)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    assert f"checkpoint {path} fails its SHA-256 check" in _one_line(err)


def test_a_flipped_bit_in_a_state_file_is_refused_on_resume(tmp_path):
    data = load_data("fake", n_train=48, n_test=16, input_shape=(1, 12), num_classes=3)
    config = TrainConfig(epochs=1, batch_size=16, lr=0.02)
    state = tmp_path / "state.pt"
    model = embeddings.build_model("vanilla1d", input_shape=(1, 12), num_classes=3, channels=3)
    train(model, data, config=config, seed=0, state_path=state)
    saved = torch.load(state, weights_only=True)["model"]["features.0.weight"]
    _flip_a_bit(state, saved)
    fresh = embeddings.build_model("vanilla1d", input_shape=(1, 12), num_classes=3, channels=3)
    with pytest.raises(ValueError) as err:
        train(fresh, data, config=TrainConfig(epochs=2, batch_size=16, lr=0.02), seed=0, state_path=state, resume=True)
    assert f"training state {state} fails its SHA-256 check" in _one_line(err)


def test_a_state_file_from_before_checksums_is_resumed_with_a_warning(tmp_path):
    data = load_data("fake", n_train=48, n_test=16, input_shape=(1, 12), num_classes=3)
    state = tmp_path / "state.pt"
    model = embeddings.build_model("vanilla1d", input_shape=(1, 12), num_classes=3, channels=3)
    train(model, data, config=TrainConfig(epochs=1, batch_size=16, lr=0.02), seed=0, state_path=state)
    old = torch.load(state, weights_only=True)
    del old["sha256"]
    torch.save({**old, "format": "needle-train-state/1"}, state)
    fresh = embeddings.build_model("vanilla1d", input_shape=(1, 12), num_classes=3, channels=3)
    with pytest.warns(UserWarning, match=r"state.pt \(needle-train-state/1\) carries no checksum; resuming from it unverified"):
        resumed = train(fresh, data, config=TrainConfig(epochs=1, batch_size=16, lr=0.02), seed=0, state_path=state, resume=True)
    assert resumed.resumed_from == 1


# --- a full disk ---------------------------------------------------------------------------------------


def _disk_full_after(monkeypatch, good_writes: int) -> None:
    """Let ``good_writes`` files through, then fill the disk half-way through the next ones: their file
    descriptor is pointed at ``/dev/full``, so the kernel itself answers ENOSPC to the real write."""
    if not Path("/dev/full").exists():
        pytest.skip("needs /dev/full (Linux)")
    seen: list[str] = []
    write = results.durable._Sink.write

    def full(self, data):
        if self.name not in seen:
            seen.append(self.name)
            if len(seen) > good_writes:
                self.full_after = 1
        if getattr(self, "full_after", 0) and self.tell() >= self.full_after:
            device = os.open("/dev/full", os.O_WRONLY)
            os.dup2(device, self.fileno())
            os.close(device)
        return write(self, data)

    monkeypatch.setattr(results.durable._Sink, "write", full)


def test_enospc_while_saving_a_checkpoint_keeps_the_previous_file_and_no_temp_file(tmp_path, monkeypatch):
    save_checkpoint(tmp_path / "m.pt", _cnn(), epoch=1)
    _disk_full_after(monkeypatch, good_writes=0)
    with pytest.raises(DurableWriteError) as err:
        save_checkpoint(tmp_path / "m.pt", _cnn(), epoch=2)
    assert err.value.errno == errno.ENOSPC
    assert re.fullmatch(
        rf"no space left on device while writing {tmp_path / 'm.pt'}; [\d,]+ bytes free; the previous file is intact", _one_line(err))
    with pytest.raises(DurableWriteError, match="while writing .*new.pt; .* bytes free; nothing was written"):
        save_checkpoint(tmp_path / "new.pt", _cnn())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt"]
    assert load_checkpoint(tmp_path / "m.pt")[1] == {"epoch": 1}


def test_enospc_at_fsync_keeps_the_previous_file(tmp_path, monkeypatch):
    atomic_save({"x": torch.ones(3)}, tmp_path / "s.pt")

    def fsync(descriptor):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(results.durable.os, "fsync", fsync)
    with pytest.raises(DurableWriteError, match="the previous file is intact"):
        atomic_save({"x": torch.zeros(3)}, tmp_path / "s.pt")
    monkeypatch.undo()
    assert [p.name for p in tmp_path.iterdir()] == ["s.pt"]
    assert torch.equal(torch.load(tmp_path / "s.pt", weights_only=True)["x"], torch.ones(3))


def test_a_full_disk_during_training_leaves_a_resumable_state(tmp_path, monkeypatch):
    data = load_data("fake", n_train=48, n_test=16, input_shape=(1, 12), num_classes=3)
    config = TrainConfig(epochs=3, batch_size=16, lr=0.02)

    def model():
        torch.manual_seed(0)
        return embeddings.build_model("vanilla1d", input_shape=(1, 12), num_classes=3, channels=3)

    whole = train(model(), data, config=config, seed=0)
    state = tmp_path / "state.pt"
    _disk_full_after(monkeypatch, good_writes=1)  # epoch 1's state is written, epoch 2's hits the full disk
    with pytest.raises(DurableWriteError, match="the previous file is intact"):
        train(model(), data, config=config, seed=0, state_path=state)
    monkeypatch.undo()
    assert [p.name for p in tmp_path.iterdir()] == ["state.pt"]
    resumed = train(model(), data, config=config, seed=0, state_path=state, resume=True)
    assert resumed.resumed_from == 1
    assert [repr(r.row()) for r in resumed.history] == [repr(r.row()) for r in whole.history]  # repr: NaN == NaN


def test_a_real_full_tmpfs_keeps_the_previous_checkpoint(tmp_path):
    mount = tmp_path / "small"
    mount.mkdir()
    if not shutil.which("mount") or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)],
                                                   capture_output=True).returncode:
        pytest.skip("mounting a tmpfs needs root; the ENOSPC injection tests cover the same path")
    try:
        save_checkpoint(mount / "m.pt", _cnn(), epoch=1)
        with pytest.raises(DurableWriteError, match="no space left on device while writing .*bytes free; the previous file is intact"):
            save_checkpoint(mount / "m.pt", embeddings.to_efcn(_cnn(channels=32)), epoch=2)
        assert [p.name for p in mount.iterdir()] == ["m.pt"]
        assert load_checkpoint(mount / "m.pt")[1] == {"epoch": 1}
    finally:
        subprocess.run(["umount", str(mount)], check=True)


# --- budgets before allocation -------------------------------------------------------------------------


def _maxrss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


@pytest.mark.parametrize("space", ["cnn", "elcn", "efcn", "fcn"])
def test_a_tiny_checkpoint_asking_for_huge_models_fails_fast_without_allocating(tmp_path, space):
    load_checkpoint(save_checkpoint(tmp_path / "warm.pt", _cnn()))  # torch's one-time imports for meta tensors
    wide = _crafted(tmp_path, space, channels=12000)
    assert wide.stat().st_size < 200_000
    before, started = _maxrss_bytes(), time.perf_counter()
    # cnn 3.5 GB, elcn 55 GB, efcn 580 GB: over a 1 GiB budget in every space.
    with pytest.raises(CheckpointError, match=rf"describes a model \(vanilla1d \({space}\)\) of [\d,]+ bytes, more than the memory budget of 1,073,741,824"):
        load_checkpoint(wide, max_bytes=2**30)
    # Under any budget its 8 KB of weights cannot fit 12000 channels: refused from shapes alone.
    with pytest.raises(CheckpointError, match="weights do not fit vanilla1d"):
        load_checkpoint(wide, max_bytes=2**62)
    with pytest.raises(CheckpointError, match="too large to address"):
        load_checkpoint(_crafted(tmp_path, space, channels=10**9))
    assert time.perf_counter() - started < 1.0
    assert _maxrss_bytes() - before < 2**29


def test_a_checkpoint_larger_than_the_budget_is_not_read(tmp_path):
    path = save_checkpoint(tmp_path / "m.pt", _cnn())
    with pytest.raises(CheckpointError, match=r"is [\d,]+ bytes, more than the memory budget of 1,000 bytes; pass max_bytes="):
        load_checkpoint(path, max_bytes=1000)


# --- malformed fields ----------------------------------------------------------------------------------


@pytest.mark.parametrize("field,value", [
    ("arch", 5),
    ("arch", ""),
    ("arch_kwargs", [1, 2]),
    ("arch_kwargs", {1: 2}),
    ("input_shape", "1,40"),
    ("input_shape", (1, -40)),
    ("input_shape", (1.0, 40)),
    ("input_shape", (True, 40)),
    ("space", "cnnn"),
    ("space", None),
    ("state_dict", [torch.ones(1)]),
    ("state_dict", {"features.0.weight": 1.0}),
    ("meta", [1]),
    ("meta", {"epoch": {1.5: "x"}}),
])
def test_every_malformed_field_is_a_checkpoint_error_naming_it(tmp_path, field, value):
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(_crafted(tmp_path, **{field: value}))
    assert f"field {field!r}" in _one_line(err) or f"field {field}" in str(err.value)


def test_missing_fields_unknown_formats_and_bad_checksums(tmp_path):
    path = _crafted(tmp_path)
    payload = torch.load(path, weights_only=True)
    del payload["meta"]
    torch.save(payload, tmp_path / "lacks.pt")
    with pytest.raises(CheckpointError, match=r"lacks the fields \['meta'\]"):
        load_checkpoint(tmp_path / "lacks.pt")
    for fmt in ("needle-checkpoint/9", 7):
        torch.save({**torch.load(path, weights_only=True), "format": fmt}, tmp_path / "fmt.pt")
        with pytest.raises(CheckpointError, match="has format .*expected 'needle-checkpoint/2'"):
            load_checkpoint(tmp_path / "fmt.pt")
    torch.save({**torch.load(path, weights_only=True), "sha256": 5}, tmp_path / "sha.pt")
    with pytest.raises(CheckpointError, match="fails its SHA-256 check"):
        load_checkpoint(tmp_path / "sha.pt")
    with pytest.raises(CheckpointError, match=r"names an architecture that cannot be built: .*width"):
        load_checkpoint(_crafted(tmp_path, arch_kwargs={"width": 3}))


# --- foreign files -------------------------------------------------------------------------------------


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("content", ["text", "module", "reduce"])
def test_text_files_pickled_modules_and_code_are_refused_in_one_line(tmp_path, content):
    path, marker = tmp_path / "ckpt.pt", tmp_path / "ran"
    if content == "text":
        path.write_text("epoch 3\nloss 0.1\n")
        expected = "is corrupt or not a torch file"
    elif content == "module":
        torch.save(_cnn(), path)
        expected = r"is a pickled Python object \(it needs embeddings\..*VanillaCNN\).*save torch.save\(model.state_dict\(\), path\)"
    else:
        torch.save(_Payload(marker), path)
        expected = r"is a pickled Python object \(it needs posix.system\)"
    with pytest.raises(CheckpointError, match=expected) as err:
        load_checkpoint(path)
    _one_line(err)
    assert not marker.exists()
