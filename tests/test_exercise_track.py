"""The exercise track (notebooks/exercises/): every grader against the solution, the blank, the
typical mistakes of tests/exercise_cases/ and a bypass through minidl's own code; the blocking that
makes the bypass fail; the notebooks as stored (blank) and with the solutions; the command line.

Notebooks run in this process, cell by cell in one namespace, with the exercises folder as working
directory and on sys.path (as a Jupyter kernel started there would), never in a kernel: too slow here.
"""

import ast
import importlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from contextlib import redirect_stdout
from pathlib import Path

import numpy as np
import pytest

from minidl.data.fashion_mnist import find_fashion_mnist

ROOT = Path(__file__).resolve().parent.parent
EXERCISES = ROOT / "notebooks" / "exercises"
SOLUTIONS = EXERCISES / "solutions" / "mydl"
BLANK = EXERCISES / "mydl"
sys.path.insert(0, str(EXERCISES))
import grade as grade_module  # noqa: E402
from graders import EXERCISES as TRACK  # noqa: E402
from graders import ExerciseFailed, blank_source, minidl_blocked  # noqa: E402

NUMBERS = list(TRACK)
HAS_FASHION_MNIST = find_fashion_mnist("train") is not None and find_fashion_mnist("test") is not None
CAPSTONE = NUMBERS[-1]


def _cases(number):
    return importlib.import_module(f"exercise_cases.ex{number}")


def _all_mistakes():
    for number in NUMBERS:
        for what, where, source, words in _cases(number).MISTAKES:
            yield pytest.param(number, where, source, words, id=f"{number}-{what}")


def patch_function(folder, where, source):
    """Replace ``file.py:Class.method`` (or ``file.py:function``) in the mydl copy at ``folder``."""
    filename, dotted = where.split(":")
    path = folder / filename
    text = path.read_text(encoding="utf-8")
    tree = ast.parse(text)
    node, body = None, tree.body
    for part in dotted.split("."):
        node = next(n for n in body if isinstance(n, (ast.ClassDef, ast.FunctionDef)) and n.name == part)
        body = node.body
    lines = text.splitlines(keepends=True)
    start = min([node.lineno] + [d.lineno for d in node.decorator_list]) - 1
    new = textwrap.indent(textwrap.dedent(source).strip("\n") + "\n", " " * node.col_offset)
    path.write_text("".join(lines[:start]) + new + "".join(lines[node.end_lineno:]), encoding="utf-8")


@pytest.fixture
def solution_copy(tmp_path):
    folder = tmp_path / "mydl"
    shutil.copytree(SOLUTIONS, folder, ignore=shutil.ignore_patterns("__pycache__"))
    return folder


def _grade(number, folder):
    out = io.StringIO()
    with redirect_stdout(out):
        TRACK[number].grade(folder)
    return out.getvalue()


# -- the track's shape ----------------------------------------------------------

def test_the_track_has_at_least_twelve_exercises_in_order_each_with_its_notebook():
    assert len(NUMBERS) >= 12
    assert NUMBERS == [f"{i:02d}" for i in range(1, len(NUMBERS) + 1)]
    for number, exercise in TRACK.items():
        assert exercise.TITLE and exercise.WRITES and exercise.MINUTES > 0
        notebooks = sorted(EXERCISES.glob(f"{number}_*.ipynb"))
        assert len(notebooks) == 1, f"exercise {number} needs one notebook, found {notebooks}"


@pytest.mark.parametrize("number", NUMBERS)
def test_each_hint_points_at_a_section_of_a_teaching_notebook_not_at_code(number):
    notebook_name, _, section = TRACK[number].NOTEBOOK.partition(", section ")
    teaching = ROOT / "notebooks" / notebook_name
    assert teaching.is_file(), f"exercise {number}'s hint names {notebook_name}, which does not exist"
    headings = [line.lstrip("#").strip() for cell in json.loads(teaching.read_text())["cells"]
                if cell["cell_type"] == "markdown" for line in "".join(cell["source"]).splitlines()
                if line.startswith("#")]
    for name in section.split('", "'):
        assert name.strip('"') in headings, f"{notebook_name} has no section {name}"
    hint = "".join(c for cell in _cells(number) if "hint" in cell["metadata"].get("tags", [])
                   for c in cell["source"])
    assert notebook_name in hint and "solutions" not in hint and "minidl/" not in hint


def test_the_readme_gives_each_exercise_in_order_with_its_time():
    readme = (EXERCISES / "README.md").read_text(encoding="utf-8")
    rows = [line for line in readme.splitlines() if line.startswith("| ") and line[2:4].isdigit()]
    assert [row[2:4] for row in rows] == NUMBERS
    for row, (number, exercise) in zip(rows, TRACK.items()):
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert f"({_notebook_path(number).name})" in cells[1] and cells[3] == str(exercise.MINUTES), row


