"""Train AlexNet with the paper's recipe (Section 5).

    python -m alexnet.train                                   # mini preset, Fashion-MNIST, CPU
    python -m alexnet.train --preset paper --backend cupy --gpus 0,1
    python -m alexnet.train --out runs/mini --resume          # continue where it stopped

SGD with momentum 0.9 and weight decay 5e-4, batch 128, learning rate 0.01
divided by 10 when the test error stops improving (``--lr-schedule
plateau``, at most three times) or every ``--lr-step`` epochs (``step``).
The mini preset has its own defaults, tuned for a 15-minute CPU run: batch
64, learning rate 0.02, 8 epochs, divided by 10 after epoch 6.

The run folder (``--out``) holds config.json, metrics.jsonl (one JSON object
per logged step and per epoch), checkpoints/last.npz and best.npz (weights,
optimizer, schedule, counters, random state; written atomically) and
curves.png. ``--resume`` continues bit for bit: the data order depends only
on (seed, epoch), the augmentation of a batch only on (seed, epoch, batch),
and the dropout masks on counters saved in the checkpoint.

    mpirun -n 2 python -m alexnet.train ...                   # data parallel: 2 processes, one run

Started by mpirun, K processes train one run: each takes B/K images of
every batch of ``--batch-size`` B (which K must divide), the gradients are
averaged over the processes every step, and the weights follow the
one-process run to float32 round-off. Process 0 alone prints and writes the
run folder; all resume from its checkpoints. Needs mpi4py
(``pip install -e ".[mpi]"``).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import os
import signal
import sys
import time
import warnings

from minidl import checkpoint, distributed, kernels
from minidl.atomic import remove_stale
from minidl.runtime import tower_threads_pay, tuned

from .cli import (
    OneLineParser, UserError, agree_on_setup, momentum_float, nonneg_float, nonneg_int, positive_float, positive_int,
    preset_names, run_cli, user_error_message,
)
from .configs import get_config
from .dataspec import describe_data
from .devices import gpu_memory_error, is_gpu_out_of_memory, tower_devices
from .finetune import add_finetune_flags, setup_finetune
from .model import INITS
from .runs import check_writable, read_run_config, write_run_config
from .trainer import NonFiniteLoss, Trainer, apply_preset_defaults
from .variants import VARIANTS, variant_config

# On --resume the run's saved settings apply. These may be changed, from the checkpoint's step on:
RESUME_CHANGEABLE = ("lr", "lr_schedule", "lr_step", "epochs", "max_steps")
# these only steer the run (where it writes, what it prints, how it evaluates, which device):
RESUME_FREE = ("out", "resume", "no_progress", "eval_every", "log_every", "checkpoint_every", "checkpoint_minutes",
               "ten_crop", "max_minutes",
               "test_subset", "backend", "gpus", "data_dir")


def build_parser():
    p = OneLineParser(prog="python -m alexnet.train", description=__doc__.split("\n\n")[0])
    a = p.add_argument
    a("--preset", choices=preset_names(), default="mini", help="network preset (default: mini)")
    a("--data", default="fashion-mnist",
      help="'fashion-mnist' (default), a folder made by alexnet.prepare, or an ImageNet-style folder")
    a("--data-dir", default=None, help="where the Fashion-MNIST .gz files are (searched otherwise)")
    a("--backend", choices=["numpy", "cupy"], default="numpy")
    a("--gpus", default=None, help="with --backend cupy: the GPU of each tower, e.g. 0,1 (0,0: both on GPU 0)")
    a("--epochs", type=positive_int, default=None, help="default: 8 for mini, 90 otherwise")
    a("--batch-size", type=positive_int, default=None, help="default: 64 for mini, 128 (the paper's) otherwise")
    a("--lr", type=positive_float, default=None, help="default: 0.02 for mini, 0.01 (the paper's) otherwise")
    a("--momentum", type=momentum_float, default=0.9, help="in [0, 1) (default 0.9)")
    a("--weight-decay", type=nonneg_float, default=5e-4)
    a("--lr-schedule", choices=["plateau", "step"], default=None,
      help="plateau: divide by 10 when the test error stops improving (the paper); step: every --lr-step "
           "epochs (default for mini)")
    a("--lr-step", type=positive_int, default=None,
      help="epochs between divisions with --lr-schedule step (default: 6 for mini, else epochs/3)")
    a("--seed", type=nonneg_int, default=0)
    a("--out", default=None, help="run folder (default: runs/<preset>-<data>)")
    a("--resume", action="store_true",
      help="continue the run in --out from its last checkpoint, with the settings it was started with "
           "(config.json); from the checkpoint's step on you may change " + ", ".join(
               f"--{k.replace('_', '-')}" for k in RESUME_CHANGEABLE) + " (each change is printed and logged); "
           "the other training settings are fixed by the checkpoint")
    a("--eval-every", type=positive_int, default=1, help="evaluate on the test split every N epochs")
    a("--ten-crop", action="store_true", help="evaluate with ten crops per image (the paper's testing)")
    a("--max-steps", type=positive_int, default=None, help="stop after this many steps in all (quick runs)")
    a("--max-minutes", type=positive_float, default=None,
      help="stop training once the command has run this many minutes, start-up included, then evaluate and "
           "save as at --max-steps (--resume continues the run)")
    a("--train-subset", type=positive_int, default=None, help="train on a fixed random subset of N images")
    a("--test-subset", type=positive_int, default=None, help="evaluate on the first N test images only")
    a("--init", choices=INITS, default=None, help="initialisation (default: the preset's)")
    a("--variant", choices=list(VARIANTS), default="baseline",
      help="the preset with one of the paper's ideas taken out, for ablations (alexnet.variants): "
           + "; ".join(f"{k}: {v}" for k, v in VARIANTS.items()))
    a("--log-every", type=positive_int, default=50, help="steps between metrics.jsonl entries")
    a("--checkpoint-every", type=positive_int, default=None, help="also save last.npz every N steps")
    a("--checkpoint-minutes", type=nonneg_float, default=5.0,
      help="also save last.npz when this many minutes have passed since the last save (default 5; 0: off). "
           "last.npz is also saved at every epoch's end and on Ctrl-C, so a killed run loses at most the "
           "steps since the last save: --resume continues from there")
    a("--no-progress", action="store_true", help="no progress bar")
    add_finetune_flags(p)
    return p


def _explicit_flags(argv):
    """The destinations of the flags given on the command line (not defaults)."""

    probe = build_parser()
    for action in probe._actions:
        action.default = argparse.SUPPRESS
    return set(vars(probe.parse_args(argv)))


def _parse_saved_args(saved, out):
    """A run's saved settings (config.json 'args'), checked by the parser that first accepted them."""
    class Strict(OneLineParser):
        def error(self, message):
            raise UserError(f"{os.path.join(out, 'config.json')} is damaged: its settings do not parse "
                            f"({message})")

    parser = build_parser()
    parser.__class__ = Strict
    flags = {a.dest: a for a in parser._actions if a.option_strings}
    argv = []
    for key, value in saved.items():
        action = flags.get(key)
        if action is None or value is None or key == "resume":
            continue
        if isinstance(action, argparse._StoreTrueAction):
            if value not in (True, False):
                parser.error(f"{key} must be true or false, got {value!r}")
            argv += [action.option_strings[0]] if value else []
        elif isinstance(value, (str, int, float)) and not isinstance(value, bool):
            argv += [action.option_strings[0], str(value)]
        else:
            parser.error(f"{key} is {value!r}")
    return parser.parse_args(argv)


