"""Weights in one-tower layout into a model's towers, and the checks and error every reader shares.

Each reader turns its file into ``{stage: (W, b)}`` in one-tower minidl
layout (conv W (out, in, kh, kw), linear W (out, in)); ``_full_to_model``
splits that over the model's towers. Parameters are named
``<stage>.tower<t>.weight|bias`` (conv1..conv5, fc6..fc8); in a two-tower
model fc8 is split by classes over the towers (``model.class_splits``).
"""

from __future__ import annotations

import os

import numpy as np

from minidl.atomic import atomic_write


class WeightsError(ValueError):
    """A weights file that cannot be used: missing, unreadable, or not the expected network."""


def _atomic_write(path, write):
    """``write(f)`` into a file that appears at ``path`` only once complete (minidl.atomic)."""
    with atomic_write(path) as f:
        write(f)
    return os.fspath(path)


def _check_exists(path):
    if not os.path.exists(path):
        raise WeightsError(f"{path}: no such file")
    if os.path.isdir(path):
        raise WeightsError(f"{path} is a folder, not a weights file")
    if not os.path.isfile(path):
        raise WeightsError(f"{path} is not a regular file")


def _check_keys(state, expected, what, path):
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing key{'s' if len(missing) > 1 else ''} {', '.join(repr(k) for k in missing)}")
        if unexpected:
            parts.append(f"unexpected key{'s' if len(unexpected) > 1 else ''} "
                         f"{', '.join(repr(k) for k in unexpected)}")
        raise WeightsError(f"{path}: not {what}: {'; '.join(parts)}")


def _split_rows(arr, sizes):
    bounds = np.cumsum([0] + list(sizes))
    return [arr[bounds[t]:bounds[t + 1]] for t in range(len(sizes))]


def _adapt_in_channels(w, channels, name):
    """conv1 weights for a model with another number of input channels.

    3 -> 1: the kernels summed over colour (a grey image seen as R = G = B);
    1 -> 3: the kernel shared by the three channels, divided by 3.
    """
    if w.shape[1] == channels:
        return w
    if channels == 1:
        return w.sum(axis=1, keepdims=True)
    if w.shape[1] == 1:
        return np.repeat(w, channels, axis=1) / channels
    raise WeightsError(f"{name}: the weights read {w.shape[1]} input channels; the model reads {channels}")


def _full_to_model(full, model, path, skip=()):
    """``{stage: (W, b)}`` in one-tower minidl layout -> the model's state dict (split over towers)."""
    state = {}
    for st in model.stages:
        if st.name in skip:
            continue
        w, b = full[st.name]
        if st.name == "conv1":
            w = _adapt_in_channels(w, model.in_channels, f"{path}: {st.name}")
        sizes = [blk.main.weight.shape[0] for blk in st.blocks]
        ws, bs = _split_rows(w, sizes), _split_rows(b, sizes)
        for t, blk in enumerate(st.blocks):
            for kind, arr, p in (("weight", ws[t], blk.main.weight), ("bias", bs[t], blk.main.bias)):
                if tuple(arr.shape) != tuple(p.shape):
                    raise WeightsError(f"{path}: {st.name}.tower{t}.{kind} would get shape {tuple(arr.shape)}, "
                                       f"the model has {tuple(p.shape)}")
                if not np.isfinite(arr).all():
                    raise WeightsError(f"{path}: the {st.name} {kind}s hold NaN or infinite values; the file is "
                                       "damaged")
                state[f"{st.name}.tower{t}.{kind}"] = arr
    return state
