"""The exercise notebooks (notebooks/exercises/): stored blank, failing as stored, passing with the
solutions, and graders that catch the usual mistakes.

Notebooks run in this process, cell by cell in one namespace with the exercises folder as working
directory and on sys.path (as Jupyter would run them), never in a kernel: that is too slow here.
"""

import ast
import importlib.util
import io
import json
import sys
from contextlib import redirect_stdout
from pathlib import Path

import numpy as np
import pytest

import minidl as md
from minidl.data.fashion_mnist import find_fashion_mnist

EXERCISES = Path(__file__).resolve().parent.parent / "notebooks" / "exercises"
PATHS = sorted(EXERCISES.glob("[0-9][0-9]_*.ipynb"))
IDS = [p.stem for p in PATHS]

_spec = importlib.util.spec_from_file_location("grader", EXERCISES / "grader.py")
grader = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(grader)

HAS_FASHION_MNIST = find_fashion_mnist("train") is not None and find_fashion_mnist("test") is not None
needs_fashion_mnist = pytest.mark.skipif(not HAS_FASHION_MNIST, reason="needs Fashion-MNIST on disk")


def _notebook(path):
    return json.loads(path.read_text(encoding="utf-8"))


def _code_cells(path):
    return [c for c in _notebook(path)["cells"] if c["cell_type"] == "code"]


def _tagged(cell, tag):
    return tag in cell["metadata"].get("tags", [])


def _solution_sections(path):
    """The solution file's cells: the text after each '# %% exercise' line, in order."""
    text = (EXERCISES / "solutions" / f"{path.stem}.py").read_text(encoding="utf-8")
    parts = text.split("\n# %% exercise\n")
    return parts[1:]


def _defined_names(source):
    return sorted(node.name for node in ast.parse(source).body if isinstance(node, ast.FunctionDef))


@pytest.fixture
def in_exercises(monkeypatch):
    """Working directory and sys.path as in a Jupyter kernel started in the exercises folder."""
    import matplotlib
    matplotlib.use("Agg")
    monkeypatch.chdir(EXERCISES)
    monkeypatch.syspath_prepend(str(EXERCISES))
    monkeypatch.setitem(sys.modules, "grader", grader)     # one copy: the data subset is loaded once


def _run_cells(sources, path):
    """Exec each source in one namespace; returns [(source, exception or None)] and the printed text."""
    ns = {"__name__": "__main__"}
    results, out = [], io.StringIO()
    with redirect_stdout(out):
        for i, src in enumerate(sources):
            try:
                exec(compile(src, f"<{path.name} code cell {i}>", "exec"), ns)
                results.append((src, None))
            except Exception as exc:  # noqa: BLE001 (each cell's outcome is what is tested)
                results.append((src, exc))
    return results, out.getvalue()


def _skip_without_data(path):
    if "load_fashion_subset" in path.read_text(encoding="utf-8") and not HAS_FASHION_MNIST:
        pytest.skip("needs Fashion-MNIST on disk")


# -- the notebooks as stored ------------------------------------------------------

def test_at_least_five_exercises_each_with_a_solution_and_a_readme_entry():
    assert len(PATHS) >= 5
    readme = (EXERCISES / "README.md").read_text(encoding="utf-8")
    for path in PATHS:
        assert (EXERCISES / "solutions" / f"{path.stem}.py").is_file(), path.name
        assert path.name in readme and f"solutions/{path.stem}.py" in readme, path.name


@pytest.mark.parametrize("path", PATHS, ids=IDS)
def test_stored_blank_and_clean(path):
    nb = _notebook(path)
    assert nb["nbformat"] == 4 and nb["metadata"]["kernelspec"]["name"] == "python3"
    cells = _code_cells(path)
    assert all(c["outputs"] == [] and c["execution_count"] is None for c in cells)
    exercises = [c for c in cells if _tagged(c, "exercise")]
    graders = [c for c in cells if _tagged(c, "grader")]
    assert exercises and graders
    for c in exercises:
        assert "raise NotImplementedError(" in "".join(c["source"])
    for c in graders:
        assert "grader.check_" in "".join(c["source"])
    # every exercise cell is followed by a grader cell before the next exercise
    kinds = ["e" if _tagged(c, "exercise") else "g" if _tagged(c, "grader") else "" for c in cells]
    order = "".join(kinds)
    assert order.endswith("g") and "ee" not in order, order


@pytest.mark.parametrize("path", PATHS, ids=IDS)
def test_solution_defines_what_the_exercise_cells_define(path):
    stubs = [c for c in _code_cells(path) if _tagged(c, "exercise")]
    sections = _solution_sections(path)
    assert len(sections) == len(stubs)
    for stub, solution in zip(stubs, sections):
        names = _defined_names("".join(stub["source"]))
        assert names and names == _defined_names(solution)


