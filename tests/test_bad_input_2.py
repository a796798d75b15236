"""The second bad-input corpus: what a hostile but realistic user found after the first one held.

Each case asserts what the user sees: the exit code, no traceback, one line, and its words (or, for
output, that a name cannot break the lines it is printed on). The run-folder lock and the full disk
have their own files (test_run_lock.py, test_full_disk.py).
"""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from alexnet.cli import display_name, run_cli
from minidl.data import DatasetError
from minidl.data.prepare import prepare_folder
from minidl.data.prepared import PreparedDataset


def _python(script, env=None, **kw):
    return subprocess.run([sys.executable, "-c", textwrap.dedent(script)], capture_output=True, text=True,
                          timeout=120, env={**os.environ, **(env or {})}, **kw)


def test_output_piped_into_head_ends_quietly_not_in_broken_pipe_error():
    # 10 MB of output into a reader that stops after one line: what `python -m alexnet.predict ... | head -1` does
    script = """
        import sys
        from alexnet.cli import run_cli
        def talk(argv):
            for i in range(100000):
                print("line", i, "x" * 100)
            return 0
        sys.exit(run_cli("predict", talk, []))
    """
    pipeline = f"{sys.executable} -c '{textwrap.dedent(script)}' | head -1"
    r = subprocess.run(["bash", "-o", "pipefail", "-c", pipeline], capture_output=True, text=True, timeout=120)
    assert r.stdout == "line 0 " + "x" * 100 + "\n"
    assert r.stderr == "", r.stderr                        # no BrokenPipeError, no "Exception ignored"
    assert r.returncode == 141                             # as a command killed by SIGPIPE


def test_a_non_ascii_name_on_an_ascii_only_stdout_is_escaped_not_a_crash():
    r = _python("""
        import sys
        from alexnet.cli import run_cli, display_name
        sys.exit(run_cli("predict", lambda argv: print("  97.00%  " + display_name("Cafe\\u0301 cr\\u00e8me")) or 0, []))
    """, env={"PYTHONIOENCODING": "ascii"})
    assert r.returncode == 0, r.stderr
    assert r.stdout == "  97.00%  Cafe\\u0301 cr\\xe8me\n"


@pytest.mark.parametrize("name, shown", [
    ("two\nlines", "two\\nlines"),
    ("tab\there", "tab\\there"),
    ("carriage\rreturn", "carriage\\rreturn"),
    ("bell\x07", "bell\\x07"),
    ("ok name", "ok name"),
    ("crème", "crème"),
    ("bad\udcffbyte", "bad\\xffbyte"),
])
def test_a_name_with_control_characters_stays_on_one_line(name, shown):
    assert display_name(name) == shown


def _tree(root, classes, n=2, side=24):
    for c in classes:
        (root / "train" / c).mkdir(parents=True)
        for i in range(n):
            img = np.random.default_rng(i).integers(0, 256, (side, side, 3), dtype=np.uint8)
            Image.fromarray(img).save(root / "train" / c / f"{i}.png")
    return root


def test_evaluate_and_predict_print_a_class_name_with_a_newline_on_one_line(tmp_path):
    _tree(tmp_path / "ds", ["plain", "two\nlines"])
    prepare_folder(tmp_path / "ds", tmp_path / "out", size=32, progress=False, verbose=False)
    data = PreparedDataset(tmp_path / "out", "train")
    assert data.classes == ["plain", "two\nlines"]          # kept as it is; only its display is escaped
    assert [display_name(c) for c in data.classes] == ["plain", "two\\nlines"]


def test_a_prepared_classes_json_with_a_name_twice_is_refused(tmp_path):
    _tree(tmp_path / "ds", ["a", "b"])
    prepare_folder(tmp_path / "ds", tmp_path / "out", size=32, progress=False, verbose=False)
    (tmp_path / "out" / "classes.json").write_text(json.dumps(["a", "a"]))
    with pytest.raises(DatasetError, match=r"classes.json: the class name 'a' is listed 2 times; names must be unique"):
        PreparedDataset(tmp_path / "out", "train")


def test_run_cli_reports_a_user_error_in_one_line_after_reconfiguring_the_streams(capsys):
    from alexnet.cli import UserError

    def fails(argv):
        raise UserError("the class name 'x\\ny' is odd")
    assert run_cli("evaluate", fails, []) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("evaluate: error: ")


