"""Looking into AlexNet: its layers by name (Caffe's, as the literature uses them), any layer's
activation (``features``), and a table of every layer (``summary``)."""

from __future__ import annotations

import numpy as np

from minidl.kernels import conv_out_size


class Readout:
    """Layer names, ``features`` and ``summary`` of a built network (a part of ``AlexNet``)."""

    # Caffe's names for the outputs of convK's LRN and max-pool ('norm1', 'pool5')
    _CAFFE = {"lrn": "norm", "pool": "pool"}

    def layer_name(self, stage, sub):
        """The name ``features`` reads a sub-layer's output by: ``'pool1'``, ``'norm2'`` (as Caffe and the
        literature name them) for a conv stage's LRN and pooling, else ``'<stage>.<sub>'`` or the stage."""
        if sub in ("conv", "linear"):
            return stage
        if sub in self._CAFFE and stage.startswith("conv"):
            return self._CAFFE[sub] + stage[len("conv"):]
        return f"{stage}.{sub}"

    def layer_names(self):
        """The layers as ``summary`` lists them, each a name ``features`` accepts. A stage's row is its
        conv or linear layer, but ``features('conv1')`` is the rectified output, as in Caffe, whose
        ReLUs work in place (``'conv1.conv'``: before the ReLU)."""
        return [self.layer_name(st.name, sub) for st in self.stages for sub in st.blocks[0].order]

    def _locate(self, layer):
        """(stage, sub-layer) of a layer name."""
        stage, sub = layer.partition(".")[::2]
        for sub_name, prefix in self._CAFFE.items():
            if layer.startswith(prefix) and layer[len(prefix):].isdigit():
                stage, sub = "conv" + layer[len(prefix):], sub_name
        if stage not in self.stage_names:
            raise ValueError(f"features: unknown layer {layer!r}; layers are {', '.join(self.layer_names())}")
        order = getattr(self, stage).blocks[0].order
        if not sub:                        # a stage: its rectified output (fc8: the logits)
            return stage, ("relu" if "relu" in order else order[-1])
        if sub not in order:
            raise ValueError(f"features: stage {stage} has no {sub} (asked for {layer!r}); it has "
                             f"{', '.join(order)}")
        return stage, sub

    def features(self, x, layer):
        """The activation after a named layer, towers side by side, on the first device.

        ``layer`` as in Caffe and the literature: a stage is its rectified
        output (``'conv5'``: 256x13x13 in the paper net; ``'fc7'``: the
        4096-d image embedding of Figure 4, in eval mode), ``'norm1'``,
        ``'pool1'``, ``'norm2'``, ``'pool2'``, ``'pool5'`` the conv stages'
        LRN and pooling, ``'fc8'`` the logits. Any sub-layer can also be named
        ``'<stage>.<sub>'`` (``'conv1.conv'`` before the ReLU, ``'fc6.dropout'``).
        """
        stage, sub = self._locate(layer)
        return self._gather(self._run(x, stop=stage, until=sub))

    # -- description --------------------------------------------------------
    def summary_rows(self):
        """Per layer: name, whole-network output shape (C, H, W) or (F,), parameters, multiply-adds, devices."""
        rows = []
        shape = self.expected_input
        towers = len(self.devices)
        devs = ", ".join(str(d) for d in self.devices)
        for st in self.stages:
            block0 = st.blocks[0]
            for name in block0.order:
                layers = [getattr(b, name) for b in st.blocks]
                params = sum(sum(p.data.size for p in lay.parameters()) for lay in layers)
                macs = 0
                if name == "flatten":
                    shape = (int(np.prod(shape)),)
                elif name == "conv":
                    outs = [lay.output_shape(shape[1], shape[2]) for lay in layers]
                    shape = (sum(o[0] for o in outs),) + outs[0][1:]
                    macs = sum(int(np.prod(o)) * lay.weight.data[0].size for o, lay in zip(outs, layers))
                elif name == "pool":
                    k, s = layers[0].kernel_size, layers[0].stride
                    shape = (shape[0], conv_out_size(shape[1], k, s, 0), conv_out_size(shape[2], k, s, 0))
                elif name == "linear":
                    shape = (sum(lay.out_features for lay in layers),)
                    macs = sum(lay.weight.data.size for lay in layers)
                label = self.layer_name(st.name, name)
                rows.append(dict(name=label, shape=tuple(shape), params=int(params), macs=int(macs),
                                 reads=st.reads if name in ("conv", "linear") else "",
                                 devices=devs if towers > 1 else str(self.devices[0])))
        return rows

    def summary(self):
        """A table of every layer: output shape, parameters, multiply-adds, device(s)."""
        rows = self.summary_rows()
        head = f"AlexNet preset '{self.config.name}': input {'x'.join(map(str, self.expected_input))}, " \
               f"{len(self.devices)} tower(s), {self.num_classes} classes"
        lines = [head, f"{'layer':<14}{'output':>14}{'params':>14}{'mult-adds':>16}  {'reads':<6} device"]
        lines.append("-" * len(lines[1]))
        for r in rows:
            lines.append(f"{r['name']:<14}{'x'.join(map(str, r['shape'])):>14}{r['params']:>14,}"
                         f"{r['macs']:>16,}  {r['reads']:<6} {r['devices']}")
        lines.append("-" * len(lines[1]))
        total_p = sum(r["params"] for r in rows)
        total_m = sum(r["macs"] for r in rows)
        lines.append(f"{'total':<14}{'':>14}{total_p:>14,}{total_m:>16,}")
        return "\n".join(lines)

