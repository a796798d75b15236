"""A trained run in words and a table, made from its own files: what the README shows of the default run.

    python -m alexnet.report --run notebooks/data/mini-fashion-mnist

Every figure comes from the run folder (config.json, metrics.jsonl): the
last evaluation's accuracies, the epochs' training time and speed, and a row
per epoch. The README's section on the default run is this output, and a test
regenerates it from the stored run and compares, so the two cannot drift.
"""

from __future__ import annotations

import json
import math
import os
import sys

from .cli import OneLineParser, UserError, run_cli, user_path
from .runs import read_run_config


_EPOCH_FIELDS = ("epoch", "lr", "train_loss", "train_acc", "time", "images_per_s")


def read_metrics(run):
    """The records of a run's metrics.jsonl, each epoch and evaluation record checked for the figures that the
    report and the ablation studies read; a UserError naming the line otherwise."""
    path = os.path.join(run, "metrics.jsonl")
    try:
        with open(path, encoding="utf-8") as f:
            records = [(number, json.loads(line)) for number, line in enumerate(f, 1) if line.strip()]
    except (OSError, ValueError, RecursionError) as exc:
        raise UserError(f"{path} cannot be read ({exc}): the run's metrics are missing or damaged") from None
    for number, r in records:
        if not isinstance(r, dict):
            raise UserError(f"{path} line {number} is not a metrics record; remove that line")
        if r.get("type") == "epoch" or "test_top1" in r:
            fields = (_EPOCH_FIELDS if r.get("type") == "epoch" else ()) + ("test_top1", "test_top5") + \
                (("val_top1",) if "val_top1" in r else ())
            bad = next((k for k in fields if not _finite(r.get(k))), None)
            if bad is not None:
                what = f"it has no {bad}" if bad not in r else f"its {bad} is {r[bad]!r}, not a number"
                raise UserError(f"{path} line {number}: {what}; the file was edited or damaged: remove that line")
    return [r for _, r in records]


def _finite(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _duration(seconds):
    minutes, s = divmod(int(round(seconds)), 60)
    return f"{minutes} min {s:02d} s" if minutes else f"{s} s"


def run_report(run):
    """Markdown: the run's result in a sentence, then one row per epoch."""
    config = read_run_config(run)
    args, records = config["args"], read_metrics(run)
    epochs = [r for r in records if r.get("type") == "epoch"]
    evals = [r for r in records if "test_top1" in r]
    if not epochs or not evals:
        raise UserError(f"{run} has no finished epoch to report")
    final, val = evals[-1], "val_top1" in epochs[-1]
    if "val_size" not in args:
        split = ("no validation split: a run from before it existed; its step schedule chose nothing, and its "
                 "weights are the last epoch's")
    elif args["val_size"] is None:
        split = "validated on the folder's own val/ split, which made every decision"
    elif args["val_size"] == 0:
        split = "no validation split (--val-size 0)"
    else:
        split = f"{args['val_size']:,} training images held out for validation, which made every decision"
    speeds = [r["images_per_s"] for r in epochs]
    lines = [
        f"'{config['preset']}' on {config['data']['kind']}, {len(epochs)} epochs at batch {args['batch_size']}, "
        f"learning rate {args['lr']:g} ({split}): **{100 * final['test_top1']:.2f}% test top-1** "
        f"({100 * final['test_top5']:.2f}% top-5) at the end; {_duration(sum(r['time'] for r in epochs))} of "
        f"training (the epochs' own time, without start-up and evaluations) at {min(speeds):,.0f}-"
        f"{max(speeds):,.0f} images/s.",
        "",
        "| epoch | lr | train loss | train acc |" + (" val top-1 |" if val else "") + " test top-1 | test top-5 | time |",
        "|---|---|---|---|" + ("---|" if val else "") + "---|---|---|",
    ]
    for r in epochs:
        cells = [str(r["epoch"]), f"{r['lr']:g}", f"{r['train_loss']:.4f}", f"{100 * r['train_acc']:.2f}%"]
        if val:
            cells.append(f"{100 * r['val_top1']:.2f}%" if "val_top1" in r else "-")
        cells += [f"{100 * r['test_top1']:.2f}%", f"{100 * r['test_top5']:.2f}%", f"{r['time']:.0f} s"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _main(argv):
    p = OneLineParser(prog="python -m alexnet.report", description=__doc__.split("\n\n")[0])
    p.add_argument("--run", required=True, type=user_path, help="a run folder written by alexnet.train (--out)")
    args = p.parse_args(argv)
    print(run_report(args.run), end="")
    return 0


def main(argv=None):
    return run_cli("report", _main, argv)


if __name__ == "__main__":
    sys.exit(main())
