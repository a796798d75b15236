"""The figures the commands draw, each written to a picture file, and the matplotlib setup they share."""

from __future__ import annotations

import os
import sys

import numpy as np

from minidl.atomic import atomic_write
from minidl.backend import asnumpy

from .cli import UserError, display_name


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
    if os.path.isdir(path):
        raise UserError(f"{path} is a folder; give the picture's file name, e.g. {os.path.join(path, 'figure.png')}")
    if ext not in known:
        raise UserError(f"{path}: cannot save a picture as {'.' + ext if ext else 'a file without an extension'}; "
                        f"use one of {', '.join('.' + k for k in sorted(known))}")
    return ext


def _save(fig, out):
    plt = pyplot()
    out = os.fspath(out)
    with atomic_write(out) as f:
        fig.savefig(f, format=image_format(out), dpi=100)
    plt.close(fig)
    return out


def _display(img, order="rgb"):
    """(C, H, W) array -> (H, W) or (H, W, 3) in [0, 1] for imshow (min-max over the whole image)."""
    a = np.asarray(asnumpy(img), np.float64)
    lo, hi = a.min(), a.max()
    a = (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)
    if a.shape[0] == 1:
        return a[0]
    if order == "bgr":
        a = a[::-1]
    return a.transpose(1, 2, 0)


def _uint8_display(img):
    """uint8 (C, H, W) dataset image -> imshow array."""
    a = np.asarray(img)
    return a[0] if a.shape[0] == 1 else a.transpose(1, 2, 0)


def _imshow(ax, arr, **kw):
    if arr.ndim == 2:
        kw.setdefault("cmap", "gray")
    ax.imshow(arr, interpolation="nearest", **kw)
    ax.set_xticks([])
    ax.set_yticks([])


# ---------------------------------------------------------------------------
# training curves (alexnet.train)


def plot_curves(history, title, path):
    """Loss and accuracy per epoch, train and test, from a run's epoch records (curves.png)."""
    if not history:
        return
    plt = pyplot()
    ep = [r["epoch"] for r in history]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
    a1.plot(ep, [r["train_loss"] for r in history], "o-", label="train")
    if any("test_loss" in r for r in history):
        a1.plot([r["epoch"] for r in history if "test_loss" in r],
                [r["test_loss"] for r in history if "test_loss" in r], "s-", label="test")
    a1.set_xlabel("epoch")
    a1.set_ylabel("cross-entropy loss")
    a1.legend()
    a2.plot(ep, [100 * r["train_acc"] for r in history], "o-", label="train (augmented, dropout)")
    tested = [r for r in history if "test_top1" in r]
    if tested:
        a2.plot([r["epoch"] for r in tested], [100 * r["test_top1"] for r in tested], "s-", label="test top-1")
    a2.set_xlabel("epoch")
    a2.set_ylabel("accuracy (%)")
    a2.legend()
    fig.suptitle(title)
    fig.tight_layout()
    with atomic_write(path) as f:
        fig.savefig(f, format="png", dpi=100)
    plt.close(fig)


# ---------------------------------------------------------------------------
# confusion matrix (alexnet.evaluate)


