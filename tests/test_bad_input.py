"""Bad input, case by case: every command line and the layer, optimizer and data API.

Each case asserts what the user sees: for a command, its exit code (2 for a user
error), no traceback, exactly one line on stderr, and the words that say what was
wrong and what to do; for the API, the exception type and the message naming the
function and the argument. A few unusual but valid inputs are run too, to show they
are accepted with a word about what was done. Cases that could block for ever (a FIFO
where a file is expected) run in a child process with a timeout.
"""

import gzip
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import minidl as md
from alexnet import build_model, evaluate, predict, prepare, train, visualize
from minidl import checkpoint
from minidl.data import (ArrayDataset, DataLoader, TrainTransform, random_flip, resize_center_crop,
                         subset_indices)
from minidl.layers import Conv2D, Dropout, Linear, LocalResponseNorm, MaxPool2D, ReLU

REPO = Path(__file__).resolve().parents[1]
FASHION = Path("/usr/share/datasets/fashion-mnist")
FAST = ["--train-subset", "64", "--val-size", "20", "--batch-size", "32", "--test-subset", "20", "--max-steps", "2",
        "--no-progress"]
MAINS = {"train": train.main, "evaluate": evaluate.main, "predict": predict.main, "prepare": prepare.main,
         "visualize": visualize.main}


def run_main(prog, argv, capsys):
    """In-process ``python -m alexnet.<prog> argv``: (exit code, stdout, stderr)."""
    capsys.readouterr()
    try:
        rc = MAINS[prog]([str(a) for a in argv])
    except SystemExit as exc:           # argparse
        rc = exc.code
    out, err = capsys.readouterr()
    return rc, out, err


def assert_one_line(rc, err, prog, fragments, code=2):
    assert rc == code, (rc, err)
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert f"{prog}: error: " in lines[0] or f"alexnet.{prog}" in lines[0], lines[0]
    for frag in fragments:
        assert frag in lines[0], (frag, lines[0])


# -- fixtures: a trained run, an image folder ------------------------------------------------

@pytest.fixture
def run(mini_run, tmp_path):
    """A copy of the trained mini run (conftest) that a case may damage."""
    return Path(shutil.copytree(mini_run, tmp_path / "run"))


def image_folder(root, classes=("a", "b"), n=4, val=True):
    for c in classes:
        (root / "train" / c).mkdir(parents=True)
        for i in range(n):
            img = np.random.default_rng(i + 97 * len(c) + ord(c[0])).integers(0, 256, (32, 32, 3), dtype=np.uint8)
            Image.fromarray(img).save(root / "train" / c / f"{i}.png")
    if val:
        (root / "val" / classes[0]).mkdir(parents=True)
        shutil.copy(root / "train" / classes[0] / "0.png", root / "val" / classes[0] / "0.png")
    return root


def rewrite_checkpoint(path, change):
    state = checkpoint.load(path)
    change(state)
    checkpoint.save(path, state)


def save_raw(path, arrays):
    """An .npz written without checkpoint.save's checks (as a damaged or forged file would be)."""
    with open(path, "wb") as f:
        np.savez(f, **arrays)


# -- train ------------------------------------------------------------------------------------

def _setup_none(tmp):
    return {}


def _file(tmp):
    (tmp / "f").write_text("a file")
    return {"F": tmp / "f"}


def _empty_dir(tmp):
    (tmp / "empty").mkdir()
    return {"E": tmp / "empty"}


def _folder(tmp):
    return {"DS": image_folder(tmp / "ds")}


def _folder_loop(tmp):
    ds = image_folder(tmp / "ds")
    os.symlink("..", ds / "train" / "a" / "up")
    return {"DS": ds}


def _folder_empty_class(tmp):
    ds = image_folder(tmp / "ds")
    (ds / "train" / "c").mkdir()
    return {"DS": ds}


def _folder_one_class(tmp):
    return {"DS": image_folder(tmp / "ds", classes=("a",))}


def _folder_dangling(tmp):
    ds = image_folder(tmp / "ds")
    os.symlink(tmp / "gone.png", ds / "train" / "a" / "9.png")
    return {"DS": ds}


def _fashion_copy(tmp, images=None, labels_range=False):
    d = tmp / "fm"
    d.mkdir()
    for f in FASHION.glob("*.gz"):
        shutil.copy(f, d)
    if labels_range:
        raw = bytearray(gzip.decompress((d / "t10k-labels-idx1-ubyte.gz").read_bytes()))
        raw[8] = 37
        (d / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(bytes(raw)))
    if images is not None:
        (d / "t10k-images-idx3-ubyte.gz").write_bytes(images)
    return {"FM": d}


