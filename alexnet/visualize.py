"""Look inside a trained AlexNet: the paper's Figures 3 and 4, and Zeiler & Fergus projections.

    python -m alexnet.visualize --run runs/mini-fashion-mnist filters
    python -m alexnet.visualize --run RUN predictions [--n 8]
    python -m alexnet.visualize --run RUN neighbours [--queries 4 --k 6 --limit 10000]
    python -m alexnet.visualize --run RUN deconv [--layer conv2 --index 0 --top 4]

Each command writes a PNG (``--out``, default ``RUN/<command>.png``):

filters      conv1's kernels as images, tower by tower (Figure 3), each kernel
             min-max normalised on its own; grey for one-channel nets.
predictions  test images with their top-5 classes as horizontal bars, the
             true class's bar in red and its name under the image (Figure 4, left).
neighbours   for a few test images, the training images nearest in fc7 space
             (Euclidean distance between the 4096-d, or for mini 512-d,
             post-ReLU fc7 vectors in eval mode; Figure 4, right). The training
             set is streamed in batches keeping only each query's running top
             k, so 60,000 images need no more memory than one batch;
             ``--limit N`` searches only the first N training images.
deconv       Zeiler & Fergus's deconvnet (2014): for a layer's strongest
             activations, keep one activation, zero the rest, and go back down
             to the pixels: through every max-pool with ``unpool`` (the switches
             recorded in the forward pass), a ReLU, and the transposed
             convolution with the layer's own weights (col2im(W^T @ y), the
             conv's input-gradient operation, no bias). LRN is passed through
             unchanged, as in the deconvnet. In a two-tower net the projection
             stays in the chosen channel's tower down to conv3, which read both
             towers: there it splits along the tower exchange and continues down
             both towers. The projection is shown next to the image patch that
             the unit sees (its receptive field).

Every command is a Python function too (``filters``, ``predictions``,
``neighbours``, ``deconv``, on a run folder) returning ``(png_path, arrays)``;
the drawing-free parts are ``conv1_kernels``, ``nearest_fc7``,
``deconv_projections`` and ``receptive_field``.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

from minidl import kernels
from minidl.atomic import atomic_write
from minidl.backend import asnumpy, get_array_module, to_device

from .cli import OneLineParser, UserError, bounded_int, display_text, positive_int, run_cli
from .dataspec import make_transforms, open_split
from .plots import image_format, pyplot
from .runs import load_run

__all__ = ["filters", "predictions", "neighbours", "deconv", "conv1_kernels", "nearest_fc7",
           "deconv_projections", "receptive_field", "conv_transpose", "main"]


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


def class_probabilities(model, images, transform):
    """Softmax probabilities (N, classes) of uint8 images (N, C, h, w) through an eval transform."""
    model.eval()
    return model.probabilities(transform(to_device(np.ascontiguousarray(images), model.devices[0])))


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
        ax_img.set_xlabel(display_text(classes[true]), fontsize=9, fontweight="bold")
        ax_bar.axis("on")
        k = len(top_classes[i])
        colors = ["tab:red" if int(top_classes[i][j]) == true else "tab:blue" for j in range(k)]
        ax_bar.barh(np.arange(k), top_probs[i], color=colors)
        ax_bar.set_yticks(np.arange(k))
        ax_bar.set_yticklabels([display_text(classes[int(j)])[:24] for j in top_classes[i]], fontsize=8)
        ax_bar.invert_yaxis()
        ax_bar.set_xlim(0, 1)
        ax_bar.tick_params(axis="x", labelsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, out)


# ---------------------------------------------------------------------------
# neighbours (Figure 4, right)


def fc7_features(model, images, transform, layer="fc7"):
    """fc7 vectors (eval mode) of uint8 images (N, C, h, w), float32 on the host."""
    home = model.devices[0]
    model.eval()
    with home:
        x = transform(to_device(np.ascontiguousarray(images), home))
        return np.asarray(asnumpy(model.features(x, layer)), np.float32)


def nearest_fc7(model, queries, dataset, transform, k=5, limit=None, batch_size=256, layer="fc7",
                progress=False):
    """The ``k`` training images nearest to each query in fc7 space (Euclidean).

    queries: uint8 images (Q, C, h, w). The dataset (``get_batch``) is
    streamed in batches of ``batch_size`` over its first ``limit`` images,
    keeping each query's running top k. Returns (indices (Q, k), distances
    (Q, k)), nearest first.
    """
    q = fc7_features(model, queries, transform, layer).astype(np.float64)
    n = len(dataset) if limit is None else min(int(limit), len(dataset))
    k = min(int(k), n)
    q2 = (q * q).sum(axis=1)
    best_d = np.full((len(q), 0), np.inf)
    best_i = np.zeros((len(q), 0), np.int64)
    starts = range(0, n, batch_size)
    if progress:
        from tqdm import tqdm

        starts = tqdm(starts, desc="fc7 search", unit="batch", leave=False)
    for start in starts:
        idx = np.arange(start, min(start + batch_size, n))
        f = fc7_features(model, dataset.get_batch(idx), transform, layer).astype(np.float64)
        d2 = np.maximum(q2[:, None] + (f * f).sum(axis=1)[None, :] - 2.0 * (q @ f.T), 0.0)
        cand_d = np.concatenate([best_d, d2], axis=1)
        cand_i = np.concatenate([best_i, np.broadcast_to(idx, d2.shape)], axis=1)
        if cand_d.shape[1] > k:
            keep = np.argpartition(cand_d, k - 1, axis=1)[:, :k]
            cand_d = np.take_along_axis(cand_d, keep, axis=1)
            cand_i = np.take_along_axis(cand_i, keep, axis=1)
        best_d, best_i = cand_d, cand_i
    order = np.argsort(best_d, axis=1, kind="stable")
    return np.take_along_axis(best_i, order, axis=1), np.sqrt(np.take_along_axis(best_d, order, axis=1))


def plot_neighbours(queries, query_labels, neigh_images, neigh_labels, distances, classes, out, title=""):
    """One row per query: the test image, then its neighbours (class and distance). Returns out."""
    plt = pyplot()
    nq, k = distances.shape
    fig, axes = plt.subplots(nq, k + 1, figsize=(1.5 * (k + 1) + 0.5, 1.75 * nq), squeeze=False)
    for r in range(nq):
        ax = axes[r, 0]
        _imshow(ax, _uint8_display(queries[r]))
        ax.set_title(f"query: {display_text(classes[int(query_labels[r])])[:14]}", fontsize=7, color="tab:red")
        for j in range(k):
            ax = axes[r, j + 1]
            _imshow(ax, _uint8_display(neigh_images[r][j]))
            ax.set_title(f"{display_text(classes[int(neigh_labels[r][j])])[:14]}\nd={distances[r, j]:.3g}", fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, out)


# ---------------------------------------------------------------------------
# deconv (Zeiler & Fergus)


def conv_transpose(conv, y, x_shape):
    """The transposed convolution of a Conv2D with its own weights: col2im(W^T @ y), no bias.

    y (N, O, OH, OW) -> (N, C, H, W) with ``x_shape`` the conv's input shape;
    exactly the conv's input-gradient operation (groups included).
    """
    xp = get_array_module(y)
    g, o = conv.groups, conv.out_channels
    yg = xp.ascontiguousarray(y.transpose(1, 2, 3, 0)).reshape(g, o // g, -1)      # (G, O/G, M)
    w = conv.weight.data.reshape(g, o // g, -1)                                     # (G, O/G, K)
    col = kernels.group_matmul(w.transpose(0, 2, 1), yg.astype(w.dtype, copy=False))  # (G, K, M)
    k = conv.kernel_size
    return kernels.col2im(col.reshape(-1, col.shape[2]), tuple(x_shape), k, k, conv.stride, conv.padding)


def receptive_field(model, layer, y, x):
    """The input rows/columns ``(y0, y1, x0, x1)`` (half-open, clipped to the image) that unit
    (y, x) of ``layer``'s conv/ReLU output can see."""
    idx = model.stage_names.index(layer)
    (ya, yb), (xa, xb) = (y, y), (x, x)
    for i in range(idx, -1, -1):
        blk = model.stages[i].blocks[0]
        if i < idx and "pool" in blk.order:
            pk, ps = blk.pool.kernel_size, blk.pool.stride
            ya, yb, xa, xb = ya * ps, yb * ps + pk - 1, xa * ps, xb * ps + pk - 1
        c = blk.conv
        ya, yb = ya * c.stride - c.padding, yb * c.stride - c.padding + c.kernel_size - 1
        xa, xb = xa * c.stride - c.padding, xb * c.stride - c.padding + c.kernel_size - 1
    s = model.input_size
    return max(ya, 0), min(yb + 1, s), max(xa, 0), min(xb + 1, s)


