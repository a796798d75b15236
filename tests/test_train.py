"""End-to-end tests of `python -m alexnet.train` on Fashion-MNIST (CPU, tiny runs).

A run long enough learns, a short one writes a complete run folder; --resume is bit-exact across
processes; checkpoints survive crashes and kills while being written and never
unpickle; a NaN loss stops the run keeping the last good checkpoint; Ctrl-C
saves a checkpoint that --resume continues from.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from alexnet import train
from alexnet.settings import TrainConfig
from alexnet.trainer import Trainer
from minidl import checkpoint

# 256 images / batch 32 = 8 batches per epoch; evaluation on 200 test images.
FAST = ["--train-subset", "256", "--val-size", "200", "--batch-size", "32", "--test-subset", "200", "--no-progress"]


def _env():
    return {**os.environ, "PYTHONUNBUFFERED": "1"}


def run_cli(args, cwd, timeout=300):
    """`python -m alexnet.train ARGS` in a fresh process."""
    return subprocess.run([sys.executable, "-m", "alexnet.train", *map(str, args)], cwd=cwd, env=_env(),
                          capture_output=True, text=True, timeout=timeout)


def read_metrics(run):
    lines = (Path(run) / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]          # every line must be valid JSON


def all_finite(tree):
    return all(np.isfinite(v).all() for v in tree.values())


# -- 1. a run learns; a short run writes a complete run folder ------------------------

def test_a_run_long_enough_learns(mini_run):
    """160 steps (conftest.MINI_RUN_ARGS): margins measured over 8 seeds and two BLAS kernel sets."""
    records = read_metrics(mini_run)
    steps = [r for r in records if r["type"] == "step"]
    first = np.mean([r["loss"] for r in steps[:2]])              # ~2.4-2.6 measured
    last = np.mean([r["loss"] for r in steps[-2:]])              # ~0.83-0.97 measured
    assert last < 0.6 * first, (first, last)
    final = [r for r in records if "test_top1" in r][-1]
    assert final["step"] == 160 and final["test_top1"] > 0.5, final   # 0.69-0.75 measured; chance 0.10


@pytest.mark.slow
def test_short_run_writes_a_complete_run_folder(tmp_path, capsys):
    run = tmp_path / "run"
    rc = train.main(["--train-subset", "512", "--val-size", "200", "--batch-size", "32", "--test-subset", "200",
                     "--max-steps", "48", "--log-every", "4", "--lr", "0.02", "--no-progress", "--out", str(run)])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "done: 48 steps" in out and "epoch 3/" in out

    config = json.loads((run / "config.json").read_text())
    assert config["preset"] == "mini" and config["args"]["batch_size"] == 32 and config["data"]["kind"] == "fashion-mnist"

    records = read_metrics(run)
    steps = [r for r in records if r["type"] == "step"]
    epochs = [r for r in records if r["type"] == "epoch"]
    assert [r["step"] for r in steps] == list(range(4, 49, 4))
    assert [r["epoch"] for r in epochs] == [1, 2, 3]            # 512 / 32 = 16 steps per epoch
    for r in epochs:
        assert 0 <= r["test_top1"] <= r["test_top5"] <= 1 and 0 <= r["val_top1"] <= r["val_top5"] <= 1
        assert np.isfinite(r["test_loss"]) and np.isfinite(r["val_loss"]) and np.isfinite(r["train_loss"])
    for r in steps:
        assert np.isfinite(r["loss"]) and 0 <= r["acc"] <= 1 and r["lr"] > 0

    last_ckpt = checkpoint.load(run / "checkpoints" / "last.npz")
    best_ckpt = checkpoint.load(run / "checkpoints" / "best.npz")
    assert last_ckpt["progress"]["step"] == 48 and last_ckpt["progress"]["epoch"] == 3
    assert last_ckpt["progress"]["best_top1"] == pytest.approx(max(r["val_top1"] for r in epochs))
    assert best_ckpt["progress"]["best_top1"] == last_ckpt["progress"]["best_top1"]
    assert all_finite(last_ckpt["model"]) and set(best_ckpt["model"]) == set(last_ckpt["model"])

    png = run / "curves.png"
    assert png.stat().st_size > 0 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(png) as im:
        im.load()
        assert im.format == "PNG" and im.size[0] > 100 and im.size[1] > 100
    assert not list(run.glob(".*tmp*")) and not list((run / "checkpoints").glob(".tmp-*"))


# -- 2. resume is bit for bit, in a new process -------------------------------------

def _assert_same_state(a, b):
    assert a["model"].keys() == b["model"].keys()
    for k in a["model"]:
        assert a["model"][k].dtype == b["model"][k].dtype and np.array_equal(a["model"][k], b["model"][k]), k
    va, vb = a["optim"]["velocity"], b["optim"]["velocity"]
    assert va.keys() == vb.keys() and len(va) == len(a["model"])
    for k in va:
        assert np.array_equal(va[k], vb[k]), f"velocity {k}"
    assert a["optim"]["lr"] == b["optim"]["lr"]
    assert a["sched"] == b["sched"] and a["rng"] == b["rng"] and a["run"] == b["run"]
    pa, pb = a["progress"], b["progress"]
    for key in ("epoch", "batch", "step"):
        assert pa[key] == pb[key], key
    for key in ("loss", "correct", "seen"):
        assert pa["epoch_stats"][key] == pb["epoch_stats"][key], key


@pytest.mark.slow
def test_resume_is_bit_exact_across_processes(tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    ra = run_cli([*FAST, "--max-steps", "12", "--out", a], tmp_path)
    assert ra.returncode == 0, ra.stderr
    rb1 = run_cli([*FAST, "--max-steps", "5", "--out", b], tmp_path)           # stops mid-epoch 1
    assert rb1.returncode == 0, rb1.stderr
    mid = checkpoint.load(b / "checkpoints" / "last.npz")["progress"]
    assert (mid["epoch"], mid["batch"], mid["step"]) == (0, 5, 5)
    # the new process is given no data flags: the saved settings are reused
    rb2 = run_cli(["--out", b, "--resume", "--max-steps", "12", "--no-progress"], tmp_path)
    assert rb2.returncode == 0, rb2.stderr
    assert "resuming" in rb2.stdout and "step 5" in rb2.stdout and "done: 12 steps" in rb2.stdout

    sa = checkpoint.load(a / "checkpoints" / "last.npz")
    sb = checkpoint.load(b / "checkpoints" / "last.npz")
    assert (sa["progress"]["epoch"], sa["progress"]["batch"], sa["progress"]["step"]) == (1, 4, 12)
    _assert_same_state(sa, sb)
    # b evaluated once more (at step 5), so its best can only be higher
    assert sb["progress"]["best_top1"] >= sa["progress"]["best_top1"]
    # the logged epoch-1 results are the same numbers
    ea = [r for r in read_metrics(a) if r["type"] == "epoch"]
    eb = [r for r in read_metrics(b) if r["type"] == "epoch"]
    assert len(ea) == len(eb) == 1
    for key in ("train_loss", "train_acc", "test_loss", "test_top1", "test_top5", "step"):
        assert ea[0][key] == eb[0][key], key

    # explicitly conflicting settings are refused: one line, exit 2, nothing changed
    before = (b / "checkpoints" / "last.npz").read_bytes()
    capsys.readouterr()
    assert train.main(["--out", str(b), "--resume", "--batch-size", "64", "--max-steps", "13",
                       "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("train: error: --resume continues") and len(err.strip().splitlines()) == 1
    assert "--batch-size 32 (given: 64)" in err and "Only --epochs, --lr, --lr-schedule, --lr-step, --max-steps can change" in err
    assert (b / "checkpoints" / "last.npz").read_bytes() == before


@pytest.mark.parametrize("every, lines", [(0, True), (None, False)])
def test_into_a_log_file_progress_is_a_line_now_and_then_not_a_carriage_return_per_batch(every, lines, tmp_path,
                                                                                        capsys, monkeypatch):
    import alexnet.trainer as trainer_module
    if every is not None:
        monkeypatch.setattr(trainer_module, "LOG_PROGRESS_SECONDS", every)     # a line after every batch
    capsys.readouterr()
    assert train.main(["--train-subset", "256", "--val-size", "20", "--batch-size", "32", "--epochs", "1",
                       "--test-subset", "20", "--log-every", "2", "--out", str(tmp_path / "r")]) == 0   # progress on
    out, err = capsys.readouterr()            # neither stream is a terminal here, as in `train > log 2>&1`
    assert "\r" not in out + err and "it/s" not in err and "batch/s" not in err           # no tqdm bar
    progress = [line for line in out.splitlines() if " batch " in line]
    if lines:   # every batch but the last (the epoch's own line follows it), with the last logged figures
        assert [line.split("  ")[1] for line in progress] == [f"batch {k}/8" for k in range(1, 8)]
        assert all(re.fullmatch(r"epoch 1/1  batch \d/8  loss \d\.\d{3}  acc \d+\.\d%  \d+ img/s", line)
                   for line in progress[1:]), progress
    else:       # the default: one every three minutes, so none in a run this short
        assert progress == []
    assert sum(line.startswith("epoch 1/1  train loss") for line in out.splitlines()) == 1


def test_resume_without_out_reuses_saved_settings(tmp_path):
    r = run_cli([*FAST, "--max-steps", "2"], tmp_path)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "runs" / "mini-fashion-mnist" / "checkpoints" / "last.npz").exists()
    r = run_cli(["--resume", "--max-steps", "3", "--no-progress"], tmp_path)
    assert r.returncode == 0, r.stderr
    assert "done: 3 steps" in r.stdout


def test_max_minutes_stops_training_then_evaluates_and_saves(tmp_path, capsys):
    # the limit counts from the command's start, so one step always overruns a limit of 60 microseconds
    run = tmp_path / "run"
    assert train.main([*FAST, "--max-minutes", "1e-6", "--out", str(run)]) == 0
    out = capsys.readouterr().out
    assert "done: 1 steps (--max-minutes 1e-06 reached)" in out
    records = read_metrics(run)
    assert [r["step"] for r in records if r["type"] == "eval"] == [1]      # evaluated where it stopped
    assert checkpoint.load(run / "checkpoints" / "last.npz", arrays=False)["progress"]["step"] == 1
    # the limit is this command's: --resume without it trains on to --max-steps
    assert train.main(["--out", str(run), "--resume", "--max-steps", "3", "--no-progress"]) == 0
    assert "done: 3 steps;" in capsys.readouterr().out


def test_resume_may_change_the_rate_schedule_and_length_with_a_notice(tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    assert train.main([*FAST, "--max-steps", "4", "--out", str(a)]) == 0
    shutil.copytree(a, b)
    capsys.readouterr()
    assert train.main(["--out", str(a), "--resume", "--max-steps", "6", "--no-progress"]) == 0
    assert train.main(["--out", str(b), "--resume", "--max-steps", "6", "--lr", "0.005", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "resume: --lr 0.005 from step 4 on (was 0.02)" in out
    assert "resume: --max-steps 6 from step 4 on (was 4)" in out
    sa, sb = (checkpoint.load(r / "checkpoints" / "last.npz") for r in (a, b))
    assert sa["optim"]["lr"] == 0.02 and sb["optim"]["lr"] == 0.005
    assert sb["sched"] == {"epoch": 0, "base_lr": 0.005}          # the step schedule counts from here
    assert not np.array_equal(sa["model"]["fc8.tower0.weight"], sb["model"]["fc8.tower0.weight"])
    logged = [r for r in read_metrics(b) if r["type"] == "resume"]
    assert logged == [{"type": "resume", "step": 4, "changed": {"lr": {"was": 0.02, "now": 0.005},
                                                                 "max_steps": {"was": 4, "now": 6}}}]
    saved = json.loads((b / "config.json").read_text())["args"]
    assert saved["lr"] == 0.005 and saved["max_steps"] == 6        # a later --resume keeps them
    # another schedule from here on: the step schedule's state does not go into the plateau one
    assert train.main(["--out", str(b), "--resume", "--max-steps", "8", "--lr-schedule", "plateau",
                       "--no-progress"]) == 0
    state = checkpoint.load(b / "checkpoints" / "last.npz")
    assert state["optim"]["lr"] == 0.005 and set(state["sched"]) == {"best", "bad_epochs", "reductions"}
    assert "resume: --lr-schedule plateau from step 6 on (was step)" in capsys.readouterr().out


def test_resume_help_says_what_may_change():
    text = " ".join(train.build_parser().format_help().split())
    assert "--resume" in text and "you may change --epochs, --lr, --lr-schedule, --lr-step, --max-steps" in text
    assert "a killed run loses at most the steps since the last save" in text


def test_resume_of_a_run_killed_before_its_first_checkpoint_starts_it_again(tmp_path, capsys):
    run = tmp_path / "run"
    assert train.main([*FAST, "--max-steps", "2", "--out", str(run)]) == 0
    shutil.rmtree(run / "checkpoints")                           # as if killed before the first save
    capsys.readouterr()
    assert train.main(["--out", str(run), "--resume", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "has no checkpoint yet" in out and "done: 2 steps" in out
    assert checkpoint.load(run / "checkpoints" / "last.npz")["progress"]["step"] == 2


# -- 3. checkpoints survive crashes and kills; loading never unpickles ---------------

def _small_state(value):
    return {"model": {"w": np.full((3, 4), value, np.float32)}, "progress": {"step": int(value)}}


def test_checkpoint_crash_mid_write_keeps_previous(tmp_path, monkeypatch):
    path = tmp_path / "last.npz"
    checkpoint.save(path, _small_state(1))
    before = path.read_bytes()
    calls = []

    def crashing_write_array(file, *args, **kwds):     # the disk fills while the first array is written
        calls.append(file)
        file.write(b"\x93NUMPY half an array")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np.lib.format, "write_array", crashing_write_array)
    with pytest.raises(checkpoint.CheckpointError, match=f"cannot save checkpoint {path}: the disk is full "
                       rf"\(No space left on device\); {path} still holds the previous checkpoint"):
        checkpoint.save(path, _small_state(2))
    assert calls, "checkpoint.save did not go through numpy.lib.format.write_array"
    monkeypatch.undo()
    assert path.read_bytes() == before
    state = checkpoint.load(path)
    assert np.array_equal(state["model"]["w"], np.full((3, 4), 1, np.float32)) and state["progress"]["step"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.npz"]      # no temporary file left


def _written(folder, pattern):
    """The non-empty files matching ``pattern`` (a file renamed away meanwhile is not one)."""
    found = []
    for p in folder.glob(pattern):
        try:
            if p.stat().st_size > 0:
                found.append(p)
        except FileNotFoundError:
            pass
    return found


_KILLED_WRITER = """
import sys, numpy as np
from minidl import checkpoint
big = np.ones(50_000_000, np.float32)           # 200 MB
print("writing", flush=True)
checkpoint.save(sys.argv[1], {"model": {"w": big}, "progress": {"step": 99}})
print("finished", flush=True)
"""


@pytest.mark.slow
def test_checkpoint_survives_sigkill_mid_write(tmp_path):
    path = tmp_path / "last.npz"
    checkpoint.save(path, _small_state(7))
    before = path.read_bytes()
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_WRITER, str(path)], cwd=tmp_path, env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    tmp = []
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            tmp = _written(tmp_path, ".tmp-*.npz")
            if tmp:
                break
            time.sleep(0.001)
        assert tmp, f"no temporary checkpoint appeared (rc={proc.poll()})"
        proc.send_signal(signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL, (out, err)
    assert "finished" not in out
    assert path.read_bytes() == before
    state = checkpoint.load(path)
    assert np.array_equal(state["model"]["w"], np.full((3, 4), 7, np.float32)) and state["progress"]["step"] == 7
    # the next save replaces the target atomically even with a stale temporary file around
    checkpoint.save(path, _small_state(8))
    assert checkpoint.load(path)["progress"]["step"] == 8


@pytest.mark.slow
def test_training_killed_while_saving_resumes_and_leaves_no_temporary_file(tmp_path):
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "alexnet.train", *FAST, "--checkpoint-every", "1",
                             "--max-steps", "10000", "--out", str(run)],
                            cwd=tmp_path, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    partial = []
    try:
        while time.monotonic() < deadline and proc.poll() is None and not partial:
            if (run / "checkpoints" / "last.npz").exists():        # kill a save that replaces one
                partial = _written(run / "checkpoints", ".tmp-*")
        proc.send_signal(signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        out, err = proc.communicate(timeout=60)
    assert partial, f"no checkpoint was being written (rc={proc.returncode}): {err}"
    assert proc.returncode == -signal.SIGKILL, (out, err)
    left = [p.name for p in (run / "checkpoints").glob(".tmp-*")]
    assert left                                              # the kill left a partial checkpoint behind
    good = checkpoint.load(run / "checkpoints" / "last.npz")["progress"]["step"]
    r = run_cli(["--out", run, "--resume", "--max-steps", good + 2, "--no-progress"], tmp_path)
    assert r.returncode == 0, r.stderr
    assert "removed 1 unfinished file(s)" in r.stdout and left[0] in r.stdout
    assert not list(run.glob(".tmp-*")) and not list((run / "checkpoints").glob(".tmp-*"))
    assert checkpoint.load(run / "checkpoints" / "last.npz")["progress"]["step"] == good + 2


def test_truncated_or_garbage_checkpoint_is_a_clear_error(tmp_path):
    good = tmp_path / "good.npz"
    checkpoint.save(good, {"model": {"w": np.arange(10_000, dtype=np.float32)}, "progress": {"step": 3}})
    data = good.read_bytes()
    cases = {
        "truncated.npz": (data[: len(data) // 2], "is unreadable or truncated"),
        "header_only.npz": (data[:30], "is unreadable or truncated"),
        "garbage.npz": (b"this is not a checkpoint at all\n" * 10, "is not an .npz file (it starts with b'this i')"),
        "empty.npz": (b"", "is not an .npz file (it starts with b'')"),
    }
    for name, (content, says) in cases.items():
        p = tmp_path / name
        p.write_bytes(content)
        with pytest.raises(checkpoint.CheckpointError) as info:
            checkpoint.load(p)
        msg = str(info.value).replace(str(p), "FILE")      # the folder's own name says 'truncated'
        assert msg.startswith("checkpoint FILE ") and says in msg, msg
        assert "\n" not in msg
    with pytest.raises(checkpoint.CheckpointError, match="does not exist"):
        checkpoint.load(tmp_path / "missing.npz")
    plain = tmp_path / "plain.npz"
    np.savez(plain, w=np.zeros(3))
    with pytest.raises(checkpoint.CheckpointError, match="not a minidl checkpoint"):
        checkpoint.load(plain)


class _Evil:
    """Unpickling this creates a file: proof that code ran."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_loading_never_unpickles(tmp_path):
    marker = tmp_path / "PWNED"
    evil = tmp_path / "evil.npz"
    meta = json.dumps({"a": {"array": "a"}})
    np.savez(evil, a=np.array([_Evil(str(marker))], dtype=object), **{"__meta__.json": np.array(meta)})
    assert not marker.exists()
    with pytest.raises((checkpoint.CheckpointError, ValueError)):
        checkpoint.load(evil)
    assert not marker.exists()
    with pytest.raises(checkpoint.CheckpointError):
        checkpoint.load(evil)
    # and saving refuses what would need pickle
    with pytest.raises(TypeError, match="pickle"):
        checkpoint.save(tmp_path / "x.npz", {"obj": object()})
    assert not (tmp_path / "x.npz").exists()


