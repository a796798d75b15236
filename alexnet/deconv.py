"""Zeiler & Fergus's deconvnet (2014): a unit's activation projected back down to the pixels.

For a layer's strongest activations, keep one activation, zero the rest, and
go back down to the pixels: through every max-pool with ``unpool`` (the
switches recorded in the forward pass), a ReLU, and the transposed
convolution with the layer's own weights (col2im(W^T @ y), the conv's
input-gradient operation, no bias). LRN is passed through unchanged, as in
the deconvnet. In a two-tower net the projection stays in the chosen
channel's tower down to conv3, which read both towers: there it splits along
the tower exchange and continues down both towers. ``receptive_field`` gives
the image patch that the unit sees.
"""

from __future__ import annotations

import numpy as np

from minidl.backend import asnumpy, get_array_module, to_device


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
                        s = blk.conv.transpose(s, in_shapes[i][t])    # col2im(W^T @ s)
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