def _forward_to(model, x, layer):
    """Run to ``layer``'s ReLU; per stage, the towers' block inputs' shapes; and the towers' activations."""
    model.eval()
    xs = [to_device(x, d) for d in model.devices]
    in_shapes = []
    for st in model.stages:
        if st.exchange is not None:
            xs = st.exchange.forward(xs)
        in_shapes.append([tuple(xt.shape) for xt in xs])
        if st.name == layer:
            return [blk.forward(xt, until="relu") for blk, xt in zip(st.blocks, xs)], in_shapes
        xs = [blk.forward(xt) for blk, xt in zip(st.blocks, xs)]
    raise AssertionError("unreachable")


def _project_down(model, layer, signals, in_shapes):
    """Take per-tower signals at ``layer``'s ReLU output down to the input (unpool, ReLU, conv^T)."""
    idx = model.stage_names.index(layer)
    for i in range(idx, -1, -1):
        st = model.stages[i]
        new = [None] * len(signals)
        for t, (blk, s) in enumerate(zip(st.blocks, signals)):
            if s is None:
                continue
            with blk.device:
                order = blk.order[:blk.order.index("relu") + 1] if i == idx else blk.order
                for name in reversed(order):
                    if name == "pool":
                        s = blk.pool.unpool(s)
                    elif name == "relu":
                        s = s * (s > 0)
                    elif name == "conv":
                        s = conv_transpose(blk.conv, s, in_shapes[i][t])
                    # 'lrn' is passed through: the deconvnet does not invert normalisation
            new[t] = s
        if st.reads == "input" or i == 0:
            home = model.devices[0]
            total = None
            for s in new:
                if s is not None:
                    s = to_device(s, home)
                    with home:
                        total = s if total is None else total + s
            return total
        if st.reads == "both" and len(st.blocks) > 1:
            # the exchange gave every tower all towers' maps: split back and send each piece home
            sizes = [b.conv.out_channels for b in model.stages[i - 1].blocks]
            bounds = np.cumsum([0] + sizes)
            out = [None] * len(new)
            for s in new:
                if s is None:
                    continue
                for j, dev in enumerate(model.devices):
                    piece = to_device(s[:, bounds[j]:bounds[j + 1]], dev)
                    with dev:
                        out[j] = piece if out[j] is None else out[j] + piece
            new = out
        signals = new
    raise AssertionError("unreachable")


