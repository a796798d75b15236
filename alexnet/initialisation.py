"""The four ways to draw AlexNet's first weights (``build_model(init=...)``, ``--init``).

paper:    weights N(0, 0.01^2); biases 1 in conv2, conv4, conv5, fc6, fc7, else 0 (Section 5: "to
          accelerate the early stages of learning by providing the ReLUs with positive inputs").
caffe:    bvlc_alexnet's prototxt: std 0.01 (fc6, fc7: 0.005); those biases 0.1.
original: cuda-convnet's layers-145: std 0.03 in conv3-5, else as paper.
he:       N(0, 2/fan_in) weights, zero biases; the output layer (fc8) N(0, 0.01^2) as in
          the paper, so the first logits are near zero (He's scale there gave a first
          loss of ~4.4 instead of ln(classes) and slowed the first epoch).
"""

from __future__ import annotations

import numpy as np

from minidl import init as minit

INITS = ("paper", "caffe", "original", "he")
ONE_BIASES = {"conv2", "conv4", "conv5", "fc6", "fc7"}      # the paper's biases of 1


def initialise(model, scheme="paper", seed=0):
    """Draw every parameter of ``model`` afresh, stage by stage and tower by tower, from one seeded generator."""
    if scheme not in INITS:
        raise ValueError(f"unknown init {scheme!r}; choose one of {', '.join(INITS)}")
    rng = np.random.default_rng(seed)
    for st in model.stages:
        for block in st.blocks:
            w, b = block.main.weight, block.main.bias
            if scheme == "he" and st is not model.stages[-1]:
                minit.he_normal_(w, rng)
            elif scheme == "he":
                minit.normal_(w, 0.01, rng)
            else:
                std = 0.01
                if scheme == "caffe" and st.name in ("fc6", "fc7"):
                    std = 0.005
                if scheme == "original" and st.name in ("conv3", "conv4", "conv5"):
                    std = 0.03
                minit.normal_(w, std, rng)
            if b is not None:
                value = 0.0
                if scheme != "he" and st.name in ONE_BIASES:
                    value = 0.1 if scheme == "caffe" else 1.0
                minit.constant_(b, value)
    return model
