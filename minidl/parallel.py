"""The tower exchange: how AlexNet's two GPUs talk (the paper, Section 3.2).

Each tower holds half of every layer. Most layers read only their own
tower's maps; conv3 and the fully connected layers read both. ``Exchange``
is the only place activations cross between devices:

    forward:  x_0 (on device 0), x_1 (on device 1), ...
              -> every tower t gets concat(x_0, x_1, ...) along ``axis``,
                 copied to t's device
    backward: tower t's gradient g_t of that concatenation is split back
              into pieces; piece i is sent home to device i, and each
              tower's input gradient is the sum of the pieces it receives:
              dx_i = sum_t split(g_t)[i]

On one CPU the copies are no-ops, which is how the two-tower code is tested
without GPUs. Across GPUs, CuPy copies peer to peer when the hardware
allows, ordered after the source device's queued work.
"""

from __future__ import annotations

from .backend import as_device, get_array_module, to_device


class Exchange:
    """Concatenate per-tower arrays for every tower, and route gradients back.

    ``Exchange(devices, axis=1)``: ``forward(list of arrays) -> list of
    arrays`` (one concatenation per tower, on that tower's device);
    ``backward(list of gradients) -> list of gradients`` (one per input).
    """

    def __init__(self, devices, axis=1):
        self.devices = [as_device(d) for d in devices]
        self.axis = axis
        self._sizes = None

    def forward(self, xs):
        if len(xs) != len(self.devices):
            raise ValueError(f"Exchange: expected {len(self.devices)} tower inputs, got {len(xs)}")
        self._sizes = [x.shape[self.axis] for x in xs]
        out = []
        for dev in self.devices:
            parts = [to_device(x, dev) for x in xs]
            xp = get_array_module(parts[0])
            with dev:
                # concatenate into a buffer with the inputs' memory layout (the conv
                # layers' batch-innermost one); xp.concatenate would return C order
                shape = list(parts[0].shape)
                shape[self.axis] = sum(self._sizes)
                cat = xp.empty_like(parts[0], shape=tuple(shape))
                at = 0
                for p in parts:
                    sl = [slice(None)] * p.ndim
                    sl[self.axis] = slice(at, at + p.shape[self.axis])
                    cat[tuple(sl)] = p
                    at += p.shape[self.axis]
                out.append(cat)
        return out

    def backward(self, grads):
        if self._sizes is None:
            raise RuntimeError("Exchange.backward called before forward")
        if len(grads) != len(self.devices):
            raise ValueError(f"Exchange.backward: expected {len(self.devices)} tower gradients, got {len(grads)}")
        bounds = [0]
        for s in self._sizes:
            bounds.append(bounds[-1] + s)
        dxs = [None] * len(self.devices)
        for g in grads:
            for i, dev in enumerate(self.devices):
                sl = [slice(None)] * g.ndim
                sl[self.axis] = slice(bounds[i], bounds[i + 1])
                piece = to_device(g[tuple(sl)], dev)
                with dev:
                    dxs[i] = piece.copy(order="K") if dxs[i] is None else dxs[i] + piece
        return dxs


class TowerThreads:
    """Run one call per tower at the same time, each in its own thread (towers on the CPU).

    On GPUs the towers already overlap: CuPy queues each device's kernels and
    returns at once. On the CPU a tower's work is NumPy calls that release
    the GIL (ufuncs, copies, single-threaded BLAS), so two threads keep two
    cores busy through the memory-bound pooling/LRN/im2col passes that one
    thread with a two-thread BLAS would run on a single core. Give BLAS one
    thread per tower thread (``minidl.runtime.tuned(blas_threads=1)``):
    OpenBLAS threads competing with each other are far slower.

    ``map(fn, *iterables) -> list``: ``fn`` applied to each tower's arguments;
    the first runs in the calling thread. Results and exceptions are those
    of the calls, in tower order. The arithmetic is the same as in turn, so
    results are bit-identical.
    """

    def __init__(self, towers):
        from concurrent.futures import ThreadPoolExecutor

        self.towers = int(towers)
        self._pool = ThreadPoolExecutor(max_workers=max(1, self.towers - 1), thread_name_prefix="tower")

    def map(self, fn, *iterables):
        args = list(zip(*iterables))
        futures = [self._pool.submit(fn, *a) for a in args[1:]]
        first = fn(*args[0]) if args else None
        rest = [f.result() for f in futures]
        return ([first] if args else []) + rest

    def close(self):
        self._pool.shutdown(wait=True)