# -- the layer and optimizer API ------------------------------------------------------------------

import minidl as md  # noqa: E402


def test_a_gradient_of_the_wrong_shape_is_refused_where_it_is_given_not_broadcast_by_sgd():
    p = md.Parameter(np.ones((3, 4), np.float32))
    with pytest.raises(ValueError, match=r"Parameter\(3, 4\): a gradient of shape \(4,\) and dtype float32 does not "
                                         r"match the parameter's shape \(3, 4\)"):
        p.grad = np.ones(4, np.float32)
    p.grad = np.zeros((3, 4), np.float32)
    with pytest.raises(ValueError, match=r"a gradient of shape \(1, 4\)"):
        p.accumulate(np.ones((1, 4), np.float32))        # += would broadcast it over every row
    with pytest.raises(ValueError, match="dtype float64 does not match the parameter's shape \\(3, 4\\) and dtype float32"):
        p.grad = np.zeros((3, 4))


@pytest.mark.parametrize("data", [np.arange(6).reshape(2, 3), np.ones(3, dtype=bool), [1.0, 2.0]])
def test_a_parameter_that_is_not_floats_is_refused(data):
    with pytest.raises(ValueError, match="Parameter: data must be an array of floats .* could never be updated"):
        md.Parameter(data)


@pytest.mark.parametrize("layer, x", [
    (md.ReLU(), np.ones((2, 3), np.float32)),
    (md.Linear(3, 2), np.ones((2, 3), np.float32)),
    (md.MaxPool2D(3, 2), np.ones((1, 1, 5, 5), np.float32)),
    (md.Flatten(), np.ones((2, 3, 2), np.float32)),
    (md.LocalResponseNorm(5), np.ones((1, 6, 2, 2), np.float32)),
    (md.Conv2D(1, 2, 3), np.ones((1, 1, 4, 4), np.float32)),
    (md.Dropout(0.5), np.ones((2, 3), np.float32)),
    (md.Tanh(), np.ones((2, 3), np.float32)),
])
def test_a_second_backward_after_one_forward_is_refused_by_every_layer(layer, x):
    y = layer.forward(x)
    layer.backward(np.ones_like(y))
    with pytest.raises(RuntimeError, match="backward called (before forward, or )?a second time after one forward"):
        layer.backward(np.ones_like(y))


@pytest.mark.parametrize("layer, x", [
    (md.ReLU(), np.ones((2, 3), np.float32)),
    (md.Linear(3, 2), np.ones((2, 3), np.float32)),
    (md.MaxPool2D(3, 2), np.ones((1, 1, 5, 5), np.float32)),
    (md.LocalResponseNorm(5), np.ones((1, 6, 2, 2), np.float32)),
    (md.Conv2D(1, 2, 3), np.ones((1, 1, 4, 4), np.float32)),
])
def test_a_float64_upstream_gradient_into_a_float32_layer_is_refused(layer, x):
    y = layer.forward(x)
    with pytest.raises(ValueError, match="backward: dy is float64 but the layer ran in float32; cast dy to float32"):
        layer.backward(np.ones(y.shape, np.float64))


@pytest.mark.parametrize("state, words", [
    ({"seed": 0, "counter": -1}, "counter must be a whole number from 0 to 2**63 - 1, got -1"),
    ({"seed": 0, "counter": 2 ** 70}, "got 1180591620717411303424"),
    ({"seed": 1.5, "counter": 0}, "seed must be a whole number"),
    ({"seed": 0, "counter": True}, "counter must be a whole number"),
])
def test_a_forged_dropout_state_is_refused(state, words):
    with pytest.raises(ValueError, match=words.replace("*", r"\*").replace("(", r"\(")):
        md.Dropout(0.5).set_rng_state(state)


def test_a_nan_velocity_is_refused_on_load():
    p = md.Parameter(np.ones(3, np.float32))
    sgd = md.SGD([p], lr=0.1)
    with pytest.raises(ValueError, match="velocity 0.0 is not an array of finite floats"):
        sgd.load_state_dict({"lr": 0.1, "velocity": {"0.0": np.array([0, np.nan, 0], np.float32)}})