@pytest.mark.parametrize("path", PATHS, ids=IDS)
def test_with_the_solutions_every_grader_passes(path, in_exercises):
    _skip_without_data(path)
    sections = iter(_solution_sections(path))
    cells = _code_cells(path)
    sources = [next(sections) if _tagged(c, "exercise") else "".join(c["source"]) for c in cells]
    results, printed = _run_cells(sources, path)
    for src, exc in results:
        assert exc is None, f"{src[:80]!r} raised {exc!r}"
    assert printed.count("PASSED") == sum(_tagged(c, "grader") for c in cells), printed


@pytest.mark.parametrize("path", PATHS, ids=IDS)
def test_as_stored_every_grader_fails_with_an_assertion(path, in_exercises):
    _skip_without_data(path)
    cells = _code_cells(path)
    results, printed = _run_cells(["".join(c["source"]) for c in cells], path)
    assert "PASSED" not in printed
    for cell, (src, exc) in zip(cells, results):
        if _tagged(cell, "grader"):
            # the stub's NotImplementedError, turned into an AssertionError by the grader
            assert isinstance(exc, AssertionError), (src, exc)
            assert isinstance(exc.__cause__, NotImplementedError)
            assert "still raises NotImplementedError" in str(exc)
        else:
            assert exc is None, (src, exc)


# -- each grader catches a plausible mistake ------------------------------------------

def _fails(check, *fns, match):
    with pytest.raises(AssertionError, match=match):
        check(*fns)


def _col2im(assign):
    def col2im(col, x_shape, kh, kw, stride, pad, crop=True):
        n, c, h, w = x_shape
        oh, ow = (h + 2 * pad - kh) // stride + 1, (w + 2 * pad - kw) // stride + 1
        col = col.reshape(c, kh, kw, n, oh, ow)
        xpad = np.zeros((n, c, h + 2 * pad, w + 2 * pad))
        for i in range(kh):
            for j in range(kw):
                assign(xpad[:, :, i:i + stride * oh:stride, j:j + stride * ow:stride],
                       col[:, i, j].transpose(1, 0, 2, 3))
        return xpad[:, :, pad:pad + h, pad:pad + w]
    return col2im


def _add(view, v):
    view += v


def _set(view, v):
    view[...] = v


def test_col2im_grader():
    grader.check_col2im(_col2im(_add))                         # the helper itself is right
    _fails(grader.check_col2im, _col2im(_set), match=r"not the adjoint.*overlap.*\+=")   # overwrites

    def uncropped(col, s, kh, kw, stride, pad):                # padding not cropped off
        return _col2im(_add)(col, (s[0], s[1], s[2] + 2 * pad, s[3] + 2 * pad), kh, kw, stride, 0)
    _fails(grader.check_col2im, uncropped, match="returned shape")

    def swapped(col, s, kh, kw, stride, pad):                  # columns read as (oy, ox, n)
        oh, ow = (s[2] + 2 * pad - kh) // stride + 1, (s[3] + 2 * pad - kw) // stride + 1
        col = col.reshape(-1, oh, ow, s[0]).transpose(0, 3, 1, 2).reshape(col.shape)
        return _col2im(_add)(col, s, kh, kw, stride, pad)
    _fails(grader.check_col2im, swapped, match="not the adjoint.*order of col's rows")


def _maxpool_backward(mode="accumulate"):
    def maxpool_backward(dy, x, kernel_size=3, stride=2):
        n, c, oh, ow = dy.shape
        k = kernel_size
        dx = np.zeros(x.shape, dtype=dy.dtype)
        rows, chans = np.meshgrid(np.arange(n), np.arange(c), indexing="ij")
        for oy in range(oh):
            for ox in range(ow):
                if mode == "average":            # average-pooling's backward: spread over the window
                    dx[:, :, oy * stride:oy * stride + k, ox * stride:ox * stride + k] += \
                        dy[:, :, oy, ox, None, None] / (k * k)
                    continue
                window = x[:, :, oy * stride:oy * stride + k, ox * stride:ox * stride + k].reshape(n, c, k * k)
                i, j = np.divmod(window.argmax(axis=2), k)
                at = (rows, chans, oy * stride + i, ox * stride + j)
                if mode == "accumulate":
                    dx[at] += dy[:, :, oy, ox]
                else:                            # overwrites what an earlier window sent
                    dx[at] = dy[:, :, oy, ox]
        return dx
    return maxpool_backward


