"""Train AlexNet with the paper's recipe (Section 5).

    python -m alexnet.train                                   # mini preset, Fashion-MNIST, CPU
    python -m alexnet.train --preset paper --backend cupy --gpus 0,1
    python -m alexnet.train --out runs/mini --resume          # continue where it stopped

SGD with momentum 0.9 and weight decay 5e-4, batch 128, learning rate 0.01
divided by 10 when the validation error stops improving (``--lr-schedule
plateau``, at most three times) or every ``--lr-step`` epochs (``step``).
Each preset carries its recipe (``alexnet.configs``); the mini preset's is
for two CPU cores: batch 64, learning rate 0.02, 8 epochs, divided by 10
after epoch 6. Every decision is made on a validation split held out of the
training images (``--val-size``); the test split is evaluated beside it and
only reported. Every setting, its flag and rule: ``alexnet.settings``.

The run folder (``--out``) holds config.json, metrics.jsonl (one JSON object
per logged step and per epoch), checkpoints/last.npz and best.npz (weights,
optimizer, schedule, counters, random state; written atomically) and
curves.png. ``--resume`` continues bit for bit: the data order depends only
on (seed, epoch), the augmentation of a batch only on (seed, epoch, batch),
and the dropout masks on counters saved in the checkpoint. One run writes a
folder at a time: a second ``alexnet.train`` on a folder in use is refused
(``.lock`` names the process holding it; a killed run's lock is no obstacle).

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

from .cli import OneLineParser, UserError, agree_on_setup, run_cli, user_error_message
from .dataspec import default_val_size, describe_data
from .devices import gpu_memory_error, is_gpu_out_of_memory, tower_devices
from .finetune import finetune_preset
from .runs import RunFolderLock, check_writable, read_run_config, write_run_config
from .settings import CHANGEABLE, COMMAND, FREE, TrainConfig, add_arguments, flag, names
from .trainer import NonFiniteLoss, Trainer


def build_parser():
    """The command line: a flag per setting of alexnet.settings.TrainConfig."""
    return add_arguments(OneLineParser(prog="python -m alexnet.train", description=__doc__.split("\n\n")[0]))


def _explicit_flags(argv):
    """The settings given on the command line (not defaults)."""
    probe = build_parser()
    for action in probe._actions:
        action.default = argparse.SUPPRESS
    return set(vars(probe.parse_args(argv)))


def resume_settings(config, saved, given, where):
    """The settings of a run being resumed, and the changes allowed: (config, {name: (saved, new)}).

    A setting given now keeps its new value if it only steers the run (FREE) or may change from the
    checkpoint on (CHANGEABLE, returned as a change); any other must repeat the saved value, else a
    UserError lists them. What is not given is the run's.
    """
    old = TrainConfig.from_saved(saved, where).resolved()
    values, changes, fixed = {}, {}, []
    for f in dataclasses.fields(TrainConfig):
        name, role = f.name, f.metadata["resume"]
        was, now = getattr(old, name), getattr(config, name)
        if role == COMMAND or name not in saved:         # a setting the run did not record: this command's
            continue
        if name not in given:
            values[name] = was
            continue
        same = now == was or (name == "data" and isinstance(now, str) and isinstance(was, str)
                              and os.path.realpath(now) == os.path.realpath(was))
        if same or role == FREE:
            continue
        if role == CHANGEABLE:
            changes[name] = (was, now)
        else:
            fixed.append(f"{flag(name)} {was if was is not None else '(not given)'} (given: {now})")
    if fixed:
        allowed = ", ".join(flag(k) for k in names(CHANGEABLE))
        raise UserError(f"--resume continues {config.out} with the settings it was started with: "
                        f"{'; '.join(fixed)}. Only {allowed} can change on resume; to train with other "
                        "settings, start a new run with another --out")
    if "lr_schedule" in changes and "lr_step" not in given and values.get("lr_schedule", config.lr_schedule) != "step":
        values["lr_step"] = None             # the step schedule's period has no meaning on a plateau
    return dataclasses.replace(config, **values), changes


def _parse(argv, group):
    """(TrainConfig, the settings given) from the command line; process 0 alone says what is wrong with it."""
    if group.is_root:
        args = build_parser().parse_args(argv)
    else:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            args = build_parser().parse_args(argv)
    return TrainConfig(**vars(args)), _explicit_flags(argv)


def _default_out(config):
    data = config.data if config.data == "fashion-mnist" else os.path.basename(os.path.normpath(config.data))
    return os.path.join("runs", f"{config.preset}-{data}")


def _hold(out, group, held):
    """Process 0 locks the run folder ``out`` for this run, once."""
    if group.is_root and not held:
        check_writable(out)
        held.append(RunFolderLock(out))


def _setup(config, given, group, held):
    """Check the settings and take the run folder: (config resolved, changes, devices, spec, last checkpoint).

    Process 0 locks the folder (into ``held``) before it reads it; the caller releases the lock when the run ends.
    """
    out_defaulted = config.out is None
    if not out_defaulted:                   # from Python too: '~/runs/x' is a folder in the home, not '~'
        config = dataclasses.replace(config, out=os.path.expanduser(config.out))
    if out_defaulted:
        config = dataclasses.replace(config, out=_default_out(config))
    changes = {}
    if config.resume:
        if os.path.isdir(config.out):        # a missing folder is reported by reading its config.json below
            _hold(config.out, group, held)
        config, changes = resume_settings(config, read_run_config(config.out)["args"], given,
                                          os.path.join(config.out, "config.json"))
    if not (config.resume and config.init_from is not None):    # on --resume the run's settings say the preset
        fmt, preset = finetune_preset(config.init_from, config.format, config.preset, "preset" in given)
        config = dataclasses.replace(config, format=fmt, preset=preset)
    if out_defaulted and not config.resume:
        config = dataclasses.replace(config, out=_default_out(config))    # --init-from may have chosen the preset
    config = config.resolved().check(processes=group.size)
    cfg = config.network()
    devices = tower_devices(config.backend, config.gpus, cfg.towers, local=(group.local_rank, group.local_size))
    spec = describe_data(config.data, config.data_dir, config.preset, init=config.init)
    if config.val_size is None:             # the dataset's validation split, recorded in config.json
        config = dataclasses.replace(config, val_size=default_val_size(spec)).check(processes=group.size)
    if group.is_root:                       # process 0 alone writes the run folder
        _hold(config.out, group, held)
        left = remove_stale(config.out) + remove_stale(os.path.join(config.out, "checkpoints"))
        if left:
            print(f"removed {len(left)} unfinished file(s) that a killed run left in {config.out}: "
                  f"{', '.join(left)}", flush=True)
    last = os.path.join(config.out, "checkpoints", "last.npz")
    if not config.resume and os.path.exists(last):
        raise UserError(f"{config.out} already holds a run; continue it with --resume, or choose another --out")
    if config.resume and not os.path.exists(last):
        best = os.path.join(config.out, "checkpoints", "best.npz")
        if os.path.exists(best):
            raise UserError(f"nothing to resume from: {last} is missing but {best} is there; copy it to last.npz to "
                            "continue from it, or choose another --out")
        if group.is_root:
            print(f"{config.out} has no checkpoint yet (the run stopped before its first save): starting it again "
                  "from step 0 with its settings", flush=True)
        config, changes = dataclasses.replace(config, resume=False), {}
    return config, changes, devices, spec, last


def run(config, given=None, group=None):
    """Train with ``config`` (a TrainConfig) as ``python -m alexnet.train`` would; a user's mistake raises UserError.

    Returns 0 (done), 130 (interrupted: a checkpoint was saved) or 1 (the loss diverged). ``given``: the
    settings given explicitly, which --resume holds against the run's (default: those not at their
    default value; the others are the run's).
    """
    group = distributed.Group() if group is None else group
    if given is None:
        given = {f.name for f in dataclasses.fields(TrainConfig) if getattr(config, f.name) != f.default}
    return _run(lambda held: _setup(config, given, group, held), group, time.monotonic())


def _main(argv, group):
    started = time.monotonic()            # --max-minutes counts from here
    return _run(lambda held: _setup(*_parse(argv, group), group, held), group, started)


def _run(setup, group, started):
    held = []                     # the run folder's lock, once process 0 has taken it
    try:
        return _train(setup, group, started, held)
    finally:
        for lock in held:
            lock.release()        # the next writer may start


def _train(setup, group, started, held):
    if group.size == 1:
        config, changes, devices, spec, last = setup(held)
    else:
        try:
            config, changes, devices, spec, last = setup(held)
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
        trainer = Trainer(config, spec, devices, group)
        trainer.model.tower_threads = threads and tuning["blas_threads"] == 1
        if config.max_minutes:
            trainer.deadline = started + 60 * config.max_minutes
        try:
            _start(trainer, config, changes, last, {**tuning, "tower_threads": trainer.model.tower_threads,
                                                    "kernels": kernels.active(), **group.describe()})
            return _fit(trainer, config, last)
        finally:
            trainer.model.tower_threads = False     # ends the tower threads


def _start(trainer, config, changes, last, runtime):
    """Restore the checkpoint (--resume) or start the run folder; say what is about to happen."""
    spec, devices = trainer.spec, [str(d) for d in trainer.model.devices]
    record = {"preset": config.preset, "variant": config.variant, "init": trainer.model.init_scheme,
              "seed": config.seed, "towers": len(devices), "devices": devices, "args": config.saved(),
              "data": dataclasses.asdict(spec), "runtime": runtime}
    say = trainer.group.is_root             # process 0 alone prints and writes
    if config.resume:
        trainer.restore(last, changed=changes)
        trainer.trim_metrics()
        if not say:
            return
        print(f"resuming {config.out} at epoch {trainer.epoch + 1}, step {trainer.step}", flush=True)
        for key, (old, new) in changes.items():
            print(f"resume: --{key.replace('_', '-')} {new} from step {trainer.step} on (was {old})", flush=True)
        recorded = read_run_config(config.out).get("runtime")
        before = recorded.get("processes", 1) if isinstance(recorded, dict) else 1
        logged = {k: {"was": old, "now": new} for k, (old, new) in changes.items()}
        if before != trainer.group.size:
            # the same run up to round-off (test_distributed), but no longer bit for bit the uninterrupted one
            print(f"resume: {trainer.group.size} process{'es' if trainer.group.size > 1 else ''} from step "
                  f"{trainer.step} on (was {before}); each step is the same up to float round-off, the gradients "
                  f"being summed in another order, so the weights will not equal an uninterrupted run's bit for "
                  f"bit", flush=True)
            logged["processes"] = {"was": before, "now": trainer.group.size}
        if logged:
            trainer.log({"type": "resume", "step": trainer.step, "changed": logged})
            write_run_config(config.out, record)      # a later --resume keeps the new settings
    elif not say:
        return
    else:
        write_run_config(config.out, record)
        open(os.path.join(config.out, "metrics.jsonl"), "w").close()
    for name, ds in (("train", trainer.train_set), ("test", trainer.test_set)):
        links = getattr(ds, "skipped_links", [])
        if links:
            print(f"{name}: did not follow {len(links)} folder link(s) leading back into {spec.path} (a loop, or "
                  f"images already listed): " + ", ".join(f"{a} -> {b}" for a, b in links[:3]), flush=True)
    processes = runtime.get("processes", 1)
    variant = "" if config.variant == "baseline" else f" {config.variant}"
    held = ("no validation split" if trainer.val_set is None else "validation: its val/ folder"
            if trainer.val_indices is None else f"{len(trainer.val_indices)} more held out for validation")
    print(f"training '{config.preset}'{variant} ({trainer.model.num_parameters():,} parameters) on {spec.kind} "
          f"({trainer.loader.num_examples} training images, {held}; {spec.num_classes} classes), towers on "
          f"{', '.join(devices)}"
          f"{' (a thread each)' if runtime['tower_threads'] else ''}"
          f"{f' in each of {processes} processes' if processes > 1 else ''}"
          f"{'' if runtime['kernels'] == 'fast' else ', ' + runtime['kernels'] + ' kernels'}; run folder {config.out}",
          flush=True)


def _command(trainer):
    """How to start this command again: under mpirun with as many processes, if it runs under mpirun."""
    size = trainer.group.size
    return "python -m alexnet.train" if size == 1 else f"mpirun -n {size} python -m alexnet.train"


def _fit(trainer, config, last):
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
        rates = f"learning rate {trainer.optim.lr:g}, weight decay {config.weight_decay:g}"
        if os.path.exists(last):
            good = checkpoint.load(last, arrays=False)["progress"]["step"]
            advice = (f"the last good checkpoint, {last} (step {good}), is kept. Too large a step ({rates}) is the "
                      f"usual cause: continue at a lower rate with {_command(trainer)} --out {config.out} "
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
            raise gpu_memory_error(exc, config.batch_size, [str(d) for d in trainer.model.devices]) from None
        raise
    finally:
        signal.signal(signal.SIGINT, old)
    if not trainer.group.is_root:
        return 130 if outcome == "interrupted" else 0
    if outcome == "interrupted":
        print(f"interrupted at step {trainer.step}; checkpoint saved to {last}. "
              f"Continue with: {_command(trainer)} --out {config.out} --resume", flush=True)
        return 130
    limit = f" (--max-minutes {config.max_minutes:g} reached)" if trainer.time_up else ""
    last = trainer.last_eval or {}
    said = (f"best validation top-1 {100 * trainer.best_top1:.2f}% (best.npz)" if trainer.best_top1 >= 0 else
            "no validation split, so no best.npz")
    if "test_top1" in last:
        said += f"; test top-1 at the end {100 * last['test_top1']:.2f}%"
    print(f"done: {trainer.step} steps{limit}; {said}; run folder {config.out}", flush=True)
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
