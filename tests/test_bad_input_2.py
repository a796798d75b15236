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