class DeconvChoiceError(ValueError):
    """A layer or channel that ``deconv_projections`` cannot project from."""


def deconv_projections(model, x, layer, top=4, channels=None):
    """Zeiler & Fergus projections of ``layer``'s strongest activations for one input.

    x: the model input (1, C, S, S) (already transformed). For each of the
    ``top`` channels with the largest activation (or the given ``channels``,
    whole-network numbering), the single strongest activation after the
    layer's ReLU is kept, everything else zeroed, and projected down to
    the pixels. Returns a dict of numpy arrays: projections (n, C, S, S),
    channels (n,), positions (n, 2) (row, column in the layer's maps),
    activations (n,), fields (n, 4) (receptive field y0, y1, x0, x1, half-open).
    """
    if layer not in model.stage_names or not layer.startswith("conv"):
        convs = [s for s in model.stage_names if s.startswith("conv")]
        raise DeconvChoiceError(f"deconv: layer must be one of {', '.join(convs)}, got {layer!r}")
    if x.ndim != 4 or x.shape[0] != 1:
        raise ValueError(f"deconv: expected one input image (1, C, H, W), got shape {tuple(x.shape)}")
    acts, in_shapes = _forward_to(model, x, layer)
    host = [np.asarray(asnumpy(a)) for a in acts]
    per = [a.shape[1] for a in host]
    bounds = np.cumsum([0] + per)
    whole = np.concatenate(host, axis=1)[0]                               # (C, h, w)
    peaks = whole.reshape(whole.shape[0], -1).max(axis=1)
    if channels is None:
        chosen = np.argsort(-peaks, kind="stable")[:top]
    else:
        chosen = np.asarray([int(c) for c in channels])
        if chosen.size == 0 or chosen.min() < 0 or chosen.max() >= whole.shape[0]:
            raise DeconvChoiceError(f"deconv: channels must be in 0..{whole.shape[0] - 1}, "
                             f"got {', '.join(map(str, chosen.tolist()))}")
    projections, positions, values, fields = [], [], [], []
    for c in chosen:
        pos = np.unravel_index(int(np.argmax(whole[c])), whole.shape[1:])
        t = int(np.searchsorted(bounds, c, side="right") - 1)
        signals = [None] * len(acts)
        xp = get_array_module(acts[t])
        with model.devices[t]:
            s = xp.zeros_like(acts[t])
            s[0, c - bounds[t], pos[0], pos[1]] = acts[t][0, c - bounds[t], pos[0], pos[1]]
        signals[t] = s
        proj = _project_down(model, layer, signals, in_shapes)
        projections.append(np.asarray(asnumpy(proj))[0])
        positions.append(pos)
        values.append(float(whole[c][pos]))
        fields.append(receptive_field(model, layer, int(pos[0]), int(pos[1])))
    return {"projections": np.stack(projections).astype(np.float32), "channels": np.asarray(chosen),
            "positions": np.asarray(positions, np.int64), "activations": np.asarray(values),
            "fields": np.asarray(fields, np.int64)}


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


