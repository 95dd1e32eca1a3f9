"""The training loop: histories, delta, snapshots, bit-exact resume, untouched global RNG."""

import math

import pytest
import torch

import embeddings
from landscape import evaluate
from results import load_checkpoint
from runners._engine import HISTORY_COLUMNS, TrainConfig, load_data, train


@pytest.fixture(scope="module")
def data():
    return load_data("fake", n_train=240, n_test=60, input_shape=(1, 12), num_classes=3)


def _cnn(seed=0):
    torch.manual_seed(seed)
    return embeddings.build_model("vanilla1d", input_shape=(1, 12), num_classes=3, channels=3)


CONFIG = TrainConfig(epochs=4, batch_size=32, lr=0.02)


def test_history_rows_and_learning(data):
    result = train(_cnn(), data, config=CONFIG, seed=0)
    assert [r.epoch for r in result.history] == [0, 1, 2, 3, 4]
    assert math.isnan(result.history[0].lr) and result.history[1].lr == 0.02
    assert all(math.isnan(r.delta) for r in result.history)
    assert result.final.train_loss < result.history[0].train_loss
    assert result.final.test_acc == evaluate(result.model, None, data.batches("test", 7)).accuracy
    assert tuple(result.final.row()) == HISTORY_COLUMNS


def test_delta_of_an_efcn_starts_at_zero_and_grows(data):
    efcn = embeddings.to_efcn(_cnn())
    result = train(efcn, data, config=TrainConfig(epochs=2, batch_size=32, lr=0.02), seed=0)
    assert result.history[0].delta == 0.0 and 0 < result.final.delta < 1


def test_sgd_and_schedules_run(data):
    config = TrainConfig(epochs=3, batch_size=64, optimizer="sgd", lr=0.1, schedule="cosine", weight_decay=1e-4)
    result = train(_cnn(), data, config=config, seed=1)
    assert [r.lr for r in result.history[1:]] == [config.lr_at(e) for e in range(3)]


def test_snapshots_and_global_rng_untouched(data, tmp_path):
    model = _cnn()
    torch.manual_seed(123)
    before = torch.get_rng_state()
    result = train(model, data, config=CONFIG, seed=0, snapshots={0: tmp_path / "e0.pt", 3: tmp_path / "e3.pt"},
                   snapshot_meta={"run": "x"})
    assert torch.equal(torch.get_rng_state(), before)
    start, meta0 = load_checkpoint(tmp_path / "e0.pt")
    _, meta3 = load_checkpoint(tmp_path / "e3.pt")
    assert meta0 == {"epoch": 0, "run": "x"} and meta3["epoch"] == 3
    assert evaluate(start, None, data.batches("test", 60)).accuracy == result.history[0].test_acc
    with pytest.raises(ValueError, match=r"snapshot epochs \[9\] lie outside 0..4"):
        train(_cnn(), data, config=CONFIG, seed=0, snapshots={9: tmp_path / "e9.pt"})


def _rows(history):
    return [{k: ("nan" if isinstance(v, float) and math.isnan(v) else v) for k, v in r.row().items()} for r in history]


class _Kill(Exception):
    pass


@pytest.mark.parametrize("space", ["cnn", "efcn"])
def test_resume_after_interruption_is_bit_exact(data, tmp_path, space):
    make = (lambda: embeddings.to_efcn(_cnn())) if space == "efcn" else _cnn
    config = TrainConfig(epochs=5, batch_size=32, lr=0.01, optimizer="adam")
    whole = train(make(), data, config=config, seed=3)

    def die_at_3(record):
        if record.epoch == 3:  # the epoch is computed but its state is not saved yet: it is lost
            raise _Kill

    state = tmp_path / "state.pt"
    with pytest.raises(_Kill):
        train(make(), data, config=config, seed=3, state_path=state, on_epoch=die_at_3)
    seen = []
    resumed = train(make(), data, config=config, seed=3, state_path=state, resume=True, on_epoch=seen.append)
    assert resumed.resumed_from == 2
    assert [r.epoch for r in seen] == [0, 1, 2, 3, 4, 5]  # restored records are replayed first
    assert _rows(resumed.history) == _rows(whole.history)
    for name, tensor in whole.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[name], tensor), name


def test_resume_refuses_another_configuration(data, tmp_path):
    state = tmp_path / "state.pt"
    train(_cnn(), data, config=TrainConfig(epochs=1, batch_size=32), seed=0, state_path=state)
    with pytest.raises(ValueError, match="was written with another configuration or seed"):
        train(_cnn(), data, config=TrainConfig(epochs=1, batch_size=16), seed=0, state_path=state, resume=True)
    state.write_bytes(b"garbage")
    with pytest.raises(ValueError, match="is unreadable"):
        train(_cnn(), data, config=TrainConfig(epochs=1, batch_size=32), seed=0, state_path=state, resume=True)


@pytest.mark.parametrize("kwargs,message", [
    ({"epochs": -1}, "epochs must be a non-negative integer, got -1"),
    ({"batch_size": 0}, "batch_size must be a positive integer, got 0"),
    ({"optimizer": "rmsprop"}, "optimizer must be 'adam' or 'sgd', got 'rmsprop'"),
    ({"schedule": "linear"}, "schedule must be 'constant', 'cosine' or 'step', got 'linear'"),
    ({"lr": 0.0}, "lr must be a finite positive number, got 0.0"),
    ({"momentum": float("nan")}, "momentum must be a finite non-negative number, got nan"),
])
def test_config_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**kwargs)