def _gzip_bomb(tmp):
    header = bytes([0, 0, 8, 3]) + (10000).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2
    return _fashion_copy(tmp, images=gzip.compress(header + bytes(64 << 20), compresslevel=1))


TRAIN_CASES = [
    # (id, setup, argv with placeholders, fragments)
    ("momentum-1", _setup_none, ["--momentum", "1"], ["--momentum", "must be in [0, 1), got 1"]),
    ("seed-negative", _setup_none, ["--seed", "-1"], ["--seed", "must be 0 to 4294967295, got -1"]),
    ("lr-nan", _setup_none, ["--lr", "nan"], ["--lr", "must be a positive number"]),
    ("batch-0", _setup_none, ["--batch-size", "0"], ["--batch-size", "must be >= 1"]),
    ("epochs-word", _setup_none, ["--epochs", "ten"], ["--epochs", "expected a whole number, got 'ten'"]),
    ("lr-step-plateau", _setup_none, ["--lr-schedule", "plateau", "--lr-step", "2"],
     ["--lr-step applies to --lr-schedule step, not plateau"]),
    ("data-is-a-file", _file, ["--data", "F"], ["is a file; give 'fashion-mnist'"]),
    ("data-dir-is-a-file", _file, ["--data-dir", "F"], ["is a file, not a folder"]),
    ("data-dir-empty", _empty_dir, ["--data-dir", "E"], ["was given as the data folder, so no other place"]),
    ("data-dir-with-folder", _folder, ["--data", "DS", "--data-dir", "DS"], ["leave out --data-dir"]),
    ("gpus-without-cupy-backend", _setup_none, ["--gpus", "0,1"], ["--gpus needs --backend cupy"]),
    ("gpus-negative", _setup_none, ["--backend", "cupy", "--gpus", "-1"], ["--gpus expects GPU numbers"]),
    ("gpus-missing", _setup_none, ["--backend", "cupy", "--gpus", "7,7"], ["cuda:7: no such GPU"]),
    ("out-under-a-file", _file, ["--out", "F/run"], ["not writable"]),
    ("folder-empty-class", _folder_empty_class, ["--data", "DS"], ["train/c: no files", "Add some"]),
    ("folder-one-class", _folder_one_class, ["--data", "DS"], ["at least 2 classes"]),
    ("folder-dangling-link", _folder_dangling, ["--data", "DS", "--batch-size", "4", "--val-size", "2"],
     ["9.png is a link to", "which does not exist"]),
    ("fashion-labels-out-of-range", lambda t: _fashion_copy(t, labels_range=True), ["--data-dir", "FM"],
     ["t10k-labels-idx1-ubyte.gz: labels outside 0..9"]),
    ("fashion-gzip-bomb", _gzip_bomb, ["--data-dir", "FM"], ["inflates past the 7,840,016 bytes"]),
    ("train-layers-unknown", _setup_none, ["--train-layers", "fc9"], ["unknown stage(s) fc9"]),
    ("train-layers-empty", _setup_none, ["--train-layers", ""], ["--train-layers names no stage (an empty value)"]),
    ("train-layers-commas", _setup_none, ["--train-layers", " , "], ["--train-layers names no stage"]),
    ("format-without-init-from", _setup_none, ["--format", "caffe"], ["--format describes --init-from FILE"]),
    ("init-from-missing", _setup_none, ["--init-from", "nothere.pth"], ["nothere.pth: no such file"]),
]


@pytest.mark.parametrize("case", TRAIN_CASES, ids=[c[0] for c in TRAIN_CASES])
def test_train_refuses(case, tmp_path, capsys, monkeypatch):
    _, setup, argv, fragments = case
    monkeypatch.chdir(tmp_path)
    names = setup(tmp_path)           # placeholders: NAME or NAME/rest stand for the files the setup made
    argv = [str(names[a.split("/")[0]]) + a[len(a.split("/")[0]):] if a.split("/")[0] in names else a
            for a in argv]
    rc, _, err = run_main("train", [*FAST, "--out", tmp_path / "out", *argv], capsys)
    assert_one_line(rc, err, "train", fragments)


@pytest.mark.parametrize("prog", ["train", "evaluate", "predict", "visualize"])
def test_an_unknown_kernel_set_in_the_environment(prog, run, tmp_path, capsys, monkeypatch):
    from minidl import kernels

    monkeypatch.setenv("MINIDL_KERNELS", "quick")
    monkeypatch.setattr(kernels, "_active", None)          # as in a new process: read the variable again
    argv = {"train": [*FAST, "--out", tmp_path / "out"], "evaluate": ["--run", run],
            "predict": ["--run", run, tmp_path / "none.png"], "visualize": ["--run", run, "filters"]}[prog]
    rc, _, err = run_main(prog, argv, capsys)
    assert_one_line(rc, err, prog, ["MINIDL_KERNELS: unknown kernel set 'quick'; expected one of 'fast', 'reference'"])
    assert not (tmp_path / "out").exists()


