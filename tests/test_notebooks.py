"""Every notebook runs top to bottom with the quick settings, and is stored with a full run's outputs."""

import importlib.util
import json
import os
from pathlib import Path

import pytest

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
_spec = importlib.util.spec_from_file_location("notebook_execute", NOTEBOOKS / "execute.py")
execute = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(execute)

PATHS = execute.notebook_paths()
EXPECTED = [f"{i:02d}" for i in range(13)]


def test_the_thirteen_notebooks_are_there_in_order():
    assert [p.name[:2] for p in PATHS] == EXPECTED


def test_readme_links_every_notebook_in_order():
    readme = (NOTEBOOKS.parent / "README.md").read_text()
    positions = [readme.find(f"notebooks/{p.name}") for p in PATHS]
    assert all(pos >= 0 for pos in positions), [p.name for p, pos in zip(PATHS, positions) if pos < 0]
    assert positions == sorted(positions)


def _code_cells(path):
    nb = json.loads(path.read_text())
    return nb, [c for c in nb["cells"] if c["cell_type"] == "code"]


@pytest.mark.parametrize("path", PATHS, ids=[p.stem for p in PATHS])
def test_stored_outputs_come_from_one_full_run(path):
    nb, cells = _code_cells(path)
    assert nb["metadata"].get("kernelspec", {}).get("name") == "python3"
    # executed once, top to bottom, without an error
    assert [c["execution_count"] for c in cells] == list(range(1, len(cells) + 1))
    for c in cells:
        assert not [o for o in c["outputs"] if o["output_type"] == "error"], c["source"]
    # with the full settings: the first code cell says which
    first = "".join(o.get("text", "") if isinstance(o.get("text", ""), str) else "".join(o["text"])
                    for o in cells[0]["outputs"])
    assert "MINIDL_QUICK" in "".join(cells[0]["source"])
    assert "full settings" in first


def test_notebooks_do_not_paste_library_code():
    # layers and kernels live in the packages: no class or forward/backward defined in a cell
    for path in PATHS:
        _, cells = _code_cells(path)
        for c in cells:
            src = "".join(c["source"])
            assert "class " not in src and "def backward" not in src, (path.name, src[:200])


def _repository_files():
    """Every file under the repository (but .git and __pycache__), as relative paths."""
    root = NOTEBOOKS.parent
    found = set()
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d not in (".git", "__pycache__")]
        found.update(os.path.relpath(os.path.join(folder, f), root) for f in files)
    return found


def _writes_files(path):
    return "os.chdir(work_dir.name)" in path.read_text()


def test_notebooks_that_write_files_write_them_in_a_temporary_folder():
    writers = [p.name[:2] for p in PATHS if _writes_files(p)]
    assert writers == ["08", "09", "10"]


@pytest.mark.slow
@pytest.mark.parametrize("path", PATHS, ids=[p.stem for p in PATHS])
def test_runs_with_quick_settings_in_place_and_leaves_no_file(path):
    """Run in its own folder, as in Jupyter; again where it writes files (a second run must start afresh)."""
    before = _repository_files()
    for _ in range(2 if _writes_files(path) else 1):
        nb = execute.execute(path, quick=True, timeout=300)
        cells = [c for c in nb.cells if c.cell_type == "code"]
        text = "".join(o.get("text", "") for o in cells[0].outputs)
        assert "quick settings" in text
        assert _repository_files() == before, sorted(_repository_files() ^ before)
