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
the drawing-free parts are ``conv1_kernels`` (``alexnet.plots``),
``nearest_fc7`` (``alexnet.neighbours``), ``deconv_projections`` and
``receptive_field`` (``alexnet.deconv``), all importable from here too.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

from minidl.backend import asnumpy, to_device

from .cli import OneLineParser, UserError, bounded_int, display_name, nonneg_int, positive_int, run_cli, user_path
from .dataspec import make_transforms, open_split
from .deconv import DeconvChoiceError, deconv_projections, receptive_field
from .neighbours import fc7_features, nearest_fc7
from .plots import conv1_kernels, image_format, plot_deconv, plot_filters, plot_neighbours, plot_predictions
from .runs import figures_folder, load_run

__all__ = ["filters", "predictions", "neighbours", "deconv", "conv1_kernels", "nearest_fc7",
           "deconv_projections", "receptive_field", "fc7_features", "main"]


def class_probabilities(model, images, transform):
    """Softmax probabilities (N, classes) of uint8 images (N, C, h, w) through an eval transform."""
    model.eval()
    return model.probabilities(transform(to_device(np.ascontiguousarray(images), model.devices[0])))


# ---------------------------------------------------------------------------
# the commands, on a run folder


def _default_out(run, name, out):
    """``out``, else <the run's figures folder>/<name>.png (alexnet.runs.figures_folder)."""
    if out is not None:
        return os.fspath(out)
    folder = figures_folder(run)
    os.makedirs(folder, exist_ok=True)
    return os.path.join(folder, f"{name}.png")


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
    label = display_name(spec.classes[int(test.labels[index])])
    path = plot_deconv(image, res, layer, _default_out(run, f"deconv-{layer}", out),
                       order=model.input_order,
                       title=f"deconvnet projections, {layer}, test image {index} ({label})")
    return path, {**res, "image": image, "index": index}


# ---------------------------------------------------------------------------
# command line


def _int_list(text):
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        values = None
    if not values:                       # '' (an unset shell variable) is no list either
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas, got {text!r}")
    return values


def build_parser():
    p = OneLineParser(prog="python -m alexnet.visualize", description=__doc__.split("\n\n")[0])
    common = argparse.ArgumentParser(add_help=False)
    c = common.add_argument
    c("--run", default=argparse.SUPPRESS, type=user_path, help="a run folder written by alexnet.train (--out)")
    c("--out", default=argparse.SUPPRESS, metavar="PNG", type=user_path, help="the image to write (default RUN/<command>.png, or runs/figures/<run name>/<command>.png for a "
                   "run stored with the project or not writable)")
    c("--checkpoint", choices=["best", "last"], default=argparse.SUPPRESS)
    c("--backend", choices=["numpy", "cupy"], default=argparse.SUPPRESS)
    c("--gpus", default=argparse.SUPPRESS)
    p.add_argument("--run", default=None, type=user_path, help="a run folder written by alexnet.train (--out)")
    p.add_argument("--out", default=None, metavar="PNG", type=user_path, help="the image to write (default RUN/<command>.png, or runs/figures/<run name>/<command>.png for a "
                   "run stored with the project or not writable)")
    p.add_argument("--checkpoint", choices=["best", "last"], default="best")
    p.add_argument("--backend", choices=["numpy", "cupy"], default="numpy")
    p.add_argument("--gpus", default=None)
    sub = p.add_subparsers(dest="command", required=True, metavar="{filters,predictions,neighbours,deconv}")
    sub.add_parser("filters", parents=[common], help="conv1's kernels (Figure 3)")
    s = sub.add_parser("predictions", parents=[common], help="test images with their top-5 (Figure 4, left)")
    s.add_argument("--n", type=bounded_int(1, 64), default=8, help="how many test images, 1 to 64 (default 8)")
    s.add_argument("--indices", type=_int_list, default=None, help="these test images, e.g. 0,5,9")
    s.add_argument("--seed", type=nonneg_int, default=0, help="which random test images")
    s = sub.add_parser("neighbours", parents=[common], help="nearest training images in fc7 (Figure 4, right)")
    s.add_argument("--queries", type=bounded_int(1, 32), default=4, help="how many test images, 1 to 32 (default 4)")
    s.add_argument("--indices", type=_int_list, default=None, help="these test images, e.g. 0,5,9")
    s.add_argument("--k", type=bounded_int(1, 32), default=6, help="neighbours per query, 1 to 32 (default 6)")
    s.add_argument("--limit", type=positive_int, default=None, help="search only the first N training images")
    s.add_argument("--batch-size", type=positive_int, default=256)
    s.add_argument("--seed", type=nonneg_int, default=0)
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
    if args.out is not None:
        image_format(args.out)             # a name matplotlib cannot write is refused before the work
    kw = dict(out=args.out, checkpoint=args.checkpoint, backend=args.backend, gpus=args.gpus)
    if args.command == "filters":
        path, arrays = filters(args.run, **kw)
        print(f"{path}: {len(arrays['kernels'])} conv1 kernels", flush=True)
    elif args.command == "predictions":
        path, arrays = predictions(args.run, n=args.n, indices=args.indices, seed=args.seed, **kw)
        print(f"{path}: top-5 of {len(arrays['indices'])} test images", flush=True)
    elif args.command == "neighbours":
        path, arrays = neighbours(args.run, queries=args.queries, k=args.k, limit=args.limit, indices=args.indices,
                                  seed=args.seed, batch_size=args.batch_size,
                                  progress=not args.no_progress and sys.stderr.isatty(), **kw)
        found = arrays["indices"].shape[1]          # fewer than --k when fewer images were searched
        print(f"{path}: {found} nearest of {arrays['searched']:,} training images for "
              f"{len(arrays['query_indices'])} test images"
              f"{f' (--k {args.k} asks for more than were searched)' if found < args.k else ''}", flush=True)
    else:
        path, arrays = deconv(args.run, layer=args.layer, index=args.index, top=args.top, channels=args.channels,
                              **kw)
        print(f"{path}: {len(arrays['channels'])} projections from {args.layer}", flush=True)
    return 0


def main(argv=None):
    return run_cli("visualize", _main, argv)


if __name__ == "__main__":
    sys.exit(main())
