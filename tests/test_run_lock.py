"""One writer per run folder: a second training on the same --out is refused in one line that names the
process holding it, and a lock left by a killed run is no obstacle."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from alexnet import train
from alexnet.cli import UserError
from alexnet.runs import RunFolderLock
from alexnet.settings import TrainConfig

FAST = ["--train-subset", "256", "--val-size", "200", "--batch-size", "32", "--test-subset", "200", "--no-progress"]


def _train(*args, cwd):
    return subprocess.run([sys.executable, "-m", "alexnet.train", *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def _holder(run, proc, deadline):
    """Wait until ``proc`` has written its lock file (it then holds the lock); return the file's line."""
    lock = Path(run) / RunFolderLock.NAME
    while time.monotonic() < deadline and proc.poll() is None:
        if lock.exists() and f"process {proc.pid} " in lock.read_text():
            return lock.read_text().strip()
        time.sleep(0.05)
    raise AssertionError(f"the first training did not take the lock (rc={proc.poll()})")


@pytest.mark.slow
def test_a_second_training_on_the_same_folder_is_refused_and_the_first_goes_on(tmp_path):
    run = tmp_path / "run"
    first = subprocess.Popen([sys.executable, "-m", "alexnet.train", *FAST, "--max-steps", "100000", "--out", str(run)],
                             cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        holder = _holder(run, first, time.monotonic() + 240)
        for extra in ([], ["--resume"], ["--lr", "0.5"]):
            second = _train(*FAST, "--max-steps", "2", "--out", run, *extra, cwd=tmp_path)
            assert second.returncode == 2, second.stderr
            line = second.stderr.strip()
            assert len(line.splitlines()) == 1 and "Traceback" not in line
            assert f"is in use by process {first.pid} on" in line and "one training run writes a run folder at a time" in line
        assert first.poll() is None                     # the first run is untouched and still training
        assert holder == (run / RunFolderLock.NAME).read_text().strip()
    finally:
        first.send_signal(signal.SIGKILL)
        first.communicate(timeout=60)
    # the killed run's lock file is still there, and is no obstacle: the run resumes (or starts, if it had no save)
    assert (run / RunFolderLock.NAME).exists()
    r = _train("--out", run, "--resume", "--max-steps", "3", "--no-progress", cwd=tmp_path)
    assert r.returncode == 0, r.stderr


def test_a_folder_locked_by_a_live_process_is_refused_before_anything_is_read_or_written(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    held = RunFolderLock(str(run))                      # this process plays the running trainer
    try:
        gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True, check=True).stdout.strip()
        stale = run / f".tmp-{gone}-config.json"          # a dead writer's file: a run that starts removes it
        stale.write_bytes(b"partial")
        config = TrainConfig(out=str(run), train_subset=256, val_size=200, test_subset=200, batch_size=32,
                             no_progress=True, max_steps=1)
        with pytest.raises(UserError, match=f"is in use by process {os.getpid()} on"):
            train.run(config)
        assert stale.exists()                           # a live writer's files are not cleaned up
        assert not (run / "config.json").exists()
    finally:
        held.release()
    assert train.run(config) == 0                       # released: the folder is free again
    assert not stale.exists()


def test_the_lock_is_released_when_a_run_ends_in_a_user_error(tmp_path):
    run = tmp_path / "run"
    config = TrainConfig(out=str(run), train_subset=256, val_size=200, test_subset=200, batch_size=32,
                         no_progress=True, max_steps=1)
    assert train.run(config) == 0
    with pytest.raises(UserError, match="already holds a run"):
        train.run(config)
    lock = RunFolderLock(str(run))                       # nobody holds it any more
    lock.release()