# ---------------------------------------------------------------------------
# the commands, on a run folder


def _default_out(run, name, out):
    return os.path.join(run, f"{name}.png") if out is None else os.fspath(out)


def _pick(n_total, n, indices, seed):
    if indices is not None:
        idx = np.asarray([int(i) for i in indices], np.int64)
        if idx.size == 0 or idx.min() < 0 or idx.max() >= n_total:
            raise UserError(f"image indices must be in 0..{n_total - 1}, got {', '.join(map(str, idx.tolist()))}")
        return idx
    return np.sort(np.random.default_rng(seed).choice(n_total, size=min(n, n_total), replace=False))


def filters(run, out=None, checkpoint="best", backend="numpy", gpus=None):
    """Figure 3 for a run: conv1's kernels. Returns (png path, {'kernels', 'towers'})."""
    model, _, _ = load_run(run, checkpoint, backend=backend, gpus=gpus)
    return plot_filters(model, _default_out(run, "filters", out))


def predictions(run, out=None, n=8, indices=None, seed=0, top=5, checkpoint="best", backend="numpy", gpus=None):
    """Figure 4 (left) for a run: test images and their top-5 classes.

    Returns (png path, {'indices', 'labels', 'top_classes' (n, top), 'top_probs' (n, top)}).
    """
    model, _, spec = load_run(run, checkpoint, backend=backend, gpus=gpus)
    test = open_split(spec, "test")
    _, evalt = make_transforms(spec, model.input_size)
    idx = _pick(len(test), n, indices, seed)
    images = test.get_batch(idx)
    labels = np.asarray(test.labels)[idx]
    probs = class_probabilities(model, images, evalt)
    top = min(top, model.num_classes)
    top_classes = np.argsort(-probs, axis=1, kind="stable")[:, :top]
    top_probs = np.take_along_axis(probs, top_classes, axis=1)
    path = plot_predictions(images, labels, top_classes, top_probs, spec.classes, _default_out(run, "predictions", out),
                            title=f"AlexNet '{model.config.name}': top-{top} predictions (true class in red)")
    return path, {"indices": idx, "labels": labels, "top_classes": top_classes, "top_probs": top_probs}


