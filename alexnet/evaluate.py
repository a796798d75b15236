"""Top-1/top-5 evaluation, with the paper's ten-crop testing.

    python -m alexnet.evaluate --run runs/mini [--ten-crop] [--checkpoint best|last]

Ten-crop (the paper, Section 4.1): the four corner crops, the centre crop and
their horizontal reflections; the prediction is the average of the ten
softmax outputs.
"""

from __future__ import annotations

import os
import sys

import numpy as np

from minidl.backend import to_device
from minidl.data import DataLoader
from minidl.distributed import rows as shard_of

from .cli import OneLineParser, UserError, display_name, positive_int, run_cli, user_path
from .dataspec import make_transforms, open_split
from .plots import plot_confusion
from .runs import check_writable, figures_folder, load_run


def evaluate(model, dataset, transform, batch_size=256, limit=None, progress=False, group=None, indices=None):
    """Loss, top-1/top-5 accuracy and the confusion matrix of ``model`` on ``dataset``.

    ``transform`` is an EvalTransform; with ten-crop it returns (10, B, C, S, S)
    and the ten softmax outputs are averaged. ``limit`` evaluates only the
    first ``limit`` examples; ``indices`` only those examples (a training
    subset). The model is put in eval mode and left there.
    ``group`` (a minidl.distributed group of K processes): each process
    evaluates a K-th of the images and every process gets the totals.
    """
    model.eval()
    chosen = np.arange(len(dataset)) if indices is None else np.asarray(indices, dtype=np.int64)
    n = len(chosen) if limit is None else min(limit, len(chosen))
    if n == 0:
        raise UserError(f"nothing to evaluate: {dataset!r} has no images")
    mine = chosen[:n]
    if group is not None and group.size > 1:
        mine = mine[shard_of(n, group.rank, group.size)]
    loader = DataLoader(dataset, batch_size, shuffle=False, indices=mine, prefetch=2)
    k = model.num_classes
    confusion = np.zeros((k, k), dtype=np.int64)
    loss_sum, top1, top5 = 0.0, 0, 0
    home = model.devices[0]
    it = loader.batches(0)
    if progress:
        from tqdm import tqdm

        it = tqdm(it, total=len(loader), desc="eval", leave=False)
    for images, labels in it:
        x = transform(to_device(images, home))
        if x.ndim == 5:       # ten crops: average the probabilities
            probs = sum(model.probabilities(crop) for crop in x) / x.shape[0]
        else:
            probs = model.probabilities(x)
        rows = np.arange(len(labels))
        loss_sum += float(-np.log(np.maximum(probs[rows, labels], 1e-300)).sum())
        ranked = np.argsort(-probs, axis=1)[:, :5]
        top1 += int((ranked[:, 0] == labels).sum())
        top5 += int((ranked == labels[:, None]).any(axis=1).sum())
        np.add.at(confusion, (labels, ranked[:, 0]), 1)
    if group is not None and group.size > 1:
        totals = group.sum(np.concatenate([[loss_sum, top1, top5], confusion.ravel()]))
        loss_sum, top1, top5 = float(totals[0]), int(totals[1]), int(totals[2])
        confusion = totals[3:].astype(np.int64).reshape(k, k)
    return {"loss": loss_sum / n, "top1": top1 / n, "top5": top5 / n, "n": n, "confusion": confusion}


def format_confusion(confusion, classes):
    classes = [display_name(c) for c in classes]
    width = max(5, max(len(c) for c in classes) + 1)
    short = [c[:7] for c in classes]
    lines = [" " * width + "".join(f"{s:>8}" for s in short) + "   (rows: true, columns: predicted)"]
    for name, row in zip(classes, confusion):
        lines.append(f"{name:<{width}}" + "".join(f"{v:>8d}" for v in row))
    return "\n".join(lines)


def build_parser():
    p = OneLineParser(prog="python -m alexnet.evaluate", description=__doc__.split("\n\n")[0])
    p.add_argument("--run", required=True, type=user_path, help="a run folder written by alexnet.train (--out)")
    p.add_argument("--checkpoint", choices=["best", "last"], default="best")
    p.add_argument("--ten-crop", action="store_true", help="average the softmax of ten crops per image")
    p.add_argument("--batch-size", type=positive_int, default=256)
    p.add_argument("--backend", choices=["numpy", "cupy"], default="numpy")
    p.add_argument("--gpus", default=None, help="with --backend cupy: GPU of each tower, e.g. 0,1")
    p.add_argument("--limit", type=positive_int, default=None, help="evaluate only the first N examples")
    p.add_argument("--out", default=None, metavar="DIR", type=user_path,
                   help="the folder for the confusion matrix's image (default: the run folder, or "
                        "runs/figures/<run name> for a run stored with the project or not writable)")
    return p


def _main(argv):
    args = build_parser().parse_args(argv)
    model, config, spec = load_run(args.run, args.checkpoint, backend=args.backend, gpus=args.gpus)
    _, evalt = make_transforms(spec, model.input_size, ten_crop=args.ten_crop)
    test = open_split(spec, "test")
    # the confusion matrix's folder (up to 20 classes): one that cannot take it is found before the evaluation
    folder = (args.out or figures_folder(args.run)) if spec.num_classes <= 20 else None
    if folder is not None:
        how = "give --out a folder you can write to" if args.out else "pass --out DIR, a folder you can write to"
        check_writable(folder, "cannot write the confusion matrix's image into {folder} ({reason}); " + how)
    res = evaluate(model, test, evalt, args.batch_size, limit=args.limit, progress=sys.stderr.isatty())
    how = "ten-crop" if args.ten_crop else "centre crop"
    print(f"{config['preset']} on {spec.kind} ({res['n']} test images, {how}, {args.checkpoint} checkpoint): "
          f"top-1 error {100 * (1 - res['top1']):.2f}%, top-5 error {100 * (1 - res['top5']):.2f}% "
          f"(top-1 accuracy {100 * res['top1']:.2f}%), loss {res['loss']:.4f}")
    if folder is not None:
        print(format_confusion(res["confusion"], spec.classes))
        png = os.path.join(folder, f"confusion_{args.checkpoint}{'_tencrop' if args.ten_crop else ''}.png")
        plot_confusion(res["confusion"], spec.classes, png,
                       f"{config['preset']}: top-1 {100 * res['top1']:.2f}% ({how})")
        print(f"confusion matrix written to {png}")
    return 0


def main(argv=None):
    return run_cli("evaluate", _main, argv)


if __name__ == "__main__":
    sys.exit(main())