# -- paths -----------------------------------------------------------------------------------------

FAST = ["--train-subset", "64", "--val-size", "20", "--batch-size", "32", "--test-subset", "20", "--max-steps", "1",
        "--no-progress"]


def test_a_quoted_tilde_in_out_is_the_home_folder_not_a_folder_named_tilde(tmp_path, monkeypatch, capsys):
    from alexnet import train
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    assert train.main([*FAST, "--out", "~/runs/r"]) == 0
    assert (tmp_path / "home" / "runs" / "r" / "checkpoints" / "last.npz").exists()
    assert not (tmp_path / "~").exists()


@pytest.mark.parametrize("prog, argv", [
    ("train", ["--out", ""]),
    ("train", ["--data", " "]),
    ("train", ["--init-from", ""]),
    ("evaluate", ["--run", ""]),
    ("predict", ["--run", "", "x.png"]),
    ("prepare", ["", "out"]),
    ("visualize", ["--run", "", "filters"]),
])
def test_an_empty_path_is_refused_in_one_line(prog, argv, tmp_path, monkeypatch, capsys):
    import importlib
    monkeypatch.chdir(tmp_path)
    main = importlib.import_module(f"alexnet.{prog}").main
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    err = capsys.readouterr().err.strip()
    assert exit_.value.code == 2 and len(err.splitlines()) == 1, err
    assert "an empty path (an unset shell variable?)" in err
    assert os.listdir(tmp_path) == []


# -- damaged files: sizes from headers, nesting -----------------------------------------------------

from test_bad_input import assert_one_line, run, run_main  # noqa: E402,F401,F811  (run: a fixture)


def _idx(path, dims, payload=b"\0" * 7840, gz=True):
    import gzip
    import struct
    data = bytes([0, 0, 8, len(dims)]) + b"".join(struct.pack(">I", d) for d in dims) + payload
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


@pytest.mark.parametrize("dims, gz, words", [
    ((2 ** 32 - 1,) * 3, True, "its idx header announces shape (4294967295, 4294967295, 4294967295) "
                               "(79,228,162,458,924,105,385,300,197,391 bytes), more than a gzip file of"),
    ((2 ** 32 - 1,) * 2, True, "announces shape (4294967295, 4294967295) (18,446,744,065,119,617,037 bytes)"),
    ((2 ** 32 - 1,) * 2, False, "idx header says shape (4294967295, 4294967295) (18446744065119617037 bytes) but "
                                "the file has 7852 bytes"),      # was a negative size: an int64 product overflowed
])
def test_an_idx_header_with_huge_dimensions_is_refused_by_its_size_not_a_traceback(dims, gz, words, tmp_path):
    from minidl.data.fashion_mnist import read_idx
    with pytest.raises(DatasetError) as err:
        read_idx(_idx(tmp_path / ("x.gz" if gz else "x"), dims, gz=gz))
    assert words in str(err.value) and "delete it and fetch it again" in str(err.value)


def test_train_on_a_dataset_folder_with_a_huge_idx_header_says_which_file(tmp_path, capsys):
    import shutil
    src = Path("/usr/share/datasets/fashion-mnist")
    if not src.is_dir():
        pytest.skip("needs the Debian package dataset-fashion-mnist")
    for f in src.glob("*.gz"):
        shutil.copy(f, tmp_path / f.name)
    _idx(tmp_path / "train-images-idx3-ubyte.gz", (2 ** 32 - 1,) * 3)
    rc, _, err = run_main("train", ["--data-dir", tmp_path, "--out", tmp_path / "r", "--no-progress"], capsys)
    assert_one_line(rc, err, "train", ["train-images-idx3-ubyte.gz: its idx header announces shape",
                                       "more than a gzip file of"])
    assert not (tmp_path / "r" / "checkpoints").exists()


def _deep_meta(path, text):
    arrays = dict(np.load(path))
    arrays["__meta__.json"] = np.array(text)
    np.savez(path, **arrays)


DEEP = "[" * 100000 + "]" * 100000