def resume_settings(args, saved, given):
    """Give ``args`` the saved settings of a run being resumed; return the allowed changes.

    A flag given now keeps its new value if it only steers the run
    (RESUME_FREE) or may change from the checkpoint on (RESUME_CHANGEABLE:
    returned as ``{name: (saved, new)}``); any other flag must repeat the
    saved value, else a UserError lists them.
    """
    parsed = vars(apply_preset_defaults(_parse_saved_args(saved, args.out)))
    saved = {key: parsed[key] for key in saved if key in parsed}
    changes, fixed = {}, []
    for key, value in saved.items():
        if key in ("resume", "max_minutes") or not hasattr(args, key):   # these belong to one command
            continue
        if key not in given:
            setattr(args, key, value)
            continue
        now = getattr(args, key)
        same = now == value or (key == "data" and isinstance(now, str) and isinstance(value, str)
                                and os.path.realpath(now) == os.path.realpath(value))
        if same or key in RESUME_FREE:
            continue
        flag = "--" + key.replace("_", "-")
        if key in RESUME_CHANGEABLE:
            changes[key] = (value, now)
        else:
            fixed.append(f"{flag} {value if value is not None else '(not given)'} (given: {now})")
    if fixed:
        allowed = ", ".join("--" + k.replace("_", "-") for k in RESUME_CHANGEABLE)
        raise UserError(f"--resume continues {args.out} with the settings it was started with: "
                        f"{'; '.join(fixed)}. Only {allowed} can change on resume; to train with other "
                        "settings, start a new run with another --out")
    return changes


