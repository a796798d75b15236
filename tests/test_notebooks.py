"""Every notebook runs top to bottom with the quick settings, and is stored with a full run's outputs."""

import importlib.util
import json
from pathlib import Path

import pytest

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
_spec = importlib.util.spec_from_file_location("notebook_execute", NOTEBOOKS / "execute.py")
execute = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(execute)

PATHS = execute.notebook_paths()
EXPECTED = [f"{i:02d}" for i in range(11)]


def test_the_eleven_notebooks_are_there_in_order():
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


@pytest.mark.slow
@pytest.mark.parametrize("path", PATHS, ids=[p.stem for p in PATHS])
def test_runs_with_quick_settings(path, tmp_path):
    nb = execute.execute(path, quick=True, workdir=tmp_path, timeout=300)
    _, cells = nb, [c for c in nb.cells if c.cell_type == "code"]
    text = "".join(o.get("text", "") for o in cells[0].outputs)
    assert "quick settings" in text