@pytest.mark.parametrize("prog, damage, words", [
    ("train", lambda r: _deep_meta(r / "checkpoints" / "last.npz", DEEP),
     "last.npz is damaged: its __meta__.json nests lists or tables too deeply"),
    ("evaluate", lambda r: _deep_meta(r / "checkpoints" / "best.npz", DEEP),
     "best.npz is damaged: its __meta__.json nests lists or tables too deeply"),
    ("train", lambda r: (r / "config.json").write_text(DEEP), "config.json is damaged (maximum recursion depth"),
    ("evaluate", lambda r: (r / "config.json").write_text('{"a":' * 50000 + "1" + "}" * 50000),
     "config.json is damaged (maximum recursion depth"),
    ("train", lambda r: open(r / "metrics.jsonl", "a").write(DEEP + '\n{"step": 1}\n'),
     "metrics.jsonl line"),
])
def test_deeply_nested_json_in_a_run_is_refused_in_one_line(prog, damage, words, run, capsys):
    damage(run)
    argv = ["--out", run, "--resume", "--no-progress"] if prog == "train" else ["--run", run]
    rc, _, err = run_main(prog, argv, capsys)
    assert_one_line(rc, err, prog, [words])


@pytest.mark.parametrize("content, words", [
    ("{not json", "result.json is damaged (Expecting property name"),
    ('{"variant": "baseline", "seed": 0, "num_classes": 10}', "result.json is damaged (no test_top1, test_top5"),
    ("[1, 2]", "result.json is damaged"),
])
def test_a_damaged_result_in_an_ablation_study_names_the_file_and_the_way_out(content, words, tmp_path, capsys):
    from alexnet import ablations
    study = tmp_path / "study"
    (study / "baseline" / "seed0").mkdir(parents=True)
    (study / "baseline" / "seed0" / "result.json").write_text(content)
    capsys.readouterr()
    rc = ablations.main(["--out", str(study), "--variants", "baseline", "--seeds", "1", "--no-progress"])
    err = capsys.readouterr().err
    assert_one_line(rc, err, "ablations", [words, "delete it and the same command measures the finished run again"])


# -- found before the work, not after it ----------------------------------------------------------

def test_evaluate_into_a_folder_it_cannot_write_stops_before_evaluating(run, tmp_path, capsys):
    (tmp_path / "a-file").write_text("x")
    rc, out, err = run_main("evaluate", ["--run", run, "--out", tmp_path / "a-file" / "figs"], capsys)
    assert_one_line(rc, err, "evaluate", ["cannot write the confusion matrix's image into", "a-file/figs",
                                          "give --out a folder you can write to"])
    assert out == ""                        # before: the results, then a traceback


def test_evaluate_on_a_read_only_file_system_draws_its_figure_elsewhere_or_says_so(run, tmp_path, capsys,
                                                                                monkeypatch):
    ro = tmp_path / "ro"
    ro.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(ro)], capture_output=True).returncode:
        pytest.skip("needs permission to mount a tmpfs")
    try:
        import shutil
        shutil.copytree(run, ro / "run")
        subprocess.run(["mount", "-o", "remount,ro", str(ro)], check=True)
        monkeypatch.chdir(ro)                # runs/figures/ in the current folder: read-only too
        rc, out, err = run_main("evaluate", ["--run", ro / "run"], capsys)
        assert_one_line(rc, err, "evaluate", ["cannot write the confusion matrix's image into runs/figures/run",
                                              "Read-only file system", "pass --out DIR"])
        assert out == ""
        rc, out, err = run_main("evaluate", ["--run", ro / "run", "--out", tmp_path / "figs"], capsys)
        assert rc == 0 and (tmp_path / "figs" / "confusion_best.png").is_file(), err
    finally:
        monkeypatch.chdir(tmp_path)
        subprocess.run(["umount", str(ro)])


def _images(tmp, layout):
    """layout: {'train/a/0.png': 'ok' | 'junk'} -> an image folder."""
    for name, kind in layout.items():
        path = tmp / "ds" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if kind == "ok":
            Image.fromarray(np.full((36, 36, 3), 40 * len(name) % 256, np.uint8)).save(path)
        else:
            path.write_text("not an image\n")
    return tmp / "ds"


GOOD = {f"{s}/{c}/{i}.png": "ok" for s in ("train", "val") for c in "ab" for i in range(3)}