def neighbours(run, out=None, queries=4, k=6, limit=None, indices=None, seed=0, batch_size=256,
               checkpoint="best", backend="numpy", gpus=None, progress=False):
    """Figure 4 (right) for a run: training images nearest to test images in fc7 space.

    Returns (png path, {'query_indices' (Q,), 'indices' (Q, k), 'distances' (Q, k), 'searched'}).
    """
    model, _, spec = load_run(run, checkpoint, backend=backend, gpus=gpus)
    test, train = open_split(spec, "test"), open_split(spec, "train")
    _, evalt = make_transforms(spec, model.input_size)
    qidx = _pick(len(test), queries, indices, seed)
    qimages = test.get_batch(qidx)
    searched = len(train) if limit is None else min(int(limit), len(train))
    nn_idx, dist = nearest_fc7(model, qimages, train, evalt, k=k, limit=searched, batch_size=batch_size,
                               progress=progress)
    labels = np.asarray(train.labels)
    neigh = [train.get_batch(row) for row in nn_idx]
    path = plot_neighbours(qimages, np.asarray(test.labels)[qidx], neigh, labels[nn_idx], dist, spec.classes,
                           _default_out(run, "neighbours", out),
                           title=f"nearest training images in fc7 space ({searched:,} searched)")
    return path, {"query_indices": qidx, "indices": nn_idx, "distances": dist, "searched": searched}


def deconv(run, out=None, layer="conv2", index=0, top=4, channels=None, checkpoint="best", backend="numpy",
           gpus=None):
    """Zeiler & Fergus projections of ``layer``'s strongest activations for test image ``index``.

    Returns (png path, dict of ``deconv_projections`` plus 'image' (the model input, (C, S, S)) and 'index').
    """
    model, _, spec = load_run(run, checkpoint, backend=backend, gpus=gpus)
    test = open_split(spec, "test")
    if not 0 <= index < len(test):
        raise UserError(f"--index must be in 0..{len(test) - 1}, got {index}")
    _, evalt = make_transforms(spec, model.input_size)
    home = model.devices[0]
    with home:
        x = evalt(to_device(test.get_batch([index]), home))
    try:
        res = deconv_projections(model, x, layer, top=top, channels=channels)
    except DeconvChoiceError as exc:
        raise UserError(str(exc)) from None
    image = np.asarray(asnumpy(x))[0]
    label = display_text(spec.classes[int(test.labels[index])])
    path = plot_deconv(image, res, layer, _default_out(run, f"deconv-{layer}", out),
                       order=model.input_order,
                       title=f"deconvnet projections, {layer}, test image {index} ({label})")
    return path, {**res, "image": image, "index": index}


# ---------------------------------------------------------------------------
# command line


def _int_list(text):
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas, got {text!r}") from None


