"""Fine-tuning from a weights file (``python -m alexnet.train --init-from FILE``).

The file's format and the preset it loads into (``guess_format``,
``format_preset``), its weights copied into a model (``init_from``), the
stages left to train (``freeze``), and the input normalisation the weights
were trained with (``data_normalisation``, ``adapt_data_spec``);
``init_finetune`` does all of it for a model that ``alexnet.train`` built, and
``finetune_preset`` picks the preset from the file first.
"""

from __future__ import annotations

import json
import os

import numpy as np

from minidl import checkpoint

from .cli import UserError
from .runs import weight_shapes
from .weights.caffe import CAFFE_MEAN_BGR, _caffe_full, read_caffe_npy
from .weights.state import WeightsError, _check_exists, _check_keys, _full_to_model
from .weights.torchvision import TORCHVISION_MEAN, TORCHVISION_STD, _torchvision_full, read_torchvision_state

FORMATS = ("torchvision", "caffe", "run")
FORMAT_PRESETS = {"torchvision": "torchvision", "caffe": "bvlc"}


def guess_format(path):
    """'torchvision', 'caffe' or 'run' from a weights file's name (and, for .npz, its contents)."""
    path = os.fspath(path)
    ext = os.path.splitext(path)[1].lower()
    if os.path.isdir(path):
        _checkpoint_path(path)                 # a run folder, or a clear error
        return "run"
    if ext == ".npz" and checkpoint.is_checkpoint(path):
        return "run"
    if ext == ".npy":
        return "caffe"
    if ext in (".pth", ".pt", ".bin", ".safetensors", ".npz"):
        return "torchvision"
    raise WeightsError(f"{path}: cannot tell the format from the name; pass --format torchvision|caffe|run")


def _checkpoint_path(path):
    if os.path.isdir(path):
        for name in ("best", "last"):
            p = os.path.join(path, "checkpoints", f"{name}.npz")
            if os.path.exists(p):
                return p
        raise WeightsError(f"{path} is a folder without checkpoints/best.npz or last.npz: neither a weights file "
                           "nor a training run")
    return path


def format_preset(fmt, path=None):
    """The preset a format's weights load into (``run``: the checkpoint's own preset).

    With ``path``, also checks that the file exists.
    """
    if path is not None and not os.path.isdir(path):
        _check_exists(os.fspath(path))
    if fmt in FORMAT_PRESETS:
        return FORMAT_PRESETS[fmt]
    if fmt != "run":
        raise WeightsError(f"unknown weights format {fmt!r}; choose one of {', '.join(FORMATS)}")
    ckpt = _checkpoint_path(os.fspath(path))
    _check_exists(ckpt)
    try:
        return checkpoint.load(ckpt, arrays=False)["run"]["preset"]
    except (checkpoint.CheckpointError, KeyError, TypeError):
        raise WeightsError(f"{ckpt}: not a minidl training checkpoint (no run/preset inside)") from None


def _run_shapes(model):
    """The shapes a run checkpoint's weights may have for ``model``'s preset (checked before they are read):
    conv1's input channels and fc8's classes may differ (any length on those axes), nothing else."""
    shapes = weight_shapes(model)
    for key, shape in shapes.items():
        if key.startswith("model/conv1.") and len(shape) == 4:
            shapes[key] = (shape[0], None) + shape[2:]
        elif key.startswith("model/fc8."):
            shapes[key] = (None,) + shape[1:]
    return shapes


def _source_full(path, fmt, model):
    """``({stage: (W, b)} one-tower layout, classes)`` of a weights file, for ``model``'s preset."""
    if fmt == "torchvision":
        return _torchvision_full(read_torchvision_state(path), path)
    if fmt == "caffe":
        return _caffe_full(read_caffe_npy(path), path, input_order="rgb")
    if fmt != "run":
        raise WeightsError(f"unknown weights format {fmt!r}; choose one of {', '.join(FORMATS)}")
    ckpt = _checkpoint_path(path)
    try:
        state = checkpoint.load(ckpt, arrays="model", shapes=_run_shapes(model))["model"]
    except (checkpoint.CheckpointError, KeyError) as exc:
        raise WeightsError(f"{ckpt}: not a minidl training checkpoint ({exc})") from None
    expected = [f"{s}.tower{t}.{k}" for s in model.stage_names for t in range(len(model.devices))
                for k in ("weight", "bias")]
    _check_keys(state, expected, f"a checkpoint of preset {model.config.name!r}", ckpt)
    towers = len(model.devices)
    for name, p in model.named_parameters():
        value = state[name]
        if not isinstance(value, np.ndarray) or value.dtype.kind != "f":
            raise WeightsError(f"{ckpt}: {name} is not an array of floats; the checkpoint is damaged")
        if name.split(".")[0] not in ("conv1", "fc8") and tuple(value.shape) != tuple(p.shape):
            raise WeightsError(f"{ckpt}: {name} has shape {tuple(value.shape)} but the model's is {tuple(p.shape)}; "
                               "the checkpoint is damaged or of another preset")
    full = {s: tuple(np.concatenate([state[f"{s}.tower{t}.{k}"] for t in range(towers)])
                     for k in ("weight", "bias")) for s in model.stage_names}
    # a two-tower model's tower-t input slice of an 'own' conv is tower t's part: concatenating the towers'
    # weights along the output axis keeps every tower's own rows, which _full_to_model splits back
    return full, int(full["fc8"][1].shape[0])