@pytest.mark.parametrize("layout, words", [
    ({**GOOD, "val/b/broken.png": "junk"}, ["val/b/broken.png: not a readable image (UnidentifiedImageError",
                                            "remove it, or pack the folder with `python -m alexnet.prepare`"]),
    ({**GOOD, "val/a/x.png": "junk", "val/b/y.png": "junk"},
     ["val/a/x.png: not a readable image", "; 1 more of the 8 files in val/ cannot be read either; remove them"]),
    ({**GOOD, "train/a/t.jpg": "junk"}, ["train/a/t.jpg: not a readable image"]),
    ({**{k: v for k, v in GOOD.items() if k.startswith("train")}, "val/a/": None}, ["its val split has no images"]),
])
def test_a_broken_or_empty_evaluation_split_is_found_before_training(layout, words, tmp_path, capsys):
    layout = {k: v for k, v in layout.items() if v is not None}
    (tmp_path / "ds" / "val" / "a").mkdir(parents=True)
    data = _images(tmp_path, layout)
    rc, _, err = run_main("train", ["--data", data, "--out", tmp_path / "r", "--batch-size", "2", "--max-steps", "1",
                                    "--no-progress"], capsys)
    assert_one_line(rc, err, "train", words)
    assert not (tmp_path / "r" / "checkpoints").exists()       # no step was trained


@pytest.mark.parametrize("images, labels, classes, error, words", [
    (np.full((2, 1, 4, 4), 0.5, np.float32), [0, 1], None, TypeError,
     "images must be uint8 pixel values 0..255, got float32 (if they are 0..1, pass (images * 255).round()"),
    (np.zeros((2, 1, 4, 4), np.int64), [0, 1], None, TypeError, "images must be uint8 pixel values 0..255, got int64"),
    (np.zeros((2, 1, 4, 4), np.uint8), [0, 3], ["a", "b"], ValueError,
     "label 3 has no class name: 2 classes were given, so labels must be 0..1"),
])
def test_an_array_dataset_that_would_be_read_wrongly_is_refused(images, labels, classes, error, words):
    from minidl.data import ArrayDataset
    with pytest.raises(error, match=words.replace("(", r"\(").replace(")", r"\)").replace("*", r"\*")):
        ArrayDataset(images, labels, classes)


# -- a systematic pass over every command's flags -------------------------------------------------

