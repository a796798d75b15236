"""The training images nearest to a query in fc7 space (the paper's Figure 4, right)."""

from __future__ import annotations

import numpy as np

from minidl.backend import asnumpy, to_device


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
