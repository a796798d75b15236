"""Where AlexNet's towers run: each tower's device, and on the CPU a thread per tower.

The paper ran its two towers on two GPUs. Here a model's towers may live on
any devices (``to``): two GPUs, one GPU for both, or the CPU, where each
tower's blocks can run in a thread of their own (``tower_threads``), as two
cores run two towers at once. Activations cross between devices only in
``minidl.parallel.Exchange`` and when the towers' outputs are gathered.
"""

from __future__ import annotations

from minidl.backend import as_device, get_array_module, to_device
from minidl.layers import Layer
from minidl.parallel import TowerThreads


class Towers:
    """The devices and threads of a two-tower network's stages (a part of ``AlexNet``)."""

    def to(self, device=None, dtype=None):
        """Move towers (one device for all, or a list with one per tower) and/or cast. Returns self."""
        if device is not None:
            devs = list(device) if isinstance(device, (list, tuple)) else [device] * len(self.devices)
            if len(devs) != len(self.devices):
                raise ValueError(f"AlexNet.to: {len(self.devices)} towers but {len(devs)} devices given")
            self.devices = [as_device(d).check() for d in devs]
            if any(d.is_cuda for d in self.devices):
                self.tower_threads = False
            for st in self.stages:
                for block, dev in zip(st.blocks, self.devices):
                    block.device = dev
                    Layer.to(block, device=dev)
                if st.exchange is not None:
                    st.exchange.devices = list(self.devices)
        if dtype is not None:
            Layer.to(self, dtype=dtype)
        return self

    @property
    def tower_threads(self):
        """True when the towers' blocks run at the same time, one thread each (CPU towers only)."""
        return self._threads is not None

    @tower_threads.setter
    def tower_threads(self, enable):
        if enable and len(self.devices) > 1:
            if any(d.is_cuda for d in self.devices):
                raise ValueError("tower_threads is for towers on the CPU; GPU towers already run concurrently")
            if self._threads is None:
                object.__setattr__(self, "_threads", TowerThreads(len(self.devices)))
        elif not enable and self._threads is not None:
            self._threads.close()
            object.__setattr__(self, "_threads", None)

    def _each(self, fn, blocks, xs):
        if self._threads is None:
            return [fn(b, x) for b, x in zip(blocks, xs)]
        return self._threads.map(fn, blocks, xs)

    def _gather(self, xs):
        """Concatenate the towers' outputs along axis 1 on the first device."""
        if len(xs) == 1:
            return xs[0]
        home = self.devices[0]
        parts = [to_device(x, home) for x in xs]
        with home:
            return get_array_module(parts[0]).concatenate(parts, axis=1)