@pytest.mark.parametrize("argv, words", [
    (["filters", "--run", ""], ["argument --run: an empty path (an unset shell variable?)"]),   # was: "is required"
    (["predictions", "--run", "RUN", "--indices", ""], ["argument --indices: expected numbers separated by commas, "
                                                        "got ''"]),                  # was: "must be in 0..N, got"
    (["predictions", "--run", "RUN", "--seed", "-1"], ["argument --seed: must be >= 0, got -1"]),   # was a traceback
    (["filters", "--run", "RUN", "--out", "RUN"], ["is a folder; give the picture's file name, e.g. ",
                                                  "/figure.png"]),        # was: "cannot save ... without an extension"
    (["deconv", "--run", "RUN", "--out", "deconv.txt"], ["deconv.txt: cannot save a picture as .txt"]),
])
def test_visualize_refuses(argv, words, run, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    before = sorted(run.rglob("*"))
    rc, out, err = run_main("visualize", [str(run) if a == "RUN" else a for a in argv], capsys)
    assert_one_line(rc, err, "visualize", words)
    assert out == "" and sorted(run.rglob("*")) == before      # refused before any work


def test_a_subcommands_run_flag_expands_the_tilde_too(run, tmp_path, capsys, monkeypatch):
    import shutil
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    shutil.copytree(run, tmp_path / "home" / "r")
    rc, out, err = run_main("visualize", ["filters", "--run", "~/r"], capsys)
    assert rc == 0, err
    assert (tmp_path / "home" / "r" / "filters.png").is_file() and not (tmp_path / "~").exists()


def test_neighbours_says_how_many_it_found_when_k_is_more_than_it_searched(run, capsys):
    rc, out, err = run_main("visualize", ["neighbours", "--run", run, "--limit", "3", "--k", "6", "--queries", "2",
                                          "--no-progress"], capsys)
    assert rc == 0, err
    assert out.endswith(": 3 nearest of 3 training images for 2 test images (--k 6 asks for more than were "
                        "searched)\n")                                      # was: "6 nearest of 3"


@pytest.mark.parametrize("out, words", [
    ("ds", "the output folder is the image folder itself; give a folder of its own, e.g. "),
    ("ds/train/out", "the output folder is inside "),           # it became a class "out" of the next prepare
    ("ds/val", "the output folder is inside "),
])
def test_prepare_into_its_own_image_folder_is_refused(out, words, tmp_path, capsys):
    _tree(tmp_path / "ds", ["a", "b"])
    (tmp_path / "ds" / "val").mkdir()
    rc, _, err = run_main("prepare", [tmp_path / "ds", tmp_path / out], capsys)
    assert_one_line(rc, err, "prepare", [words])
    assert sorted(p.name for p in (tmp_path / "ds").iterdir()) == ["train", "val"]
    assert sorted(p.name for p in (tmp_path / "ds" / "train").iterdir()) == ["a", "b"]


def test_a_seed_whose_dropout_streams_a_checkpoint_cannot_store_is_refused(tmp_path, capsys):
    # 2**70 trained, then its own --resume was refused: the dropout seeds (seed * 1000 + place) pass 2**63
    rc, _, err = run_main("train", [*FAST, "--out", tmp_path / "r", "--seed", str(2 ** 70)], capsys)
    assert_one_line(rc, err, "train", ["argument --seed: must be 0 to 4294967295, got 1180591620717411303424"])
    from alexnet.settings import ConfigError, TrainConfig
    with pytest.raises(ConfigError, match="seed"):
        TrainConfig(seed=2 ** 40).check()
    from alexnet.model import build_model
    with pytest.raises(ValueError, match=r"AlexNet: seed must be in 0..4294967295, got 1099511627776"):
        build_model("mini", num_classes=10, seed=2 ** 40)


@pytest.mark.parametrize("line, words", [
    ('{"type": "epoch", "epoch": 1, "step": 20, "test_top1": NaN}', "line 4: it has no lr"),   # was a KeyError
    ('{"type": "epoch", "epoch": 1, "lr": "fast", "train_loss": 1, "train_acc": 0.5, "time": 1, "images_per_s": 9, '
     '"test_top1": 0.5, "test_top5": 0.9}', "line 4: its lr is 'fast', not a number"),
    ('{"step": 3, "test_top1": 0.5}', "line 4: it has no test_top5"),
    ("[1, 2]", "line 4 is not a metrics record; remove that line"),
])
def test_report_on_an_edited_metrics_file_names_the_line(line, words, run, capsys):
    lines = (run / "metrics.jsonl").read_text().splitlines()
    (run / "metrics.jsonl").write_text("\n".join(lines[:3] + [line] + lines[3:]) + "\n")
    from alexnet import report
    capsys.readouterr()
    rc = report.main(["--run", str(run)])
    assert_one_line(rc, capsys.readouterr().err, "report", ["metrics.jsonl " + words])


@pytest.mark.parametrize("make, words", [
    (lambda: md.SGD([], lr=0.1), "SGD: no parameters to update: the list is empty"),
    (lambda: (lambda gen: (list(gen), md.SGD(gen, lr=0.1)))(p for p in md.Linear(3, 2).parameters()),
     "a generator such as model.parameters() that was already used up"),
    (lambda: md.SoftmaxCrossEntropy().compute(np.ones(3, np.float32), np.zeros(3, np.int64)),
     "SoftmaxCrossEntropy: expected a 2-D logits (N, num_classes), got shape (3,)"),     # was "... ) , got"
])
def test_api_refuses_more(make, words):
    with pytest.raises(ValueError) as err:
        make()
    assert words in str(err.value)


@pytest.mark.parametrize("tree, words", [
    ({"a": [np.zeros(2)]}, "'a' is a list holding something other than numbers, strings and lists of them; put "
                           "arrays in a dict instead"),             # was: "... use arrays, numbers, strings or lists"
    ({"a": {1, 2}}, "'a' is a set, which cannot be stored without pickle"),
])
def test_checkpoint_save_says_what_a_list_may_hold(tree, words, tmp_path):
    from minidl import checkpoint
    with pytest.raises(TypeError) as err:
        checkpoint.save(tmp_path / "c.npz", tree)
    assert words in str(err.value)
    assert not (tmp_path / "c.npz").exists()