def _setup(argv, group):
    """Parse and check the command line and the run folder: (args, changes, devices, spec, last)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if group.is_root:
        args = build_parser().parse_args(argv)
    else:             # every process parses the same command line; process 0 reports what is wrong with it
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            args = build_parser().parse_args(argv)

    def default_out():
        data_name = args.data if args.data == "fashion-mnist" else os.path.basename(os.path.normpath(args.data))
        return os.path.join("runs", f"{args.preset}-{data_name}")

    out_defaulted = args.out is None
    if out_defaulted:
        args.out = default_out()
    changes, given = {}, _explicit_flags(argv)
    if args.resume:
        changes = resume_settings(args, read_run_config(args.out)["args"], given)
    setup_finetune(args, given)
    if out_defaulted and not args.resume:
        args.out = default_out()        # --init-from may have chosen the preset
    cfg = variant_config(get_config(args.preset), args.variant)
    apply_preset_defaults(args)
    if "lr_step" in given and args.lr_schedule != "step":
        raise UserError(f"--lr-step applies to --lr-schedule step, not {args.lr_schedule} (the schedule of "
                        f"preset '{args.preset}' unless --lr-schedule says otherwise)")
    if args.batch_size % group.size:
        raise UserError(f"--batch-size {args.batch_size} does not divide among {group.size} processes; give a "
                        f"multiple of {group.size} (each process takes an equal share of every batch)")
    devices = tower_devices(args.backend, args.gpus, cfg.towers, local=(group.local_rank, group.local_size))
    spec = describe_data(args.data, args.data_dir, args.preset, init=args.init)
    if group.is_root:                       # process 0 alone writes the run folder
        check_writable(args.out)
        left = remove_stale(args.out) + remove_stale(os.path.join(args.out, "checkpoints"))
        if left:
            print(f"removed {len(left)} unfinished file(s) that a killed run left in {args.out}: {', '.join(left)}",
                  flush=True)
    last = os.path.join(args.out, "checkpoints", "last.npz")
    if not args.resume and os.path.exists(last):
        raise UserError(f"{args.out} already holds a run; continue it with --resume, or choose another --out")
    if args.resume and not os.path.exists(last):
        best = os.path.join(args.out, "checkpoints", "best.npz")
        if os.path.exists(best):
            raise UserError(f"nothing to resume from: {last} is missing but {best} is there; copy it to last.npz to "
                            "continue from it, or choose another --out")
        if group.is_root:
            print(f"{args.out} has no checkpoint yet (the run stopped before its first save): starting it again "
                  "from step 0 with its settings", flush=True)
        args.resume, changes = False, {}
    return args, changes, devices, spec, last


def _main(argv, group):
    started = time.monotonic()            # --max-minutes counts from here
    if group.size == 1:
        args, changes, devices, spec, last = _setup(argv, group)
    else:
        try:
            args, changes, devices, spec, last = _setup(argv, group)
            failure = None
        except (Exception, SystemExit) as exc:     # noqa: BLE001  (user errors agreed on below; bugs re-raised)
            if not isinstance(exc, SystemExit) and user_error_message(exc) is None:
                raise
            failure = exc
        # every process has read the run folder before process 0 writes to it
        code = agree_on_setup("train", group, failure)
        if code is not None:
            return code

    # process-wide settings for this run only, recorded in config.json: the towers in a thread each
    # with a one-thread BLAS where that pays, and freed memory kept for the next step. Several
    # processes on one machine share its cores.
    cores = distributed.cores_per_process(group)
    threads = all(d == "cpu" for d in devices) and tower_threads_pay(len(devices), cores)
    blas = 1 if threads else (cores if group.local_size > 1 else None)
    with tuned(blas_threads=blas, keep_freed_memory=True) as tuning:
        trainer = Trainer(args, spec, devices, group)
        trainer.model.tower_threads = threads and tuning["blas_threads"] == 1
        if args.max_minutes:
            trainer.deadline = started + 60 * args.max_minutes
        try:
            _start(trainer, args, changes, last, {**tuning, "tower_threads": trainer.model.tower_threads,
                                                  "kernels": kernels.active(), **group.describe()})
            return _fit(trainer, args, last)
        finally:
            trainer.model.tower_threads = False     # ends the tower threads


def _start(trainer, args, changes, last, runtime):
    """Restore the checkpoint (--resume) or start the run folder; say what is about to happen."""
    spec, devices = trainer.spec, [str(d) for d in trainer.model.devices]
    config = {"preset": args.preset, "variant": args.variant, "init": trainer.model.init_scheme, "seed": args.seed,
              "towers": len(devices), "devices": devices, "args": vars(args), "data": dataclasses.asdict(spec),
              "runtime": runtime}
    say = trainer.group.is_root             # process 0 alone prints and writes
    if args.resume:
        trainer.restore(last, changed=changes)
        trainer.trim_metrics()
        if not say:
            return
        print(f"resuming {args.out} at epoch {trainer.epoch + 1}, step {trainer.step}", flush=True)
        if changes:
            for key, (old, new) in changes.items():
                print(f"resume: --{key.replace('_', '-')} {new} from step {trainer.step} on (was {old})", flush=True)
            trainer.log({"type": "resume", "step": trainer.step,
                         "changed": {k: {"was": old, "now": new} for k, (old, new) in changes.items()}})
            write_run_config(args.out, config)      # a later --resume keeps the new settings
    elif not say:
        return
    else:
        write_run_config(args.out, config)
        open(os.path.join(args.out, "metrics.jsonl"), "w").close()
    for name, ds in (("train", trainer.train_set), ("test", trainer.test_set)):
        links = getattr(ds, "skipped_links", [])
        if links:
            print(f"{name}: did not follow {len(links)} folder link(s) leading back into {spec.path} (a loop, or "
                  f"images already listed): " + ", ".join(f"{a} -> {b}" for a, b in links[:3]), flush=True)
    processes = runtime.get("processes", 1)
    variant = "" if args.variant == "baseline" else f" {args.variant}"
    print(f"training '{args.preset}'{variant} ({trainer.model.num_parameters():,} parameters) on {spec.kind} "
          f"({trainer.loader.num_examples} images, {spec.num_classes} classes), towers on {', '.join(devices)}"
          f"{' (a thread each)' if runtime['tower_threads'] else ''}"
          f"{f' in each of {processes} processes' if processes > 1 else ''}"
          f"{'' if runtime['kernels'] == 'fast' else ', ' + runtime['kernels'] + ' kernels'}; run folder {args.out}",
          flush=True)


def _command(trainer):
    """How to start this command again: under mpirun with as many processes, if it runs under mpirun."""
    size = trainer.group.size
    return "python -m alexnet.train" if size == 1 else f"mpirun -n {size} python -m alexnet.train"


def _fit(trainer, args, last):
    """Train until done, interrupted (Ctrl-C: save and exit 130) or diverged (exit 1)."""
    def on_sigint(signum, frame):
        if trainer.stop_requested:
            raise KeyboardInterrupt
        trainer.stop_requested = True
        if trainer.group.is_root:
            print("\ninterrupt: finishing this step and saving a checkpoint (Ctrl-C again to abort)",
                  file=sys.stderr, flush=True)

    old = signal.signal(signal.SIGINT, on_sigint)
    try:
        with warnings.catch_warnings():
            # a diverging run overflows in many places; the NaN check below reports it, once
            warnings.filterwarnings("ignore", r"(overflow|invalid value|divide by zero) encountered", RuntimeWarning)
            outcome = trainer.fit()
    except NonFiniteLoss as exc:
        step, what = exc.args
        lower = f"{trainer.optim.lr / 10:g}"
        rates = f"learning rate {trainer.optim.lr:g}, weight decay {args.weight_decay:g}"
        if os.path.exists(last):
            good = checkpoint.load(last, arrays=False)["progress"]["step"]
            advice = (f"the last good checkpoint, {last} (step {good}), is kept. Too large a step ({rates}) is the "
                      f"usual cause: continue at a lower rate with {_command(trainer)} --out {args.out} "
                      f"--resume --lr {lower}")
        else:
            advice = (f"no checkpoint was written yet. Too large a step ({rates}) is the usual cause: start again "
                      f"with a lower --lr (e.g. {lower}) or --weight-decay")
        if trainer.group.is_root:           # every process stops at the same step; one says why
            print(f"train: error: the {what} became NaN or infinite at step {step}; stopping. {advice}",
                  file=sys.stderr)
        return 1
    except Exception as exc:
        if is_gpu_out_of_memory(exc):
            raise gpu_memory_error(exc, args.batch_size, [str(d) for d in trainer.model.devices]) from None
        raise
    finally:
        signal.signal(signal.SIGINT, old)
    if not trainer.group.is_root:
        return 130 if outcome == "interrupted" else 0
    if outcome == "interrupted":
        print(f"interrupted at step {trainer.step}; checkpoint saved to {last}. "
              f"Continue with: {_command(trainer)} --out {args.out} --resume", flush=True)
        return 130
    best = f"{100 * trainer.best_top1:.2f}%" if trainer.best_top1 >= 0 else "n/a"
    limit = f" (--max-minutes {args.max_minutes:g} reached)" if trainer.time_up else ""
    print(f"done: {trainer.step} steps{limit}; best test top-1 {best}; run folder {args.out}", flush=True)
    return 0

def main(argv=None):
    try:
        group = distributed.group()
    except distributed.MPIUnavailable as exc:
        if distributed.launched_rank() == 0:        # every process would say the same
            print(f"train: error: {exc}", file=sys.stderr)
        return 2
    if group.size == 1:
        return run_cli("train", lambda a: _main(a, group), argv)
    # a process that fails after the setup stops the whole job, saying which process and why
    return distributed.run_everywhere(group, lambda: run_cli(f"train (process {group.rank} of {group.size})",
                                                             lambda a: _main(a, group), argv,
                                                             on_error=lambda: group.abort(2)))


if __name__ == "__main__":
    sys.exit(main())