def init_from(model, path, fmt):
    """Copy a weights file into ``model`` for fine-tuning.

    The fc8 head is kept when the file has as many classes as the model,
    else left as the model's freshly initialised head. conv1 is adapted to
    the model's input channels (summed over colour for grey images).
    Caffe weights are converted to read RGB. Returns a dict: ``classes``
    (the file's), ``head`` ('loaded' or 'new'), ``loaded`` (parameter names).
    """
    path = os.fspath(path)
    if model.input_order != "rgb":
        raise ValueError("init_from: the weights are loaded for RGB input, and this model expects BGR")
    full, classes = _source_full(path, fmt, model)
    skip = () if classes == model.num_classes else ("fc8",)
    state = _full_to_model(full, model, path, skip=skip)
    model.load_state_dict(state, strict=False)
    return {"classes": classes, "head": "new" if skip else "loaded", "loaded": sorted(state)}


def data_normalisation(fmt, path, in_channels):
    """The per-channel ``(mean, std)`` (0..255 scale; std may be None) the weights were trained with.

    torchvision: its ImageNet mean/std (grey data: None, the data's own
    standardisation is what torchvision's is, per channel); caffe: its mean,
    no scaling (read as RGB, see ``init_from``); run: the source run's
    (from ``RUN/config.json`` next to ``RUN/checkpoints/``), None if unknown
    or if that run subtracted a mean image.
    """
    if fmt == "torchvision":
        return (list(TORCHVISION_MEAN), list(TORCHVISION_STD)) if in_channels == 3 else None
    if fmt == "caffe":
        rgb = [float(v) for v in CAFFE_MEAN_BGR[::-1]]
        return (rgb, None) if in_channels == 3 else ([float(np.mean(rgb))] * in_channels, None)
    ckpt = os.path.abspath(_checkpoint_path(os.fspath(path)))
    cfg_path = os.path.join(os.path.dirname(os.path.dirname(ckpt)), "config.json")
    try:
        with open(cfg_path) as f:
            data = json.load(f)["data"]
    except (OSError, ValueError, KeyError, TypeError, RecursionError):
        return None
    if data.get("mean_image") or data.get("mean") is None:
        return None

    def fit(values):
        if values is None:
            return None
        values = [float(v) for v in values]
        if len(values) == in_channels:
            return values
        if len(values) == 1:
            return values * in_channels
        return [float(np.mean(values))] * in_channels if in_channels == 1 else None

    mean, std = fit(data["mean"]), fit(data.get("std"))
    return None if mean is None or (data.get("std") is not None and std is None) else (mean, std)


def adapt_data_spec(spec, fmt, path):
    """Make a run's DataSpec feed the weights what they were trained on (see ``data_normalisation``).

    Changes ``spec.mean``/``spec.std`` in place (a dataset's mean image is
    kept; only its std is set). Returns True if anything changed.
    """
    norm = data_normalisation(fmt, path, spec.in_channels)
    if norm is None:
        return False
    mean, std = norm
    before = (spec.mean, spec.std)
    if spec.mean_image:
        spec.std = std
    else:
        spec.mean, spec.std = mean, std
    return (spec.mean, spec.std) != before


def freeze(model, train_layers):
    """Freeze every stage not in ``train_layers`` (names or a comma-separated string).

    Sets ``requires_grad`` on every parameter (False below/outside the
    trained stages); ``model.backward`` then stops below the lowest trained
    stage and SGD skips the frozen parameters. Returns the trained stages.
    """
    if isinstance(train_layers, str):
        train_layers = [s.strip() for s in train_layers.split(",") if s.strip()]
    train_layers = list(train_layers)
    if not train_layers:                # --train-layers "$UNSET": not "train everything"
        raise WeightsError(f"--train-layers names no stage (an empty value); name the stages to train, e.g. "
                           f"fc6,fc7,fc8, or leave the flag out to train all; the stages are "
                           f"{','.join(model.stage_names)}")
    unknown = [s for s in train_layers if s not in model.stage_names]
    if unknown:
        raise WeightsError(f"--train-layers: unknown stage(s) {', '.join(unknown)}; "
                           f"the stages are {','.join(model.stage_names)}")
    for st in model.stages:
        for p in st.parameters():
            p.requires_grad = st.name in train_layers
    return [s for s in model.stage_names if s in train_layers]


def init_finetune(model, spec, weights=None, fmt=None, train_layers=None, load=True):
    """After the model is built: load the file ``weights`` of format ``fmt`` (when ``load``: not on --resume),
    adapt the input normalisation of ``spec`` to them, and freeze all but ``train_layers``."""
    try:
        if weights is not None and load:
            info = init_from(model, weights, fmt)
            head = ("kept" if info["head"] == "loaded" else
                    f"replaced by a new {model.num_classes}-class head ({info['classes']} classes in the file)")
            print(f"initialised from {weights} ({fmt}); fc8 {head}", flush=True)
        if weights is not None and adapt_data_spec(spec, fmt, weights):
            print(f"input normalisation of the weights: mean {spec.mean}, std {spec.std}", flush=True)
        if train_layers is not None:       # "" is a mistake to report, not "train all"
            trained = freeze(model, train_layers)
            print(f"training {','.join(trained)}; every other parameter is frozen", flush=True)
    except WeightsError as exc:
        raise UserError(str(exc)) from None


def finetune_preset(init_from, fmt, preset, preset_given):
    """Before anything is built: the weights file's format and the preset it loads into, as (format, preset).

    ``preset_given``: whether --preset was given too (it must then be the weights' preset).
    """
    if init_from is None:
        if fmt is not None:
            raise UserError("--format describes --init-from FILE; give the file too")
        return fmt, preset
    try:
        fmt = fmt or guess_format(init_from)
        weights_preset = format_preset(fmt, init_from)
    except WeightsError as exc:
        raise UserError(str(exc)) from None
    if preset_given and preset != weights_preset:
        raise UserError(f"--init-from {init_from} ({fmt} weights) loads into preset '{weights_preset}', "
                        f"not '{preset}'; leave out --preset")
    return fmt, weights_preset