def test_a_link_loop_in_a_folder_trains_and_says_what_it_did_not_follow(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ds = _folder_loop(tmp_path)["DS"]
    rc, out, err = run_main("train", ["--data", ds, "--batch-size", "4", "--max-steps", "1", "--no-progress",
                                      "--out", tmp_path / "out"], capsys)
    assert rc == 0, err
    assert "did not follow 1 folder link(s) leading back into" in out and "(6 training images, 2 more held out for validation; 2 classes)" in out


# -- train --resume and --init-from on damaged run folders --------------------------------------

def _config(run, change):
    cfg = json.loads((run / "config.json").read_text())
    change(cfg)
    (run / "config.json").write_text(json.dumps(cfg))


RESUME_CASES = [
    ("no-run", lambda r: shutil.rmtree(r), [], ["is not a training run (no config.json)"]),
    ("config-not-json", lambda r: (r / "config.json").write_text("{oops"), [], ["config.json is damaged"]),
    ("config-bad-preset", lambda r: _config(r, lambda c: c["args"].update(preset="vgg")), [],
     ["config.json is damaged", "invalid choice: 'vgg'"]),
    ("config-bad-batch", lambda r: _config(r, lambda c: c["args"].update(batch_size="lots")), [],
     ["config.json is damaged", "--batch-size"]),
    ("metrics-garbage-line", lambda r: open(r / "metrics.jsonl", "a").write("[1, 2]\n{\"step\": 1}\n"), [],
     ["metrics.jsonl line", "is not a metrics record"]),
    ("only-best", lambda r: (r / "checkpoints" / "last.npz").unlink(), [],
     ["nothing to resume from", "last.npz is missing but", "best.npz is there"]),
    ("other-batch-size", lambda r: None, ["--batch-size", "64"],
     ["--resume continues", "--batch-size 32 (given: 64)"]),
    ("checkpoint-is-text", lambda r: (r / "checkpoints" / "last.npz").write_text("hello"), [],
     ["last.npz is not an .npz file (it starts with b'hello')"]),
    ("checkpoint-nan-weights", lambda r: rewrite_checkpoint(
        r / "checkpoints" / "last.npz", lambda s: s["model"]["fc6.tower0.weight"].__setitem__((0, 0), np.nan)),
     [], ["fc6.tower0.weight holds NaN or infinite values"]),
    ("checkpoint-wrong-shape", lambda r: rewrite_checkpoint(
        r / "checkpoints" / "last.npz", lambda s: s["model"].__setitem__("fc8.tower1.bias", np.zeros(3, np.float32))),
     [], ["fc8.tower1.bias has shape (3,) but the model's is (5,)"]),
    ("checkpoint-nan-rate", lambda r: rewrite_checkpoint(
        r / "checkpoints" / "last.npz", lambda s: s["optim"].__setitem__("lr", float("nan"))),
     [], ["last.npz is damaged", "lr must be a positive number"]),
    # forged into a silently different run: each is refused by the check of the whole training state
    ("checkpoint-fractional-step", lambda r: _progress(r, step=2.5), [],
     ["last.npz is damaged: its progress counter step is 2.5, not a whole number"]),
    ("checkpoint-negative-epoch", lambda r: _progress(r, epoch=-1), [], ["its progress counter epoch is -1"]),
    ("checkpoint-nan-best", lambda r: _progress(r, best_top1=float("nan")), [],
     ["last.npz is damaged: best_top1 is nan, not a finite number"]),
    ("checkpoint-best-over-100", lambda r: _progress(r, best_top1=250.0), [], ["best_top1 is 250.0, not a percentage"]),
    ("checkpoint-negative-dropout-counter", lambda r: _dropout(r, counter=-3), [],
     ["last.npz is damaged", "counter must be a whole number from 0 to 2**63 - 1, got -3"]),
    ("checkpoint-huge-dropout-counter", lambda r: _dropout(r, counter=2 ** 70), [],
     ["counter must be a whole number from 0 to 2**63 - 1"]),
    ("checkpoint-nan-velocity", lambda r: rewrite_checkpoint(
        r / "checkpoints" / "last.npz", lambda s: next(iter(s["optim"]["velocity"].values())).__setitem__(0, np.nan)),
     [], ["last.npz is damaged", "is not an array of finite floats"]),
]


def _progress(run, **values):
    rewrite_checkpoint(run / "checkpoints" / "last.npz", lambda s: s["progress"].update(values))


def _dropout(run, **values):
    def forge(state):
        stack = [state["rng"]]
        while stack:
            node = stack.pop()
            if "counter" in node:
                node.update(values)
            else:
                stack.extend(v for v in node.values() if isinstance(v, dict))
    rewrite_checkpoint(run / "checkpoints" / "last.npz", forge)


@pytest.mark.parametrize("case", RESUME_CASES, ids=[c[0] for c in RESUME_CASES])
def test_resume_refuses_a_damaged_run(case, run, capsys):
    _, damage, extra, fragments = case
    damage(run)
    before = {p.name: p.read_bytes() for p in (run / "checkpoints").glob("*.npz")} if run.exists() else {}
    rc, _, err = run_main("train", ["--out", run, "--resume", "--no-progress", "--max-steps", "200", *extra], capsys)
    assert_one_line(rc, err, "train", fragments)
    if run.exists():      # nothing saved was touched
        assert {p.name: p.read_bytes() for p in (run / "checkpoints").glob("*.npz")} == before


def test_init_from_a_run_whose_towers_disagree(run, tmp_path, capsys):
    for name in ("best.npz", "last.npz"):
        rewrite_checkpoint(run / "checkpoints" / name,
                           lambda s: s["model"].__setitem__("conv2.tower1.weight",
                                                            s["model"]["conv2.tower1.weight"][:, :, :3, :3].copy()))
    rc, _, err = run_main("train", [*FAST, "--out", tmp_path / "ft", "--init-from", run], capsys)
    assert_one_line(rc, err, "train", ["conv2.tower1.weight has shape (32, 16, 3, 3) but the model's is "
                                       "(32, 16, 5, 5)", "damaged or of another preset"])


# -- evaluate ------------------------------------------------------------------------------------

EVALUATE_CASES = [
    ("not-a-run", lambda r: shutil.rmtree(r / "checkpoints") or (r / "config.json").unlink(), [],
     ["is not a training run"]),
    ("config-no-data", lambda r: _config(r, lambda c: c.pop("data")), [], ["config.json is damaged"]),
    ("best-nan", lambda r: rewrite_checkpoint(
        r / "checkpoints" / "best.npz", lambda s: s["model"]["conv1.tower0.weight"].fill(np.inf)), [],
     ["conv1.tower0.weight holds NaN or infinite values"]),
    ("best-table-dangling", lambda r: save_raw(r / "checkpoints" / "best.npz", {
        "__meta__.json": np.array(json.dumps({"model": {"dict": {"w": {"array": "model/w"}}}}))}), [],
     ["best.npz is damaged", "the array 'model/w' is missing"]),
    ("best-not-ours", lambda r: save_raw(r / "checkpoints" / "best.npz", {"w": np.zeros(3)}), [],
     ["not a minidl checkpoint"]),
    ("last-missing", lambda r: (r / "checkpoints" / "last.npz").unlink(), ["--checkpoint", "last"],
     ["has no last checkpoint", "--checkpoint best"]),
    ("limit-0", lambda r: None, ["--limit", "0"], ["--limit", "must be >= 1"]),
    ("batch-words", lambda r: None, ["--batch-size", "many"], ["--batch-size", "expected a whole number"]),
]


@pytest.mark.parametrize("case", EVALUATE_CASES, ids=[c[0] for c in EVALUATE_CASES])
def test_evaluate_refuses(case, run, capsys):
    _, damage, extra, fragments = case
    damage(run)
    rc, _, err = run_main("evaluate", ["--run", run, *extra], capsys)
    assert_one_line(rc, err, "evaluate", fragments)


def test_evaluate_a_run_whose_test_images_are_gone(tmp_path, capsys):
    ds = image_folder(tmp_path / "ds")
    assert run_main("train", ["--data", ds, "--batch-size", "4", "--max-steps", "1", "--no-progress",
                              "--out", tmp_path / "run"], capsys)[0] == 0
    (ds / "val" / "a" / "0.png").unlink()
    rc, _, err = run_main("evaluate", ["--run", tmp_path / "run"], capsys)
    assert_one_line(rc, err, "evaluate", ["its val split has no images"])


# -- predict -----------------------------------------------------------------------------------------

def _png(tmp, name, shape=(28, 28)):
    path = tmp / name
    Image.fromarray(np.zeros(shape, np.uint8)).save(path)
    return path


PREDICT_CASES = [
    ("image-is-a-folder", lambda t, r: [t, "--run", r], ["is a folder; give image files"]),
    ("image-is-a-device", lambda t, r: ["/dev/null", "--run", r], ["/dev/null is not a regular file"]),
    ("image-missing", lambda t, r: [t / "no.png", "--run", r], ["no.png: no such file"]),
    ("image-is-text", lambda t, r: [(t / "x.png").write_text("text") and t / "x.png", "--run", r],
     ["x.png: not a readable image"]),
    ("image-1x8000", lambda t, r: [_png(t, "thin.png", (1, 8000)), "--run", r],
     ["thin.png: 8000x1 pixels: an aspect ratio beyond 256:1"]),
    ("no-run-no-weights", lambda t, r: [_png(t, "a.png")], ["give --run DIR"]),
    ("run-and-weights", lambda t, r: [_png(t, "a.png"), "--run", r, "--weights", "w.pth"],
     ["either --run or --weights, not both"]),
    ("weights-empty-folder", lambda t, r: [_png(t, "a.png"), "--weights", t],
     ["neither a weights file nor a training run"]),
    ("weights-nan", lambda t, r: [_png(t, "a.png", (64, 64)), "--weights", _torchvision_npz(t, nan=True)],
     ["the fc6 weights hold NaN or infinite values"]),
    ("weights-forged-safetensors", lambda t, r: [_png(t, "a.png"), "--weights", _forged_safetensors(t)],
     ["w.safetensors: not a safetensors file, or a damaged one"]),     # what follows is the library's wording
    ("top-0", lambda t, r: [_png(t, "a.png"), "--run", r, "--top", "0"], ["--top", "must be >= 1"]),
]


def _torchvision_npz(tmp, nan=False):
    from alexnet import pretrained

    path = pretrained.export_torchvision(build_model("torchvision", init="he", seed=1), tmp / "tv.npz")
    if nan:
        state = dict(np.load(path))
        state["classifier.1.weight"][0, 0] = np.nan
        save_raw(path, state)
    return path


def _forged_safetensors(tmp):
    header = json.dumps({"w": {"dtype": "F32", "shape": [2 ** 32, 2 ** 32], "data_offsets": [0, 0]}}).encode()
    path = tmp / "w.safetensors"
    path.write_bytes(len(header).to_bytes(8, "little") + header)
    return path


@pytest.mark.parametrize("case", PREDICT_CASES, ids=[c[0] for c in PREDICT_CASES])
def test_predict_refuses(case, run, tmp_path, capsys):
    _, make, fragments = case
    (tmp_path / "t").mkdir()
    rc, _, err = run_main("predict", make(tmp_path / "t", run), capsys)
    assert_one_line(rc, err, "predict", fragments)


def test_predict_garbage_pth_is_not_called_malicious(tmp_path, capsys):
    pytest.importorskip("torch")
    (tmp_path / "w.pth").write_bytes(b"garbage" * 100)
    rc, _, err = run_main("predict", [_png(tmp_path, "a.png"), "--weights", tmp_path / "w.pth"], capsys)
    assert_one_line(rc, err, "predict", ["not a PyTorch file (neither a zip archive nor a pickle)"])


# -- prepare ----------------------------------------------------------------------------------------

PREPARE_CASES = [
    ("no-arguments", lambda t: [], ["the following arguments are required: ROOT, OUT"]),
    ("size-huge", lambda t: [image_folder(t / "ds"), t / "o", "--size", "30000"], ["--size", "must be 1 to 2048"]),
    ("size-word", lambda t: [image_folder(t / "ds"), t / "o", "--size", "big"], ["--size", "expected a whole number"]),
    ("workers-0", lambda t: [image_folder(t / "ds"), t / "o", "--workers", "0"], ["--workers", "must be >= 1"]),
    ("root-missing", lambda t: [t / "nothing", t / "o"], ["nothing: no such folder"]),
    ("empty-class", lambda t: [_folder_empty_class(t)["DS"], t / "o"], ["train/c: no files"]),
    ("out-under-a-file", lambda t: [image_folder(t / "ds"), _file(t)["F"] / "o"], ["cannot write the output there"]),
]


@pytest.mark.parametrize("case", PREPARE_CASES, ids=[c[0] for c in PREPARE_CASES])
def test_prepare_refuses(case, tmp_path, capsys):
    _, make, fragments = case
    rc, _, err = run_main("prepare", make(tmp_path), capsys)
    assert_one_line(rc, err, "prepare", fragments)


def test_prepare_a_folder_with_a_loop_a_dangling_link_and_a_non_utf8_name(tmp_path, capsys):
    ds = image_folder(tmp_path / "ds")
    os.symlink("..", ds / "train" / "a" / "up")
    os.symlink(tmp_path / "gone.png", ds / "train" / "b" / "9.png")
    odd = os.path.join(os.fsencode(ds / "train"), b"caf\xe9")         # Latin-1 bytes, not UTF-8
    os.mkdir(odd)
    shutil.copy(ds / "train" / "a" / "0.png", os.path.join(odd, b"0.png"))
    rc, out, err = run_main("prepare", [ds, tmp_path / "out", "-q"], capsys)
    assert rc == 0 and "Traceback" not in err, err
    assert "Did not follow 1 folder link(s)" in out and "9.png is a link to" in out
    assert "train: 9 images (1 skipped)" in out
    classes = json.loads((tmp_path / "out" / "classes.json").read_text())
    assert classes == ["a", "b", "caf\udce9"]                  # the name's bytes survive, as Python keeps them


# -- visualize --------------------------------------------------------------------------------------------

VISUALIZE_CASES = [
    ("n-huge", lambda r, t: ["--run", r, "predictions", "--n", "3000"], ["--n", "must be 1 to 64"]),
    ("index-out-of-range", lambda r, t: ["--run", r, "predictions", "--indices", "99999"],
     ["image indices must be in 0..9999, got 99999"]),
    ("k-huge", lambda r, t: ["--run", r, "neighbours", "--k", "20000"], ["--k", "must be 1 to 32"]),
    ("deconv-fc-layer", lambda r, t: ["--run", r, "deconv", "--layer", "fc6", "--out", t / "d.png"],
     ["deconv: layer must be one of conv1, conv2, conv3, conv4, conv5"]),
    ("deconv-channel-out-of-range", lambda r, t: ["--run", r, "deconv", "--channels", "999", "--out", t / "d.png"],
     ["channels must be in 0..63, got 999"]),
    ("out-under-a-file", lambda r, t: ["--run", r, "filters", "--out", _file(t)["F"] / "x.png"],
     ["cannot use", "a file, not a folder, is in the way"]),
    ("out-unknown-format", lambda r, t: ["--run", r, "filters", "--out", t / "x.nope"],
     ["cannot save a picture as .nope"]),
    ("no-run", lambda r, t: ["filters"], ["--run DIR is required"]),
]


@pytest.mark.parametrize("case", VISUALIZE_CASES, ids=[c[0] for c in VISUALIZE_CASES])
def test_visualize_refuses(case, run, tmp_path, capsys):
    _, make, fragments = case
    rc, _, err = run_main("visualize", make(run, tmp_path), capsys)
    assert_one_line(rc, err, "visualize", fragments)


# -- files that would block: FIFOs, in a child process with a timeout -----------------------------------

FIFO_CASES = [
    ("evaluate", "checkpoints/best.npz", ["evaluate", "--run", "RUN"], "best.npz is not a regular file"),
    ("train", "metrics.jsonl", ["train", "--out", "RUN", "--resume", "--no-progress"],
     "metrics.jsonl is not a regular file"),
    ("predict", "w.pth", ["predict", "IMG", "--weights", "RUN/w.pth"], "w.pth is not a regular file"),
]


@pytest.mark.parametrize("case", FIFO_CASES, ids=[c[0] for c in FIFO_CASES])
def test_a_fifo_where_a_file_is_expected_is_refused_not_waited_on(case, run, tmp_path):
    _, name, argv, fragment = case
    target = run / name
    target.unlink(missing_ok=True)
    os.mkfifo(target)
    img = _png(tmp_path, "a.png")
    argv = [a.replace("RUN", str(run)).replace("IMG", str(img)) for a in argv]
    r = subprocess.run([sys.executable, "-m", f"alexnet.{argv[0]}", *argv[1:]], cwd=tmp_path, capture_output=True,
                       text=True, timeout=120)
    assert_one_line(r.returncode, r.stderr, argv[0], [fragment])


# -- the Python API ------------------------------------------------------------------------------------------

def _params():
    p = md.Parameter(np.ones(3, np.float32))
    p.grad = np.ones(3, np.float32)
    return [p]


def _backward(layer, x, dy):
    layer.forward(x)
    return layer.backward(dy)


def f32(*shape):
    return np.random.default_rng(0).standard_normal(shape).astype(np.float32)


API_CASES = [
    ("linear-float-size", lambda: Linear(2.5, 3), TypeError, "Linear: in_features must be a whole number, got 2.5"),
    ("linear-text-size", lambda: Linear("3", 4), TypeError, "Linear: in_features must be a whole number, got '3'"),
    ("conv-float-kernel", lambda: Conv2D(3, 8, 2.5), TypeError, "Conv2D: kernel_size must be a whole number"),
    ("conv-groups-not-dividing", lambda: Conv2D(3, 8, 3, groups=2), ValueError, "must both be divisible by groups"),
    ("conv-negative-padding", lambda: Conv2D(3, 8, 3, padding=-1), ValueError, "Conv2D: padding must be >= 0"),
    ("pool-kernel-12", lambda: MaxPool2D(12), ValueError, "MaxPool2D: kernel_size must be in 1..11, got 12"),
    ("dropout-text-p", lambda: Dropout("0.5"), TypeError, "Dropout: p must be a number, got '0.5'"),
    ("dropout-p-1", lambda: Dropout(1.0), ValueError, "Dropout: p must be a finite number in [0, 1), got 1.0"),
    ("lrn-k-0", lambda: LocalResponseNorm(k=0.0), ValueError, "LocalResponseNorm: k must be a finite number > 0"),
    ("lrn-alpha-negative", lambda: LocalResponseNorm(alpha=-100.0), ValueError, "alpha must be a finite number >= 0"),
    ("float16-input", lambda: LocalResponseNorm().forward(np.ones((1, 2, 2, 2), np.float16)), ValueError,
     "float16 overflows (LRN squares its input)"),
    ("integer-input", lambda: ReLU().forward(np.ones((2, 2), np.int64)), ValueError,
     "ReLU: expected a floating-point input (float32; float64 for gradient checks), got dtype int64"),
    ("relu-backward-broadcasting-dy", lambda: _backward(ReLU(), f32(4, 6), f32(1, 6)), ValueError,
     "ReLU.backward: dy has shape (1, 6) but the output had (4, 6)"),
    ("dropout-backward-broadcasting-dy", lambda: _backward(Dropout(0.5), f32(4, 6), f32(1, 6)), ValueError,
     "Dropout.backward: dy has shape (1, 6)"),
    ("conv-backward-wrong-dy", lambda: _backward(Conv2D(3, 4, 3), f32(2, 3, 5, 5), f32(2, 4, 2, 2)), ValueError,
     "Conv2D.backward: dy has shape (2, 4, 2, 2) but the output had (2, 4, 3, 3)"),
    ("pool-backward-wrong-dy", lambda: _backward(MaxPool2D(2, 2), f32(2, 3, 4, 4), f32(1, 3, 2, 2)), ValueError,
     "MaxPool2D.backward: dy has shape (1, 3, 2, 2)"),
    ("loss-labels-out-of-range", lambda: md.SoftmaxCrossEntropy().forward(f32(2, 3), np.array([0, 3])), ValueError,
     "labels must lie in [0, 3), got values from 0 to 3"),
    ("loss-float-labels", lambda: md.SoftmaxCrossEntropy().forward(f32(2, 3), np.array([0.0, 1.0])), ValueError,
     "expected integer labels"),
    ("loss-empty-batch", lambda: md.SoftmaxCrossEntropy().forward(f32(0, 3), np.zeros(0, np.int64)), ValueError,
     "an empty batch has no mean loss"),
    ("sgd-lr-nan", lambda: md.SGD(_params(), lr=float("nan")), ValueError, "SGD: lr must be a finite number > 0"),
    ("sgd-weight-decay-inf", lambda: md.SGD(_params(), lr=0.1, weight_decay=float("inf")), ValueError,
     "SGD: weight_decay must be a finite number >= 0, got inf"),
    ("sgd-group-momentum", lambda: md.SGD([{"params": _params(), "momentum": 1.5}], lr=0.1), ValueError,
     "SGD group 0: momentum must be a finite number in [0, 1), got 1.5"),
    ("sgd-load-without-velocity", lambda: md.SGD(_params(), lr=0.1).load_state_dict({"lr": 0.1}), ValueError,
     "SGD.load_state_dict: expected {'lr': float, 'velocity': {...}}"),
    ("steplr-float-step", lambda: md.StepLR(md.SGD(_params(), lr=0.1), 1.5), TypeError,
     "StepLR: step_size must be a whole number, got 1.5"),
    ("plateau-nan-metric", lambda: md.ReduceLROnPlateau(md.SGD(_params(), lr=0.1)).step(float("nan")), ValueError,
     "ReduceLROnPlateau.step: metric must be a finite number"),
    ("layer-to-int", lambda: Linear(2, 2).to(dtype="int32"), ValueError,
     "Parameter.to: dtype must be float32 or float64, got int32"),
    ("load-state-of-lists", lambda: Linear(2, 1).load_state_dict({"weight": [[1.0, 2.0]], "bias": [0.0]}), TypeError,
     "Linear.load_state_dict: 'weight' must be an array of floats, got list"),
    ("build-seed-negative", lambda: build_model("mini", num_classes=10, seed=-1), ValueError,
     "AlexNet: seed must be in 0..4294967295, got -1"),
    ("build-int-dtype", lambda: build_model("mini", num_classes=10, dtype="int32"), ValueError,
     "build_model: dtype must be float32 or float64"),
    ("init-negative-std", lambda: md.init.normal_(md.Parameter(np.zeros(3, np.float32)), -1.0), ValueError,
     "normal_: std must be a finite number >= 0"),
    ("checkpoint-object-array", lambda: checkpoint.save("/nonexistent/c.npz", {"x": np.array([{}], dtype=object)}),
     TypeError, "'x' is an array of object, which cannot be stored without pickle"),
    ("checkpoint-int-key", lambda: checkpoint.save("/nonexistent/c.npz", {1: np.zeros(1)}), TypeError,
     "key 1 at '/' is a int; keys must be strings"),
    ("checkpoint-reserved-key", lambda: checkpoint.save("/nonexistent/c.npz", {"__meta__.json": np.zeros(1)}),
     ValueError, "the key '__meta__.json' is reserved"),
    ("gradcheck-no-checks", lambda: md.gradcheck(Linear(3, 2).to(dtype="float64"), np.ones((2, 3)), num_checks=0),
     ValueError, "gradcheck: num_checks (or None: every entry) must be >= 1, got 0"),
    ("gradcheck-eps-0", lambda: md.gradcheck(Linear(3, 2).to(dtype="float64"), np.ones((2, 3)), eps=0), ValueError,
     "gradcheck: eps must be a finite number > 0"),
    ("dataset-negative-labels", lambda: ArrayDataset(np.zeros((2, 1, 2, 2), np.uint8), [-1, 0]), ValueError,
     "ArrayDataset: labels must be >= 0, got -1"),
    ("dataset-list-images", lambda: ArrayDataset([[1]], [0]), TypeError,
     "ArrayDataset: images must be an array (N, C, H, W), got list"),
    ("subset-float-n", lambda: subset_indices(np.arange(10) % 2, 2.5), TypeError,
     "subset_indices: n must be a whole number, got 2.5"),
    ("loader-batch-0", lambda: DataLoader(ArrayDataset(np.zeros((4, 1, 2, 2), np.uint8), [0, 1, 0, 1]), 0),
     ValueError, "DataLoader: batch_size must be a positive int"),
    ("flip-p-2", lambda: random_flip(f32(2, 1, 1, 3), np.random.default_rng(0), p=2.0), ValueError,
     "random_flip: p must be a finite number in [0, 1], got 2.0"),
    ("transform-seed-not-generator", lambda: TrainTransform(6)(np.zeros((2, 3, 8, 8), np.uint8), 0), TypeError,
     "random_crop: rng must be a numpy.random.Generator"),
    ("transform-pca-shape", lambda: TrainTransform(6, pca=([0.2, 0.1], np.eye(2))), ValueError,
     "TrainTransform pca: eigval must be the 3 eigenvalues and eigvec the 3x3 eigenvectors"),
    ("transform-std-nan", lambda: TrainTransform(6, std=[float("nan")] * 3), ValueError,
     "TrainTransform: std must be finite and > 0"),
    ("resize-unknown-filter", lambda: resize_center_crop(np.zeros((5, 5, 3), np.uint8), 4, resample="nearest"),
     ValueError, "resize_center_crop: resample must be one of bicubic, bilinear, lanczos, got 'nearest'"),
    ("resize-float-image", lambda: resize_center_crop(np.zeros((5, 5, 3)), 4), ValueError,
     "resize_center_crop: expected a uint8 (H, W, 3) image, got float64"),
]


@pytest.mark.parametrize("case", API_CASES, ids=[c[0] for c in API_CASES])
def test_api_refuses(case):
    _, call, kind, message = case
    with pytest.raises(kind) as info:
        call()
    assert message in str(info.value) and "\n" not in str(info.value), str(info.value)


def test_gradcheck_perturbs_a_non_contiguous_parameter_in_place():
    layer = Linear(3, 2).to(dtype="float64")
    md.init.normal_(layer.weight, 1.0, rng=0)
    layer.weight.data = np.asfortranarray(layer.weight.data)       # a correct layer, another memory layout
    errors = md.gradcheck(layer, np.random.default_rng(1).standard_normal((2, 3)))
    assert max(errors.values()) < 1e-8, errors


def test_the_corpus_covers_every_command_line_and_the_api():
    cli = len(TRAIN_CASES) + len(RESUME_CASES) + len(EVALUATE_CASES) + len(PREDICT_CASES) + len(PREPARE_CASES) \
        + len(VISUALIZE_CASES) + len(FIFO_CASES)
    assert cli >= 60 and len(API_CASES) >= 40