# -- 4. a NaN/Inf loss stops the run, keeping the last good checkpoint ---------------

def test_nonfinite_loss_stops_with_step_and_keeps_good_checkpoint(tmp_path):
    run = tmp_path / "run"
    r = run_cli([*FAST, "--lr", "1e6", "--checkpoint-every", "1", "--log-every", "1", "--max-steps", "30",
                 "--out", run], tmp_path)
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr   # no warnings
    m = re.search(r"train: error: the (loss|weights) became NaN or infinite at step (\d+)", r.stderr)
    assert m, r.stderr
    what, bad_step = m.group(1), int(m.group(2))
    assert 1 <= bad_step < 30 and "--lr" in r.stderr
    assert "done:" not in r.stdout
    last = run / "checkpoints" / "last.npz"
    if last.exists():
        state = checkpoint.load(last)
        good = state["progress"]["step"]
        assert good < bad_step and f"(step {good}), is kept" in r.stderr
        assert f"python -m alexnet.train --out {run} --resume --lr " in r.stderr
        assert all_finite(state["model"]) and all_finite(state["optim"]["velocity"])
    else:
        assert "no checkpoint was written yet" in r.stderr
    if (run / "checkpoints").exists():
        assert not list((run / "checkpoints").glob(".tmp-*"))
    # a non-finite loss is never logged; when the loss was finite but that step's update
    # broke the weights, the step's (finite) loss may be logged
    last_logged = bad_step - 1 if what == "loss" else bad_step
    for rec in read_metrics(run):
        assert rec["step"] <= last_logged and np.isfinite(rec["loss"])


