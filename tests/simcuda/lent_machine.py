"""The conditions of a GPU machine lent for minutes, around the simulated CuPy: for rehearsals.

    env = lent_machine.prepare(root, dataset_files)     # then run commands with env=env

What the lent machine is (benchmarks/gpu_check.py is written for it): one GPU;
CuPy installed as the ``cupy-cuda13x`` package, with no ``cupy._sim`` (that is
the stand-in's control API, which tests must not need on a real GPU); no
network; no Fashion-MNIST except the copy brought along; an empty home
(no caches: no downloaded data, no compiled kernels); and not every package
the tests here have (no Jupyter). ``prepare`` builds that under ``root``:

- ``root/site``: the stand-in copied as an installed ``cupy`` (not under
  tests/simcuda, so nothing takes it for the simulator) with a
  ``cupy_cuda13x-14.2.0.dist-info``, and a ``sitecustomize.py`` that hides
  this machine's own copy of Fashion-MNIST and the Jupyter packages;
- ``root/home``: HOME, empty; ``root/kernels``: an empty kernel cache;
- ``root/carry/fashion-mnist``: the four dataset files, the only copy;
- the environment: one device, the control API hidden, a proxy that
  refuses every connection (no network, at once rather than after a
  timeout).

``python tests/simcuda/lent_machine.py ROOT`` prepares ROOT and prints the
environment variables to export.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
PACKAGE = "cupy-cuda13x"          # what the lent machine has (not cupy-cuda12x)
VERSION = "14.2.0"
MISSING = ("nbclient", "nbformat", "ipykernel", "jupyter_client")     # not installed there

SITECUSTOMIZE = '''\
"""Rehearsal of a lent GPU machine: hide what that machine does not have."""
import sys
from importlib.abc import MetaPathFinder
from importlib.machinery import PathFinder

MISSING = {missing!r}


class _LentMachine(MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in MISSING:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        if name != "minidl.data.fashion_mnist":
            return None
        spec = PathFinder.find_spec(name, path)       # this machine's copy of the dataset: not there
        if spec is not None:
            run = spec.loader.exec_module

            def exec_module(module):
                run(module)
                module.SYSTEM_DIRS = ()
            spec.loader.exec_module = exec_module
        return spec


sys.meta_path.insert(0, _LentMachine())
'''


def prepare(root, dataset_files, devices=1) -> dict:
    """Build the lent machine's conditions under ``root``; return the environment to run commands in."""
    root = Path(root)
    site = root / "site"
    shutil.copytree(HERE / "cupy", site / "cupy", ignore=shutil.ignore_patterns("__pycache__"))
    dist = site / f"{PACKAGE.replace('-', '_')}-{VERSION}.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {PACKAGE}\nVersion: {VERSION}\n")
    (dist / "top_level.txt").write_text("cupy\n")
    (dist / "INSTALLER").write_text("pip\n")
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE.format(missing=set(MISSING)))
    data = root / "carry" / "fashion-mnist"
    data.mkdir(parents=True)
    for f in dataset_files:
        shutil.copy(f, data)
    for d in ("home", "kernels", "tmp"):
        (root / d).mkdir()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SIMCUDA_", "MINIDL_", "PYTHON")) and k.lower() not in (*PROXIES, "no_proxy")}
    env.update({"PYTHONPATH": str(site), "HOME": str(root / "home"), "TMPDIR": str(root / "tmp"),
                "SIMCUDA_DEVICES": str(devices), "SIMCUDA_CONTROL": "0", "SIMCUDA_CACHE": str(root / "kernels"),
                **{p: NOWHERE for p in PROXIES}, **{p.upper(): NOWHERE for p in PROXIES}})
    return env


PROXIES = ("http_proxy", "https_proxy", "all_proxy")
NOWHERE = "http://127.0.0.1:9"      # the discard port: nothing listens, a connection is refused at once


def _main(argv):
    if len(argv) != 1:
        print("usage: python tests/simcuda/lent_machine.py ROOT", file=sys.stderr)
        return 2
    sys.path.insert(0, str(HERE.parents[1]))
    from minidl.data.fashion_mnist import find_fashion_mnist

    files = [p for split in ("train", "test") for p in (find_fashion_mnist(split) or ())]
    if len(files) != 4:
        print("lent_machine: Fashion-MNIST not found on this machine", file=sys.stderr)
        return 2
    env = prepare(argv[0], files)
    for key in sorted(set(env) - set(os.environ) | {k for k in env if os.environ.get(k) != env[k]}):
        print(f"export {key}={env[key]!s}")
    print(f"# the dataset: {Path(argv[0]) / 'carry' / 'fashion-mnist'}")
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