def build_parser():
    p = OneLineParser(prog="python -m alexnet.visualize", description=__doc__.split("\n\n")[0])
    common = argparse.ArgumentParser(add_help=False)
    c = common.add_argument
    c("--run", default=argparse.SUPPRESS, help="a run folder written by alexnet.train (--out)")
    c("--out", default=argparse.SUPPRESS, metavar="PNG", help="the image to write (default RUN/<command>.png)")
    c("--checkpoint", choices=["best", "last"], default=argparse.SUPPRESS)
    c("--backend", choices=["numpy", "cupy"], default=argparse.SUPPRESS)
    c("--gpus", default=argparse.SUPPRESS)
    p.add_argument("--run", default=None, help="a run folder written by alexnet.train (--out)")
    p.add_argument("--out", default=None, metavar="PNG", help="the image to write (default RUN/<command>.png)")
    p.add_argument("--checkpoint", choices=["best", "last"], default="best")
    p.add_argument("--backend", choices=["numpy", "cupy"], default="numpy")
    p.add_argument("--gpus", default=None)
    sub = p.add_subparsers(dest="command", required=True, metavar="{filters,predictions,neighbours,deconv}")
    sub.add_parser("filters", parents=[common], help="conv1's kernels (Figure 3)")
    s = sub.add_parser("predictions", parents=[common], help="test images with their top-5 (Figure 4, left)")
    s.add_argument("--n", type=bounded_int(1, 64), default=8, help="how many test images, 1 to 64 (default 8)")
    s.add_argument("--indices", type=_int_list, default=None, help="these test images, e.g. 0,5,9")
    s.add_argument("--seed", type=int, default=0, help="which random test images")
    s = sub.add_parser("neighbours", parents=[common], help="nearest training images in fc7 (Figure 4, right)")
    s.add_argument("--queries", type=bounded_int(1, 32), default=4, help="how many test images, 1 to 32 (default 4)")
    s.add_argument("--indices", type=_int_list, default=None, help="these test images, e.g. 0,5,9")
    s.add_argument("--k", type=bounded_int(1, 32), default=6, help="neighbours per query, 1 to 32 (default 6)")
    s.add_argument("--limit", type=positive_int, default=None, help="search only the first N training images")
    s.add_argument("--batch-size", type=positive_int, default=256)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--no-progress", action="store_true")
    s = sub.add_parser("deconv", parents=[common], help="Zeiler & Fergus projections of top activations")
    s.add_argument("--layer", default="conv2", help="conv1 ... conv5 (default conv2)")
    s.add_argument("--index", type=int, default=0, help="the test image (default 0)")
    s.add_argument("--top", type=bounded_int(1, 32), default=4,
                   help="how many of the strongest channels, 1 to 32 (default 4)")
    s.add_argument("--channels", type=_int_list, default=None, help="these channels instead, e.g. 3,17")
    return p


def _main(argv):
    args = build_parser().parse_args(argv)
    if not args.run:
        raise UserError("--run DIR is required (a run folder written by alexnet.train)")
    kw = dict(out=args.out, checkpoint=args.checkpoint, backend=args.backend, gpus=args.gpus)
    if args.command == "filters":
        path, arrays = filters(args.run, **kw)
        print(f"{path}: {len(arrays['kernels'])} conv1 kernels", flush=True)
    elif args.command == "predictions":
        path, arrays = predictions(args.run, n=args.n, indices=args.indices, seed=args.seed, **kw)
        print(f"{path}: top-5 of {len(arrays['indices'])} test images", flush=True)
    elif args.command == "neighbours":
        path, arrays = neighbours(args.run, queries=args.queries, k=args.k, limit=args.limit, indices=args.indices,
                                  seed=args.seed, batch_size=args.batch_size, progress=not args.no_progress, **kw)
        print(f"{path}: {args.k} nearest of {arrays['searched']:,} training images for "
              f"{len(arrays['query_indices'])} test images", flush=True)
    else:
        path, arrays = deconv(args.run, layer=args.layer, index=args.index, top=args.top, channels=args.channels,
                              **kw)
        print(f"{path}: {len(arrays['channels'])} projections from {args.layer}", flush=True)
    return 0


def main(argv=None):
    return run_cli("visualize", _main, argv)


if __name__ == "__main__":
    sys.exit(main())