# -- 5. Ctrl-C saves a checkpoint that --resume continues from -----------------------

@pytest.mark.slow
def test_ctrl_c_saves_and_resume_continues(tmp_path):
    run = tmp_path / "run"
    metrics = run / "metrics.jsonl"
    proc = subprocess.Popen([sys.executable, "-m", "alexnet.train", "--train-subset", "2048", "--val-size", "100",
                             "--batch-size", "32", "--test-subset", "200", "--log-every", "1", "--max-steps", "10000", "--no-progress",
                             "--out", str(run)],
                            cwd=tmp_path, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            if metrics.exists() and metrics.read_text().count('"type": "step"') >= 2:
                break
            time.sleep(0.05)
        assert proc.poll() is None, proc.communicate()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, (out, err)
    assert "Traceback" not in err
    assert "--resume" in out and f"--out {run}" in out and "checkpoint saved" in out
    state = checkpoint.load(run / "checkpoints" / "last.npz")
    step = state["progress"]["step"]
    assert step >= 2 and f"interrupted at step {step}" in out
    assert state["progress"]["batch"] == step and all_finite(state["model"])

    r = run_cli(["--out", run, "--resume", "--max-steps", step + 2, "--no-progress"], tmp_path)
    assert r.returncode == 0, r.stderr
    assert f"resuming {run} at epoch 1, step {step}" in r.stdout and f"done: {step + 2} steps" in r.stdout
    after = checkpoint.load(run / "checkpoints" / "last.npz")["progress"]
    assert after["step"] == step + 2 and after["batch"] == step + 2
    logged = [rec["step"] for rec in read_metrics(run) if rec["type"] == "step"]
    assert logged == list(range(1, step + 3))          # no step logged twice, none missing


def test_preset_defaults_fill_only_what_was_not_given():
    c = TrainConfig().resolved()
    assert (c.epochs, c.batch_size, c.lr, c.lr_schedule, c.lr_step) == (8, 64, 0.02, "step", 6)
    c = TrainConfig(preset="paper", lr=0.05).resolved()
    assert (c.epochs, c.batch_size, c.lr, c.lr_schedule, c.lr_step) == (90, 128, 0.05, "plateau", None)
    assert c.resolved() == c                                   # filled once: resolving again changes nothing
    assert TrainConfig(preset="paper", lr_schedule="step", epochs=10).resolved().lr_step == 4   # a third


def test_out_of_gpu_memory_is_one_line_with_a_smaller_batch(tmp_path, monkeypatch, capsys):
    # CuPy's error is recognised by name and module, so CuPy need not be installed to test it
    OutOfMemoryError = type("OutOfMemoryError", (MemoryError,), {"__module__": "cupy.cuda.memory"})

    def fit(self):
        raise OutOfMemoryError("Out of memory allocating 1,048,576 bytes (allocated so far: 79 GB)")

    monkeypatch.setattr(Trainer, "fit", fit)
    rc = train.main(FAST + ["--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "out of GPU memory" in err and "batch size 32" in err and "--batch-size 16" in err
    # any other error still surfaces as itself
    monkeypatch.setattr(Trainer, "fit", lambda self: (_ for _ in ()).throw(KeyError("bug")))
    with pytest.raises(KeyError):
        train.main(FAST + ["--out", str(tmp_path / "run2")])


def test_a_checkpoints_table_of_contents_reads_without_its_arrays(tmp_path):
    path = tmp_path / "c.npz"
    checkpoint.save(path, {"model": {"w": np.ones((2, 2), np.float32)}, "run": {"preset": "mini", "subset": None},
                           "progress": {"step": 7}})
    assert checkpoint.load(path, arrays=False) == {"model": {}, "run": {"preset": "mini", "subset": None},
                                                   "progress": {"step": 7}}
    assert checkpoint.is_checkpoint(path)
    np.savez(tmp_path / "plain.npz", w=np.zeros(3))
    assert not checkpoint.is_checkpoint(tmp_path / "plain.npz") and not checkpoint.is_checkpoint(tmp_path / "no")


# -- 6. the test set decides nothing ----------------------------------------------------------

def test_the_plateau_schedule_and_best_npz_follow_the_validation_split(tmp_path, monkeypatch):
    """Scripted evaluations where the validation and test splits disagree: every decision follows validation."""
    from minidl import SGD, Parameter, ReduceLROnPlateau

    val = [0.50, 0.60, 0.60, 0.60, 0.55, 0.55]
    test = [0.50, 0.40, 0.70, 0.80, 0.90, 0.95]      # would have kept improving: no reduction, best at the end
    evals = iter(zip(val, test))

    def scripted(self, final=False):
        v, t = next(evals)
        return {"val": {"loss": 1 - v, "top1": v, "top5": 1.0}, "test": {"loss": 1 - t, "top1": t, "top5": 1.0}}

    monkeypatch.setattr(Trainer, "run_eval", scripted)
    run = tmp_path / "run"
    config = TrainConfig(train_subset=64, val_size=20, test_subset=20, batch_size=32, epochs=6, lr=0.01,
                         lr_schedule="plateau", no_progress=True, out=str(run))
    assert train.run(config) == 0
    epochs = [r for r in read_metrics(run) if r["type"] == "epoch"]
    assert [r["val_top1"] for r in epochs] == val and [r["test_top1"] for r in epochs] == test

    # the rates the plateau rule gives on the validation errors, epoch by epoch
    opt = SGD([Parameter(np.zeros(1))], lr=0.01)
    rule = ReduceLROnPlateau(opt, factor=0.1, patience=1, max_reductions=3)
    expected = [0.01] + [rule.step(1 - v) for v in val[:-1]]
    assert [r["lr"] for r in epochs] == pytest.approx(expected)
    assert expected[-1] < 0.01                       # the validation error plateaued: the rate was divided
    best = checkpoint.load(run / "checkpoints" / "best.npz", arrays=False)["progress"]
    assert best["epoch"] == 2 and best["best_top1"] == 0.60      # the best validation epoch, not the best test one


def test_the_validation_split_is_held_out_class_balanced_and_the_same_for_every_seed(tmp_path):
    from alexnet.dataspec import describe_data, open_splits

    spec = describe_data("fashion-mnist", None, "mini")
    a, b = (open_splits(spec, None, 2000, seed) for seed in (0, 1))
    assert np.array_equal(a.val_indices, b.val_indices) and len(a.val_indices) == 5000
    assert np.bincount(np.asarray(a.train.labels)[a.val_indices]).tolist() == [500] * 10
    for s in (a, b):                                      # training subsets come from the rest, by seed
        assert len(s.train_indices) == 2000 and not set(s.train_indices) & set(s.val_indices)
    assert not np.array_equal(a.train_indices, b.train_indices)
    none = open_splits(spec, 0, 2000, 0)                  # runs from before: the subset they trained on
    from minidl.data import subset_indices
    assert none.val is None and np.array_equal(none.train_indices, subset_indices(none.train.labels, 2000, 0))


def test_a_folder_with_val_and_test_validates_on_its_own_val(tmp_path):
    from alexnet.dataspec import describe_data, open_splits

    for split, n in (("train", 6), ("val", 2), ("test", 3)):
        for c in ("a", "b"):
            (tmp_path / "ds" / split / c).mkdir(parents=True)
            for i in range(n):
                img = np.random.default_rng([i, ord(c), len(split)]).integers(0, 256, (32, 32, 3), dtype=np.uint8)
                Image.fromarray(img).save(tmp_path / "ds" / split / c / f"{i}.png")
    spec = describe_data(str(tmp_path / "ds"), None, "mini")
    s = open_splits(spec)
    assert (len(s.train), len(s.val), len(s.test)) == (12, 4, 6)
    assert s.val_indices is None and s.train_indices is None          # nothing held out of train/
