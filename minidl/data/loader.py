"""Datasets as arrays, and a prefetching, resumable batch loader.

The dataset protocol every minidl dataset satisfies (``FashionMNIST``,
``PreparedDataset``, ``ImageFolder``, ``ArrayDataset``)::

    len(ds)                  number of examples N
    ds.labels                np.int64 array, shape (N,)
    ds.classes               list of class names; label k is ds.classes[k]
    ds.get_batch(indices)    np.uint8 array, shape (B, C, H, W), in the order given

The loader only uses that protocol. It yields NumPy ``(images_uint8,
labels_int64)`` batches; moving them to a device and augmenting them is the
trainer's job (see ``minidl.data.transforms``), so the uint8 batch, 4x smaller
than its float32 version, is what crosses the PCIe bus.
"""

from __future__ import annotations

import math
import queue
import threading

import numpy as np

from ..checks import whole
from ..distributed import rows

__all__ = ["ArrayDataset", "DataLoader", "take_batch", "subset_indices"]


def _as_index_array(indices, n: int, who: str) -> np.ndarray:
    """Indices as a 1-D int64 array, checked to lie in [0, n)."""
    idx = np.asarray(indices)
    if idx.ndim == 0:
        idx = idx.reshape(1)
    if idx.ndim != 1:
        raise ValueError(f"{who}: indices must be 1-D, got shape {idx.shape}")
    if idx.size and not np.issubdtype(idx.dtype, np.integer):
        raise TypeError(f"{who}: indices must be integers, got dtype {idx.dtype}")
    idx = idx.astype(np.int64, copy=False)
    if idx.size and (idx.min() < 0 or idx.max() >= n):
        bad = idx[(idx < 0) | (idx >= n)][0]
        raise IndexError(f"{who}: index {bad} out of range for a dataset of {n} examples")
    return idx


def take_batch(array, indices) -> np.ndarray:
    """``array[indices]`` as a new C-contiguous array, read in sorted order.

    array: (N, ...) ndarray or np.memmap; indices: (B,) ints in [0, N).
    Returns (B, ...) with ``out[j] = array[indices[j]]``.

    Reading a memmap in ascending order turns random page faults into a
    forward scan, so the rows are fetched sorted and then put back in the
    order asked for.
    """
    idx = _as_index_array(indices, len(array), "take_batch")
    order = np.argsort(idx, kind="stable")
    out = np.empty((idx.size,) + tuple(array.shape[1:]), dtype=array.dtype)
    out[order] = array[idx[order]]
    return out


class ArrayDataset:
    """A dataset held in (or memory-mapped from) arrays.

    images: (N, C, H, W) uint8 ndarray or memmap; labels: (N,) integers;
    classes: the class names (default ``['0', '1', ...]``).
    """

    def __init__(self, images, labels, classes=None):
        labels = np.asarray(labels)
        if not all(hasattr(images, a) for a in ("ndim", "shape", "dtype")):
            raise TypeError(f"{type(self).__name__}: images must be an array (N, C, H, W), got "
                            f"{type(images).__name__}")
        if images.ndim != 4:
            raise ValueError(
                f"{type(self).__name__}: images must be (N, C, H, W), got shape {images.shape}"
            )
        if images.dtype != np.uint8:         # the transforms scale by 1/255: floats 0..1 would be near-black
            hint = " (if they are 0..1, pass (images * 255).round().astype(np.uint8))" \
                if np.issubdtype(images.dtype, np.floating) else ""
            raise TypeError(f"{type(self).__name__}: images must be uint8 pixel values 0..255, got "
                            f"{images.dtype}{hint}")
        if labels.ndim != 1 or len(labels) != len(images):
            raise ValueError(
                f"{type(self).__name__}: labels must be (N,) with N = {len(images)} "
                f"(one per image), got shape {labels.shape}"
            )
        if labels.size and not np.issubdtype(labels.dtype, np.integer):
            raise TypeError(f"{type(self).__name__}: labels must be integers, got {labels.dtype}")
        if labels.size and labels.min() < 0:
            raise ValueError(f"{type(self).__name__}: labels must be >= 0, got {labels.min()}")
        self.images = images
        self.labels = labels.astype(np.int64, copy=False)
        if classes is None:
            n_cls = int(self.labels.max()) + 1 if self.labels.size else 0
            classes = [str(k) for k in range(n_cls)]
        self.classes = list(classes)
        if self.labels.size and self.labels.max() >= len(self.classes):
            raise ValueError(f"{type(self).__name__}: label {self.labels.max()} has no class name: "
                             f"{len(self.classes)} classes were given, so labels must be 0..{len(self.classes) - 1}")

    def __len__(self) -> int:
        return len(self.labels)

    def get_batch(self, indices) -> np.ndarray:
        """uint8 (B, C, H, W): ``images[indices]``, in the order given."""
        return take_batch(self.images, indices)

    def __getitem__(self, i):
        """(image (C, H, W), label) of example ``i``."""
        return self.images[i], int(self.labels[i])

    def __repr__(self):
        shape = tuple(self.images.shape)
        return f"{type(self).__name__}(N={len(self)}, image shape={shape[1:]}, classes={len(self.classes)})"