def test_maxpool_backward_grader():
    grader.check_maxpool_backward(_maxpool_backward())
    _fails(grader.check_maxpool_backward, _maxpool_backward("overwrite"),
           match="maximum of two or more overlapping windows.*\\+=")
    _fails(grader.check_maxpool_backward, _maxpool_backward("average"),
           match="gradcheck fails.*relative error.*position of that window's maximum")


def _lrn_backward(cross=True, alpha_over_n=True, mirrored=True):
    return lambda dy, a, size, alpha, beta, k: grader._lrn_variant(
        dy, a, size, alpha, beta, k, cross=cross, alpha_over_n=alpha_over_n, mirrored=mirrored)


def test_lrn_backward_grader():
    grader.check_lrn_backward(_lrn_backward())
    _fails(grader.check_lrn_backward, _lrn_backward(cross=False), match="gradcheck fails.*cross term")
    _fails(grader.check_lrn_backward, _lrn_backward(alpha_over_n=False), match="alpha in place of alpha/n")
    _fails(grader.check_lrn_backward, _lrn_backward(mirrored=False), match=r"size=4.*mirrored")

    def wrong_sign(dy, a, size, alpha, beta, k):                 # cross term added instead of subtracted
        direct = _lrn_backward(cross=False)(dy, a, size, alpha, beta, k)
        return 2 * direct - _lrn_backward()(dy, a, size, alpha, beta, k)
    _fails(grader.check_lrn_backward, wrong_sign, match="max error")


def test_sgd_graders():
    grader.check_sgd_step(lambda w, v, g, lr, momentum, weight_decay: (
        w + (momentum * v - weight_decay * lr * w - lr * g), momentum * v - weight_decay * lr * w - lr * g))

    def decay_not_scaled(w, v, g, lr, momentum, weight_decay):
        v = momentum * v - weight_decay * w - lr * g
        return w + v, v
    _fails(grader.check_sgd_step, decay_not_scaled, match="step 1 .*scaled by the learning rate")

    def old_velocity(w, v, g, lr, momentum, weight_decay):
        return w + v, momentum * v - weight_decay * lr * w - lr * g
    _fails(grader.check_sgd_step, old_velocity, match="new velocity")

    grader.check_sgd_by_hand(lambda: (1.8999, 1.859715))
    _fails(grader.check_sgd_by_hand, lambda: (1.899, 1.8585), match="w1 .*scaled by the learning rate")
    _fails(grader.check_sgd_by_hand, lambda: (1.8999, 1.8597), match="w2 should be 1.859715005")


def _two_tower(groups=(2, 1, 2), lrn=False, init=True):
    """conv1 then three convolutions with the given groups; LRN after the first tower layer if asked."""
    def build(seed=0):
        layers = [md.Conv2D(1, 8, 5, padding=2), md.ReLU(), md.MaxPool2D(3, 2),
                  md.Conv2D(8, 16, 3, padding=1, groups=groups[0]), md.ReLU()]
        layers += [md.LocalResponseNorm(5, 1.0, 0.75, 1.0)] if lrn else []
        layers += [md.Conv2D(16, 16, 3, padding=1, groups=groups[1]), md.ReLU(), md.MaxPool2D(3, 2),
                   md.Conv2D(16, 16, 3, padding=1, groups=groups[2]), md.ReLU(), md.Flatten(), md.Linear(576, 10)]
        model = md.Sequential(*layers)
        rng = np.random.default_rng(seed)
        for name, p in model.named_parameters():
            if init and name.endswith("weight"):
                md.init.he_normal_(p, rng=rng)
        return model
    return build


def test_two_tower_structure_grader():
    grader.check_two_tower_net(_two_tower())
    _fails(grader.check_two_tower_net, _two_tower(groups=(1, 1, 1)), match="all read both towers")     # one tower
    _fails(grader.check_two_tower_net, _two_tower(groups=(2, 2, 2)), match="no convolution .* reads both")
    _fails(grader.check_two_tower_net, _two_tower(groups=(1, 2, 2)), match="must sit between tower layers")
    _fails(grader.check_two_tower_net, _two_tower(lrn=True), match="LocalResponseNorm.*before the exchange")
    _fails(grader.check_two_tower_net, _two_tower(init=False), match="are the weights initialised")
    _fails(grader.check_two_tower_net, lambda seed=0: _two_tower()(seed)[3], match="md.Sequential")


@needs_fashion_mnist
def test_two_tower_training_grader_fails_a_net_that_does_not_learn():
    # a training loop that never updates: a He-initialised net is at chance
    with pytest.raises(AssertionError, match="test accuracy .* is below 65%"):
        grader.check_two_tower_training(_two_tower(), lambda model, images, labels: None)