def plot_confusion(confusion, classes, path, title=""):
    plt = pyplot()
    classes = [display_name(c) for c in classes]
    k = len(classes)
    fig, ax = plt.subplots(figsize=(1.0 + 0.6 * k, 0.8 + 0.55 * k))
    rates = confusion / np.maximum(confusion.sum(axis=1, keepdims=True), 1)
    ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(k), classes, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(k), classes, fontsize=8)
    for i in range(k):
        for j in range(k):
            if confusion[i, j]:
                ax.text(j, i, str(confusion[i, j]), ha="center", va="center", fontsize=6,
                        color="white" if rates[i, j] > 0.5 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    with atomic_write(path) as f:
        fig.savefig(f, format=image_format(path), dpi=120)
    plt.close(fig)


# ---------------------------------------------------------------------------
# filters (Figure 3)


def conv1_kernels(model):
    """conv1's kernels, (K, C, k, k) each min-max normalised to [0, 1], and each one's tower (K,).

    Channels are in RGB order (a model reading BGR has them reversed back).
    """
    ws, towers = [], []
    for t, blk in enumerate(model.conv1.blocks):
        w = np.asarray(asnumpy(blk.conv.weight.data), np.float64)
        ws.append(w)
        towers += [t] * w.shape[0]
    w = np.concatenate(ws)
    if model.input_order == "bgr" and w.shape[1] == 3:
        w = w[:, ::-1]
    lo = w.min(axis=(1, 2, 3), keepdims=True)
    hi = w.max(axis=(1, 2, 3), keepdims=True)
    norm = np.where(hi > lo, (w - lo) / np.where(hi > lo, hi - lo, 1), 0.5)
    return norm.astype(np.float32), np.asarray(towers)


def _mosaic(kernels_, cols, pad=1):
    """(K, C, k, k) in [0, 1] -> one (rows*(k+pad)+pad, cols*(k+pad)+pad[, 3]) image, white gaps."""
    n, c, k, _ = kernels_.shape
    rows = -(-n // cols)
    shape = (rows * (k + pad) + pad, cols * (k + pad) + pad) + ((3,) if c == 3 else ())
    img = np.ones(shape, np.float32)
    for i in range(n):
        r, q = divmod(i, cols)
        tile = kernels_[i].transpose(1, 2, 0) if c == 3 else kernels_[i, 0]
        img[pad + r * (k + pad):pad + r * (k + pad) + k, pad + q * (k + pad):pad + q * (k + pad) + k] = tile
    return img


def plot_filters(model, out):
    """Draw conv1's kernels, one panel per tower. Returns (out, {'kernels', 'towers'})."""
    plt = pyplot()
    kern, towers = conv1_kernels(model)
    if kern.shape[1] not in (1, 3):        # other channel counts: show each kernel's mean over channels
        shown = kern.mean(axis=1, keepdims=True)
    else:
        shown = kern
    n_towers = int(towers.max()) + 1
    per = np.bincount(towers)
    cols = int(min(16, per.max()))
    fig, axes = plt.subplots(n_towers, 1, figsize=(max(4.0, cols * 0.55), 0.6 + n_towers * 0.55 *
                                                  (-(-per.max() // cols)) + 0.4 * n_towers), squeeze=False)
    for t in range(n_towers):
        ax = axes[t, 0]
        _imshow(ax, _mosaic(shown[towers == t], cols))
        label = f"tower {t + 1} (GPU {t + 1})" if n_towers > 1 else "conv1"
        ax.set_title(f"{label}: {per[t]} kernels {kern.shape[2]}x{kern.shape[3]}x{kern.shape[1]}", fontsize=9)
    fig.suptitle(f"AlexNet '{model.config.name}': conv1 kernels (each min-max normalised)", fontsize=10)
    fig.tight_layout()
    return _save(fig, out), {"kernels": kern, "towers": towers}


# ---------------------------------------------------------------------------
# predictions (Figure 4, left)


def plot_predictions(images, labels, top_classes, top_probs, classes, out, title=""):
    """Images with their top-k classes as horizontal bars (true class in red). Returns out."""
    plt = pyplot()
    n = len(images)
    cols = min(4, n)
    rows = -(-n // cols)
    fig, axes = plt.subplots(2 * rows, cols, figsize=(3.2 * cols, 4.2 * rows), squeeze=False,
                             gridspec_kw={"height_ratios": [1.3, 1] * rows})
    for ax in axes.ravel():
        ax.axis("off")
    for i in range(n):
        r, c = divmod(i, cols)
        ax_img, ax_bar = axes[2 * r, c], axes[2 * r + 1, c]
        ax_img.axis("on")
        _imshow(ax_img, _uint8_display(images[i]))
        true = int(labels[i])
        ax_img.set_xlabel(display_name(classes[true]), fontsize=9, fontweight="bold")
        ax_bar.axis("on")
        k = len(top_classes[i])
        colors = ["tab:red" if int(top_classes[i][j]) == true else "tab:blue" for j in range(k)]
        ax_bar.barh(np.arange(k), top_probs[i], color=colors)
        ax_bar.set_yticks(np.arange(k))
        ax_bar.set_yticklabels([display_name(classes[int(j)])[:24] for j in top_classes[i]], fontsize=8)
        ax_bar.invert_yaxis()
        ax_bar.set_xlim(0, 1)
        ax_bar.tick_params(axis="x", labelsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, out)


# ---------------------------------------------------------------------------
# neighbours (Figure 4, right)


def plot_neighbours(queries, query_labels, neigh_images, neigh_labels, distances, classes, out, title=""):
    """One row per query: the test image, then its neighbours (class and distance). Returns out."""
    plt = pyplot()
    nq, k = distances.shape
    fig, axes = plt.subplots(nq, k + 1, figsize=(1.5 * (k + 1) + 0.5, 1.75 * nq), squeeze=False)
    for r in range(nq):
        ax = axes[r, 0]
        _imshow(ax, _uint8_display(queries[r]))
        ax.set_title(f"query: {display_name(classes[int(query_labels[r])])[:14]}", fontsize=7, color="tab:red")
        for j in range(k):
            ax = axes[r, j + 1]
            _imshow(ax, _uint8_display(neigh_images[r][j]))
            ax.set_title(f"{display_name(classes[int(neigh_labels[r][j])])[:14]}\nd={distances[r, j]:.3g}", fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, out)


# ---------------------------------------------------------------------------
# deconv (Zeiler & Fergus)


def plot_deconv(image, result, layer, out, order="rgb", title=""):
    """Per projection: the image with the unit's receptive field, the patch, the projection. Returns out."""
    plt = pyplot()
    from matplotlib.patches import Rectangle

    n = len(result["channels"])
    fig, axes = plt.subplots(n, 3, figsize=(7.0, 2.3 * n + 0.4), squeeze=False)
    shown = _display(image, order)
    for r in range(n):
        y0, y1, x0, x1 = (int(v) for v in result["fields"][r])
        ax = axes[r, 0]
        _imshow(ax, shown)
        ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, edgecolor="red", linewidth=1.2))
        ax.set_title(f"{layer} channel {int(result['channels'][r])} at "
                     f"{tuple(int(v) for v in result['positions'][r])}", fontsize=8)
        _imshow(axes[r, 1], shown[y0:y1, x0:x1])
        axes[r, 1].set_title("image patch", fontsize=8)
        proj = result["projections"][r][:, y0:y1, x0:x1]
        m = np.abs(proj).max()
        p = 0.5 + 0.5 * proj / m if m > 0 else np.full_like(proj, 0.5)
        p = p[0] if p.shape[0] == 1 else (p[::-1] if order == "bgr" else p).transpose(1, 2, 0)
        _imshow(axes[r, 2], np.clip(p, 0, 1), vmin=0, vmax=1)
        axes[r, 2].set_title(f"projection (activation {result['activations'][r]:.3g})", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, out)


def plot_architecture(model, out=None, title=None):
    """The paper's Figure 2 for any preset, drawn from the built model: one row per tower, one box per stage
    with what a tower computes there (kernel, the layers after it, its output shape), and arrows for what each
    stage reads: its own tower's maps (grey) or, through the exchange, every tower's (red).

    Returns the figure; with ``out`` it is also saved there (and closed).
    """
    from matplotlib.patches import FancyArrowPatch, Rectangle

    plt = pyplot()
    towers = len(model.devices)
    rows = iter(model.summary_rows())       # one row per sub-layer, stage after stage
    cols = len(model.stages) + 1
    fig, ax = plt.subplots(figsize=(1.55 * cols + 0.5, 1.35 * towers + 1.1))
    w, h = 1.1, 0.9

    def y_of(t):
        return (towers - 1 - t) * 1.3

    def box(x, y, text, color):
        ax.add_patch(Rectangle((x - w / 2, y - h / 2), w, h, facecolor=color, edgecolor="0.3", lw=0.8))
        ax.text(x, y, text, ha="center", va="center", fontsize=7.5)

    def arrow(x0, y0, x1, y1, exchange):
        a = FancyArrowPatch((x0 + w / 2, y0), (x1 - w / 2, y1), arrowstyle="-|>", mutation_scale=9,
                            color="tab:red" if exchange else "0.45", lw=1.2 if exchange else 0.9)
        a.set_gid("exchange" if exchange else "own")
        ax.add_patch(a)

    c, hh, ww = model.expected_input
    middle = (y_of(0) + y_of(towers - 1)) / 2
    box(0, middle, f"input\n{c}×{hh}×{ww}", "0.93")
    for i, st in enumerate(model.stages, start=1):
        main = st.blocks[0].main
        shape = [next(rows) for _ in st.blocks[0].order][-1]["shape"]      # the stage's output
        each = (shape[0] // towers,) + tuple(shape[1:])
        if hasattr(main, "kernel_size"):
            k, s = main.kernel_size, main.stride
            what = f"{k}×{k}" + (f" /{s}" if s > 1 else "") + (f", {main.groups} groups" if main.groups > 1 else "")
        else:
            what = "fully connected"
        extra = [n for n in st.blocks[0].order if n in ("lrn", "pool", "dropout")]
        label = f"{st.name}\n{what}" + (f"\n+{'+'.join(extra)}" if extra else "") + "\n" + "×".join(map(str, each))
        color = "#dbe9f6" if st.name.startswith("conv") else "#fde9d6"
        for t in range(towers):
            box(i * 1.55, y_of(t), label, color)
            if st.reads == "input":
                arrow((i - 1) * 1.55, middle, i * 1.55, y_of(t), False)
            elif st.reads == "own" or towers == 1:
                arrow((i - 1) * 1.55, y_of(t), i * 1.55, y_of(t), False)
            else:
                for source in range(towers):
                    arrow((i - 1) * 1.55, y_of(source), i * 1.55, y_of(t), source != t)
    ax.set_xlim(-0.8, (cols - 1) * 1.55 + 0.8)
    ax.set_ylim(-0.8, y_of(0) + 0.8)
    ax.set_aspect("equal")
    ax.axis("off")
    params = model.num_parameters()
    note = " (shapes per tower; red: the tower exchange)" if towers > 1 else ""
    ax.set_title(title or f"'{model.config.name}': {towers} tower{'s' if towers > 1 else ''}, {params:,} parameters"
                 + note, fontsize=9)
    fig.tight_layout()
    if out is not None:
        _save(fig, out)
    return fig
