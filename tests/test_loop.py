"""alexnet.loop: the textbook training loop, equal bit for bit to the Trainer's, and the pieces a long run adds."""

import time

import numpy as np
import pytest

from alexnet import build_model
from alexnet.dataspec import describe_data, make_transforms, open_splits
from alexnet.evaluate import evaluate
from alexnet.loop import Clock, MetricsLog, PendingResults, agree, train
from alexnet.settings import TrainConfig
from alexnet.trainer import Trainer
from minidl import SGD, SoftmaxCrossEntropy, StepLR
from minidl.data import DataLoader
from minidl.distributed import Group


def test_the_plain_loop_and_the_trainer_reach_the_same_weights_bit_for_bit(tmp_path):
    config = TrainConfig(train_subset=256, val_size=100, test_subset=50, batch_size=32, epochs=2, lr_step=1,
                         no_progress=True, out=str(tmp_path / "run")).resolved()
    spec = describe_data(config.data, config.data_dir, config.preset)
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    trainer = Trainer(config, spec, ["cpu", "cpu"])
    assert trainer.fit() == "done" and trainer.step == 2 * 8

    # the same run as a textbook writes it: the same data, model, rule and schedule, no Trainer
    splits = open_splits(spec, config.val_size, config.train_subset, config.seed)
    model = build_model(config.network(), num_classes=10, in_channels=1, devices=["cpu", "cpu"],
                        init=config.init, seed=config.seed)
    optim = SGD(model.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    loader = DataLoader(splits.train, config.batch_size, shuffle=True, seed=config.seed, drop_last=True,
                        indices=splits.train_indices)
    augment, eval_tf = make_transforms(spec, model.input_size)
    errors = train(model, SoftmaxCrossEntropy(), optim, StepLR(optim, config.lr_step), loader, augment,
                   lambda m: 1 - evaluate(m, splits.val, eval_tf, indices=splits.val_indices)["top1"],
                   config.epochs, seed=config.seed)

    ours, theirs = model.state_dict(), trainer.model.state_dict()
    assert set(ours) == set(theirs)
    for name in ours:
        assert np.array_equal(ours[name], theirs[name]), name
    for name, v in optim.state_dict()["velocity"].items():
        assert np.array_equal(v, trainer.optim.state_dict()["velocity"][name]), name
    assert optim.lr == trainer.optim.lr == pytest.approx(config.lr * 0.01)
    logged = [r for r in trainer.metrics.records() if r["type"] == "epoch"]
    assert [1 - r["val_top1"] for r in logged] == pytest.approx(errors)


def test_pending_results_come_back_together_as_numbers():
    pending = PendingResults()
    for step in (1, 2, 3):
        pending.add(step, np.float32(step / 2), np.int64(step), 4)
    assert len(pending) == 3
    results = pending.collect(_Home(), Group())
    assert results == [(1, 0.5, 1, 4), (2, 1.0, 2, 4), (3, 1.5, 3, 4)] and len(pending) == 0
    assert pending.collect(_Home(), Group()) == []


class _Home:                    # the device the results live on: here the CPU
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_the_clock_says_when_to_stop_and_when_to_save(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    clock = Clock(checkpoint_minutes=1.0, deadline=1100.0)
    assert not clock.checkpoint_due() and not clock.time_up()
    now[0] = 1061.0
    assert clock.checkpoint_due() and not clock.time_up()
    clock.saved()
    assert not clock.checkpoint_due()
    now[0] = 1100.0
    assert clock.time_up()
    assert not Clock(checkpoint_minutes=0).checkpoint_due() and not Clock().time_up()


def test_processes_agree_on_a_flag_any_of_them_raised():
    class Two(Group):
        size = 2

        def sum(self, values):           # the other process raised the second flag
            return np.asarray(values, dtype=np.float64) + np.array([0.0, 1.0, 0.0])

    assert agree(Group(), True, False, 0) == (True, False, False)
    assert agree(Two(), False, False, False) == (False, True, False)


def test_the_metrics_log_forgets_what_came_after_a_checkpoint(tmp_path):
    log = MetricsLog(str(tmp_path))
    log.start()
    for step in (1, 2, 3, 4):
        log.write({"type": "step", "step": step})
    log.write({"type": "epoch", "step": 2, "epoch": 1})
    with open(log.path, "a") as f:
        f.write('{"type": "step", "st')                 # a line cut short by a kill
    assert log.trim(2) == [{"type": "epoch", "step": 2, "epoch": 1}]
    assert [r["step"] for r in log.records()] == [1, 2, 2]
    assert MetricsLog(str(tmp_path), writer=False).trim(0) == []      # only process 0 touches the file
