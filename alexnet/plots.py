"""Drawing to picture files: matplotlib set up for files, and the picture formats it can write."""

from __future__ import annotations

import os
import sys

from .cli import UserError


def pyplot():
    """matplotlib.pyplot, on the file-only Agg backend unless pyplot is already in use (a
    notebook's inline backend, an interactive session): then its backend is left as it is."""
    import matplotlib

    if "matplotlib.pyplot" not in sys.modules:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def image_format(path):
    """The picture format a file name asks for ('png', 'pdf', 'svg', ...), checked against matplotlib's."""
    from matplotlib.backend_bases import FigureCanvasBase

    ext = os.path.splitext(os.fspath(path))[1][1:].lower()
    known = FigureCanvasBase.get_supported_filetypes()
    if ext not in known:
        raise UserError(f"{path}: cannot save a picture as {'.' + ext if ext else 'a file without an extension'}; "
                        f"use one of {', '.join('.' + k for k in sorted(known))}")
    return ext