def test_the_blank_mydl_is_the_solution_with_each_exercise_cut_out():
    solution_files = sorted(p.name for p in SOLUTIONS.glob("*.py"))
    assert solution_files == sorted(p.name for p in BLANK.glob("*.py"))
    seen = set()
    for name in solution_files:
        solution = (SOLUTIONS / name).read_text(encoding="utf-8")
        assert (BLANK / name).read_text(encoding="utf-8") == blank_source(solution), (
            f"notebooks/exercises/mydl/{name} is not the blank of solutions/mydl/{name}: run "
            "python notebooks/exercises/graders/make_blank.py notebooks/exercises/mydl")
        seen |= {line.split()[3].rstrip(":") for line in solution.splitlines() if "# >>> exercise" in line}
    assert seen == set(NUMBERS), "every exercise leaves code to write in mydl, and only those"


def test_nothing_in_mydl_or_its_solution_uses_minidl():
    for folder in (SOLUTIONS, BLANK):
        for path in folder.glob("*.py"):
            assert "minidl" not in path.read_text(encoding="utf-8").replace("mydl", ""), path


# -- each grader: blank, mistakes, bypass -----------------------------------------

@pytest.mark.parametrize("number", NUMBERS)
def test_the_blank_fails_saying_it_is_not_written(number):
    with pytest.raises(ExerciseFailed, match=f"not written yet.*exercise {number}"):
        _grade(number, BLANK)


@pytest.mark.parametrize("number", NUMBERS)
def test_each_grader_names_at_least_three_typical_mistakes(number):
    named = {words for *_, words in _cases(number).MISTAKES}
    assert len(named) >= 3


@pytest.mark.parametrize("number, where, source, words", list(_all_mistakes()))
def test_a_typical_mistake_fails_and_is_named(number, where, source, words, solution_copy):
    patch_function(solution_copy, where, source)
    with pytest.raises(ExerciseFailed) as failure:
        _grade(number, solution_copy)
    message = str(failure.value)
    assert words in message
    assert "\n" not in message
    # where and by how much, never the right numbers: no value is printed to more than 3 significant digits
    for number in re.findall(r"\d+\.\d+", message):
        assert len(number.replace(".", "").lstrip("0")) <= 3, (number, message)


@pytest.mark.parametrize("number", NUMBERS)
def test_calling_minidl_instead_of_writing_it_fails_with_the_blocking_message(number, solution_copy):
    where, source = _cases(number).BYPASS
    patch_function(solution_copy, where, source)
    with pytest.raises(ExerciseFailed, match="the grader blocked minidl"):
        _grade(number, solution_copy)


# -- the blocking itself -----------------------------------------------------------

def test_a_minidl_function_imported_by_name_before_grading_is_blocked_and_works_again_after():
    from minidl.kernels.reference import col2im, im2col
    from minidl.layers import MaxPool2D
    x = np.arange(16.0).reshape(1, 1, 4, 4)
    before = im2col(x, 2, 2, 2, 0)
    with minidl_blocked("05") as block:
        with pytest.raises(Exception, match="the grader blocked minidl.kernels.reference.im2col"):
            im2col(x, 2, 2, 2, 0)
        with pytest.raises(Exception, match="blocked minidl.layers.pool.MaxPool2D.__init__"):
            MaxPool2D(3, 2)
    assert block.hits[0] == "minidl.kernels.reference.im2col"
    np.testing.assert_array_equal(im2col(x, 2, 2, 2, 0), before)
    np.testing.assert_array_equal(col2im(before, x.shape, 2, 2, 2, 0), x)


def test_a_learner_who_catches_the_blocking_error_still_fails(solution_copy):
    patch_function(solution_copy, "linear.py:Linear.forward", '''
def forward(self, x):
    try:
        import minidl as md
        md.Linear(2, 2)
    except Exception:
        pass
    self.x = x
    return x @ self.weight.data.T + self.bias.data
''')
    with pytest.raises(ExerciseFailed, match="error was caught inside your code"):
        _grade("01", solution_copy)


def test_minidl_is_whole_again_after_a_failed_grading(solution_copy):
    import minidl as md
    where, source = _cases("01").BYPASS
    patch_function(solution_copy, where, source)
    with pytest.raises(ExerciseFailed):
        _grade("01", solution_copy)
    layer = md.Linear(3, 2)
    assert layer.forward(np.ones((1, 3), np.float32)).shape == (1, 2)


