"""Run the notebooks top to bottom.

    python notebooks/execute.py                 # full settings, outputs saved in place
    python notebooks/execute.py --quick         # MINIDL_QUICK=1, nothing saved (what CI runs)
    python notebooks/execute.py 03 08           # only the notebooks whose names start so

Each notebook runs in a fresh Python kernel in its own folder, as in Jupyter.
A notebook that writes files writes them into a temporary folder of its own
(removed when its kernel stops), so runs leave nothing next to the notebooks
and can be repeated. The stored notebooks carry the outputs of a
full-settings run; their first code cell prints which settings produced them.
"""

import argparse
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def notebook_paths(prefixes=()):
    """The numbered notebooks, in order, optionally only those starting with a prefix."""
    paths = sorted(p for p in HERE.glob("[0-9][0-9]_*.ipynb"))
    if prefixes:
        paths = [p for p in paths if any(p.name.startswith(x) for x in prefixes)]
    return paths


def execute(path, quick, workdir=None, timeout=None):
    """Execute the notebook at ``path`` in a new kernel; return the executed notebook.

    ``workdir``: the kernel's working directory (default: the notebook's
    folder). ``timeout``: seconds a cell may run (None: no limit). Raises nbclient's
    CellExecutionError (with the failing cell and traceback) on the first error.
    """
    import nbclient
    import nbformat

    nb = nbformat.read(path, as_version=4)
    env_before = os.environ.get("MINIDL_QUICK")
    os.environ["MINIDL_QUICK"] = "1" if quick else "0"  # the kernel inherits the environment
    try:
        client = nbclient.NotebookClient(
            nb, timeout=timeout, kernel_name="python3",
            resources={"metadata": {"path": str(workdir or Path(path).resolve().parent)}},
        )
        client.execute()
    finally:
        if env_before is None:
            os.environ.pop("MINIDL_QUICK", None)
        else:
            os.environ["MINIDL_QUICK"] = env_before
    return nb


def main(argv=None):
    import nbformat

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("prefixes", nargs="*", help="run only notebooks whose file names start with these")
    ap.add_argument("--quick", action="store_true", help="short settings (MINIDL_QUICK=1); outputs are not saved")
    args = ap.parse_args(argv)
    paths = notebook_paths(args.prefixes)
    if not paths:
        sys.exit(f"no notebook matches {args.prefixes} in {HERE}")
    for path in paths:
        t0 = time.perf_counter()
        nb = execute(path, args.quick)
        if not args.quick:
            nbformat.write(nb, path)
        print(f"{path.name}: {time.perf_counter() - t0:.1f} s{'' if args.quick else ', saved'}")


if __name__ == "__main__":
    main()