def subset_indices(labels, n: int, seed: int = 0, stratified: bool = True) -> np.ndarray:
    """A fixed, seeded subset of ``n`` example indices, sorted ascending.

    labels: (N,) ints. With ``stratified`` each class gets ``n * N_c / N``
    examples (largest remainders get the leftover ones), so a 1% subset keeps
    the class balance; within a class the choice is a seeded permutation.
    Same (labels, n, seed) -> same subset, on every machine.
    """
    labels = np.asarray(labels)
    total = len(labels)
    n = whole(n, "subset_indices", "n")
    if not 0 < n <= total:
        raise ValueError(f"subset_indices: n must be in 1..{total} (the dataset size), got {n}")
    rng = np.random.default_rng([int(seed), 0x5EB5E7])
    if not stratified:
        return np.sort(rng.permutation(total)[:n])
    classes, counts = np.unique(labels, return_counts=True)
    exact = n * counts / total
    quota = np.floor(exact).astype(np.int64)
    # Hand out the remaining examples to the largest fractional parts
    # (ties: lower class first, via the stable sort).
    rest = n - quota.sum()
    quota[np.argsort(-(exact - quota), kind="stable")[:rest]] += 1
    chosen = []
    for c, q in zip(classes, quota):
        members = np.flatnonzero(labels == c)
        chosen.append(members[rng.permutation(len(members))[:q]])
    return np.sort(np.concatenate(chosen)).astype(np.int64)


class _WorkerError:
    """Carries an exception from the prefetch thread to the consumer."""

    def __init__(self, exc):
        self.exc = exc


_DONE = object()


