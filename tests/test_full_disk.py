"""A disk that fills up: a checkpoint write and prepare's packing on a small tmpfs end in one line, and
what was saved before is intact. Needs permission to mount a tmpfs (root, as in CI); skipped otherwise."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from PIL import Image

from minidl import checkpoint

FAST = ["--train-subset", "256", "--val-size", "200", "--batch-size", "32", "--test-subset", "200", "--no-progress"]


@pytest.fixture
def small_disk(tmp_path):
    """A tmpfs of a given size at tmp_path/disk-N."""
    mounted = []

    def mount(size):
        where = tmp_path / f"disk-{len(mounted)}"
        where.mkdir()
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                           capture_output=True, text=True)
        if r.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here ({r.stderr.strip() or r.returncode}): needs root")
        mounted.append(where)
        return where

    yield mount
    for where in mounted:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def _one_line(stderr):
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


def test_a_full_disk_during_a_checkpoint_write_is_one_line_and_the_last_checkpoint_survives(small_disk, tmp_path):
    disk = small_disk("20m")        # one mini checkpoint (12 MB) fits; a second beside it does not
    run = disk / "run"
    r = subprocess.run([sys.executable, "-m", "alexnet.train", *FAST, "--checkpoint-every", "1", "--max-steps", "6",
                        "--out", str(run)], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert r.returncode == 2, r.stderr
    last = run / "checkpoints" / "last.npz"
    line = _one_line(r.stderr)
    assert f"cannot save checkpoint {last}: the disk is full" in line
    assert f"{last} still holds the previous checkpoint" in line and "--resume" in line
    assert ".tmp-" not in line                               # the user's file is named, not the temporary one
    assert checkpoint.load(last)["progress"]["step"] == 1   # the save before the full disk, whole
    assert not list(run.rglob(".tmp-*"))


def _images(root, n, side):
    for c in "ab":
        (root / "train" / c).mkdir(parents=True)
        for i in range(n):
            img = np.random.default_rng(i + 10 * ord(c)).integers(0, 256, (side, side, 3), dtype=np.uint8)
            Image.fromarray(img).save(root / "train" / c / f"{i}.png")


def test_a_disk_that_fills_while_prepare_packs_is_one_line_not_a_signal(small_disk, tmp_path):
    _images(tmp_path / "ds", 20, 64)
    disk = small_disk("256k")       # the arrays need 40 x 3 x 64 x 64 = 480 kB
    out = disk / "prepared"
    out.mkdir()
    (out / "keep.txt").write_text("the user's file")
    # the disk is checked before packing; it fills up after the check (another writer), which this
    # process plays by reporting free space that is not there
    script = textwrap.dedent(f"""
        import shutil, sys
        real = shutil.disk_usage
        shutil.disk_usage = lambda p: real(p)._replace(free=1 << 40)
        from alexnet.prepare import main
        sys.exit(main([{str(tmp_path / "ds")!r}, {str(out)!r}, "--size", "64", "-q"]))
    """)
    r = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert r.returncode == 2, (r.returncode, r.stderr)          # not -7 (SIGBUS)
    line = _one_line(r.stderr)
    assert f"{out}: the disk filled up while the prepared arrays were written" in line
    assert "nothing was left half-written" in line
    assert sorted(os.listdir(out)) == ["keep.txt"]


def test_an_atomic_write_that_fills_the_disk_names_the_users_file_and_leaves_nothing(small_disk):
    from minidl.atomic import atomic_write

    disk = small_disk("1m")
    target = disk / "config.json"
    with pytest.raises(OSError) as failure:
        with atomic_write(target) as f:
            f.write(b"x" * (3 << 20))
    assert failure.value.errno == 28 and failure.value.filename == str(target)
    assert os.listdir(disk) == []