def test_an_error_in_the_learners_code_is_one_line_with_its_place(solution_copy):
    patch_function(solution_copy, "linear.py:Linear.forward", '''
def forward(self, x):
    return x @ self.weight.data
''')
    with pytest.raises(ExerciseFailed) as failure:
        _grade("01", solution_copy)
    message = str(failure.value)
    assert "Linear.forward raised ValueError" in message and "mydl/linear.py line" in message
    assert "\n" not in message


def test_an_exercise_that_needs_an_earlier_one_says_which(solution_copy):
    shutil.copy(BLANK / "im2col.py", solution_copy / "im2col.py")
    with pytest.raises(ExerciseFailed, match="needs exercise 05, which is not written yet"):
        _grade("07", solution_copy)


# -- notebooks ------------------------------------------------------------------------

def _notebook_path(number):
    return next(EXERCISES.glob(f"{number}_*.ipynb"))


def _cells(number):
    return json.loads(_notebook_path(number).read_text(encoding="utf-8"))["cells"]


@pytest.mark.parametrize("number", NUMBERS)
def test_the_notebooks_are_stored_blank(number):
    code = [c for c in _cells(number) if c["cell_type"] == "code"]
    assert any("grader" in c["metadata"].get("tags", []) for c in code)
    for cell in code:
        assert cell["outputs"] == [] and cell["execution_count"] is None


@pytest.fixture
def in_exercises(monkeypatch):
    import matplotlib
    matplotlib.use("Agg")
    monkeypatch.chdir(EXERCISES)
    monkeypatch.syspath_prepend(str(EXERCISES))


def _run_notebook(number):
    """Each code cell's outcome (None or the exception) and the printed text."""
    ns = {"__name__": "__main__"}
    results, out = [], io.StringIO()
    with redirect_stdout(out):
        for i, cell in enumerate(c for c in _cells(number) if c["cell_type"] == "code"):
            try:
                exec(compile("".join(cell["source"]), f"<exercise {number} cell {i}>", "exec"), ns)
                results.append((cell, None))
            except Exception as exc:  # noqa: BLE001 (each cell's outcome is what is tested)
                results.append((cell, exc))
    return results, out.getvalue()


def _learners(cell):
    return {"grader", "yours"} & set(cell["metadata"].get("tags", []))


@pytest.mark.parametrize("number", NUMBERS)
def test_as_stored_each_notebook_runs_up_to_its_grader_which_fails(number, in_exercises, monkeypatch):
    monkeypatch.delenv("MYDL", raising=False)
    results, _ = _run_notebook(number)
    for cell, exc in results:
        if _learners(cell):
            assert isinstance(exc, (ExerciseFailed, NotImplementedError)), (cell["source"], exc)
        else:
            assert exc is None, (cell["source"], exc)


@pytest.mark.parametrize("number", [n for n in NUMBERS if n != CAPSTONE])
def test_with_the_solutions_each_notebook_passes(number, in_exercises, monkeypatch):
    monkeypatch.setenv("MYDL", str(SOLUTIONS))
    results, printed = _run_notebook(number)
    for cell, exc in results:
        assert exc is None, ("".join(cell["source"]), exc)
    assert f"PASSED exercise {number}" in printed


@pytest.mark.skipif(not HAS_FASHION_MNIST, reason="needs Fashion-MNIST on disk")
def test_with_the_solutions_the_capstone_trains_to_its_stated_accuracy(in_exercises, monkeypatch):
    monkeypatch.setenv("MYDL", str(SOLUTIONS))
    results, printed = _run_notebook(CAPSTONE)
    for cell, exc in results:
        assert exc is None, ("".join(cell["source"]), exc)
    assert f"PASSED exercise {CAPSTONE}" in printed


# -- the command line ---------------------------------------------------------------

def _cli(*args):
    return subprocess.run([sys.executable, "-m", "notebooks.exercises.grade", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=300, env={**os.environ, "MYDL": ""})


def test_the_command_line_grades_passes_and_fails_in_one_line():
    ok = _cli("01", "02", "--mydl", str(SOLUTIONS))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.count("PASSED") == 2
    blank = _cli("1")
    assert blank.returncode == 1
    assert blank.stdout.strip().startswith("FAILED exercise 01: Linear.forward is not written yet")
    assert len(blank.stdout.strip().splitlines()) == 1 and blank.stderr == ""


@pytest.mark.parametrize("args, words", [
    (["99"], "there is no exercise '99'"),
    (["01", "--mydl", "/nonexistent/mydl"], "no mydl package at /nonexistent/mydl"),
])
def test_the_command_line_refuses_bad_input_in_one_line(args, words):
    result = _cli(*args)
    assert result.returncode == 2
    assert words in result.stderr and len(result.stderr.strip().splitlines()) == 1