class DataLoader:
    """Batches of ``(images uint8 (B, C, H, W), labels int64 (B,))``.

    dataset: anything with the protocol above. The order of epoch ``e`` is a
    pure function of ``(seed, e)``: ``np.random.default_rng([seed, e])
    .permutation`` of the (optional) ``indices`` subset, so a run can resume
    mid-epoch with ``batches(e, start=k)`` and see exactly the batches it would
    have seen. ``len(loader)`` is the number of batches per epoch.

    ``for x, y in loader`` iterates epoch ``loader.epoch``; running it to the
    end advances ``loader.epoch`` by one, so consecutive passes are shuffled
    differently. ``set_epoch(e)`` sets it (do that when resuming).

    prefetch: how many batches a background thread reads ahead while the
    consumer computes (``0``: no thread, read synchronously). The thread is a
    daemon; it stops when the iterator is exhausted, closed, or dropped (e.g.
    after ``break``). An exception raised while reading a batch is re-raised
    in the consumer at that batch.

    shard: ``(rank, size)`` for data parallelism over ``size`` processes: the
    loader still walks the same batches of ``batch_size``, and yields rows
    ``[n*rank//size, n*(rank+1)//size)`` of each batch of n (only those are
    read), so the processes' shards make up exactly the one-process batch.
    """

    def __init__(self, dataset, batch_size, shuffle=True, seed=0, drop_last=False,
                 prefetch=2, indices=None, shard=None):
        if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"DataLoader: batch_size must be a positive int, got {batch_size!r}")
        if not isinstance(prefetch, (int, np.integer)) or prefetch < 0:
            raise ValueError(f"DataLoader: prefetch must be an int >= 0, got {prefetch!r}")
        if int(seed) < 0:
            raise ValueError(f"DataLoader: seed must be >= 0, got {seed}")
        for attr in ("get_batch", "labels", "__len__"):
            if not hasattr(dataset, attr):
                raise TypeError(
                    f"DataLoader: the dataset needs `{attr}` (protocol: len(ds), ds.labels, "
                    f"ds.classes, ds.get_batch(indices)); got {type(dataset).__name__}"
                )
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.seed = int(seed)
        self.drop_last = bool(drop_last)
        self.prefetch = int(prefetch)
        n = len(dataset)
        if indices is None:
            self.indices = np.arange(n, dtype=np.int64)
        else:
            self.indices = _as_index_array(indices, n, "DataLoader")
        if self.drop_last and len(self.indices) < self.batch_size:
            raise ValueError(
                f"DataLoader: drop_last with batch_size {self.batch_size} > {len(self.indices)} "
                "examples gives no batch at all; lower the batch size or set drop_last=False"
            )
        self._labels = np.asarray(dataset.labels, dtype=np.int64)
        self.epoch = 0
        if shard is None:
            shard = (0, 1)
        rank, size = (int(v) for v in shard)
        if not 0 <= rank < size:
            raise ValueError(f"DataLoader: shard must be (rank, size) with 0 <= rank < size, got {shard!r}")
        self.shard = (rank, size)

    def __len__(self) -> int:
        n = len(self.indices)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    @property
    def num_examples(self) -> int:
        """Examples per epoch (the subset size if ``indices`` was given)."""
        return len(self.indices)

    def set_epoch(self, epoch: int):
        if int(epoch) < 0:
            raise ValueError(f"DataLoader.set_epoch: epoch must be >= 0, got {epoch}")
        self.epoch = int(epoch)

    def epoch_order(self, epoch: int) -> np.ndarray:
        """Dataset indices in the order epoch ``epoch`` visits them, (num_examples,)."""
        if not self.shuffle:
            return self.indices
        perm = np.random.default_rng([self.seed, int(epoch)]).permutation(len(self.indices))
        return self.indices[perm]

    def _batch_indices(self, epoch, start):
        """The index arrays of batches ``start, start+1, ...`` of ``epoch``."""
        nb = len(self)
        if not 0 <= start <= nb:
            raise ValueError(f"DataLoader.batches: start must be in 0..{nb}, got {start}")
        order = self.epoch_order(epoch)
        bs = self.batch_size
        rank, size = self.shard
        batches = [order[b * bs:(b + 1) * bs] for b in range(start, nb)]
        return [idx[rows(len(idx), rank, size)] for idx in batches]

    def _load(self, idx):
        return self.dataset.get_batch(idx), self._labels[idx]

    def batches(self, epoch=None, start=0):
        """Iterate epoch ``epoch`` (default ``self.epoch``) from batch ``start``.

        Yields ``(images uint8 (B, C, H, W), labels int64 (B,))``; the arguments
        are checked at the call, the reading starts at the first ``next()``.
        """
        epoch = self.epoch if epoch is None else int(epoch)
        if epoch < 0:
            raise ValueError(f"DataLoader.batches: epoch must be >= 0, got {epoch}")
        batch_ids = self._batch_indices(epoch, int(start))
        if self.prefetch == 0:
            return (self._load(idx) for idx in batch_ids)
        return self._prefetched(batch_ids)

    def _prefetched(self, batch_ids):
        q = queue.Queue(maxsize=self.prefetch)
        stop = threading.Event()

        def put(item):
            # Wait for room, but give up as soon as the consumer has gone.
            while not stop.is_set():
                try:
                    q.put(item, timeout=0.05)
                    return True
                except queue.Full:
                    continue
            return False

        def work():
            try:
                for idx in batch_ids:
                    if not put(self._load(idx)):
                        return
                put(_DONE)
            except BaseException as exc:  # noqa: BLE001  (handed to the consumer)
                put(_WorkerError(exc))

        thread = threading.Thread(target=work, name="minidl-DataLoader-prefetch", daemon=True)
        thread.start()
        try:
            while True:
                item = q.get()
                if item is _DONE:
                    return
                if isinstance(item, _WorkerError):
                    raise item.exc
                yield item
        finally:
            # Reached on exhaustion, on error, and on close()/garbage
            # collection of an abandoned iterator (e.g. after `break`).
            stop.set()
            thread.join(timeout=5.0)

    def __iter__(self):
        epoch = self.epoch
        it = self.batches(epoch)
        try:
            yield from it
        finally:
            it.close()  # stops the prefetch thread if we were abandoned
        if self.epoch == epoch:
            self.epoch = epoch + 1

    def __repr__(self):
        return (f"DataLoader({type(self.dataset).__name__}, batch_size={self.batch_size}, "
                f"shuffle={self.shuffle}, seed={self.seed}, batches={len(self)}, "
                f"prefetch={self.prefetch})")
