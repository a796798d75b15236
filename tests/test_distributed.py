"""Data parallelism: K processes started by mpirun train one run as one process does.

The mpirun tests need Open MPI's mpirun and mpi4py (``.ci/run`` installs
both); elsewhere they skip, and in CI they fail instead, so that they cannot
silently stop running. Every launch has a timeout: a hang fails the test.
"""

import contextlib
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from minidl import Dropout, Parameter, checkpoint, distributed, kernels
from minidl.data import ArrayDataset, DataLoader
from minidl.data import TrainTransform

ROOT = Path(__file__).resolve().parents[1]
TRAIN = ["--train-subset", "512", "--val-size", "200", "--test-subset", "200", "--batch-size", "32", "--no-progress",
         "--checkpoint-minutes", "0"]
TRAIN_SETTINGS = dict(train_subset=512, val_size=200, test_subset=200, batch_size=32, no_progress=True,
                      checkpoint_minutes=0)
LAUNCH_TIMEOUT = 240        # seconds: a hung job fails the test instead of CI


def mpi_missing():
    if shutil.which("mpirun") is None:
        return "Open MPI's mpirun is not installed (apt-get install openmpi-bin libopenmpi-dev)"
    if importlib.util.find_spec("mpi4py") is None:
        return 'mpi4py is not installed (pip install -e ".[mpi]")'
    version = subprocess.run(["mpirun", "--version"], capture_output=True, text=True).stdout
    if "Open MPI" not in version:
        return f"these tests drive Open MPI's mpirun (--oversubscribe); this one is {version.strip()[:60]!r}"
    return None


@pytest.fixture(scope="module")
def mpirun():
    """mpirun(k, *args, timeout=...) -> CompletedProcess: ``mpirun -n k <args>`` from the repository root."""
    missing = mpi_missing()
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must run the MPI tests: {missing}")
        pytest.skip(missing)

    def run(k, *args, timeout=LAUNCH_TIMEOUT, env=None):
        return subprocess.run(mpi_command(k, *args), cwd=ROOT, env=mpi_env(env), capture_output=True, text=True,
                              timeout=timeout)

    return run


def mpi_command(k, *args):
    return ["mpirun", "-n", str(k), "--oversubscribe", *map(str, args)]


def mpi_env(extra=None):
    env = dict(os.environ)
    env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               OMPI_MCA_btl_vader_single_copy_mechanism="none",   # containers forbid cross-process memory access
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])))
    env.update(extra or {})
    return env


def weights(run):
    return checkpoint.load(os.path.join(run, "checkpoints", "last.npz"))


def files_in(run):
    return sorted(str(p.relative_to(run)) for p in Path(run).rglob("*") if p.is_file())


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
    """A 6-step mini run in this one process: what the K-process runs must reproduce."""
    from alexnet import train

    run = tmp_path_factory.mktemp("one") / "run"
    assert train.main([*TRAIN, "--max-steps", "6", "--out", str(run)]) == 0
    return run


@pytest.fixture(scope="module")
def two_processes(mpirun, tmp_path_factory):
    run = tmp_path_factory.mktemp("two") / "run"
    done = mpirun(2, sys.executable, "-m", "alexnet.train", *TRAIN, "--max-steps", "6", "--out", run)
    assert done.returncode == 0, done.stderr[-3000:]
    return run, done


# -- K processes are one process ---------------------------------------------------------


def assert_same_run(a, b, k):
    wa, wb = weights(a), weights(b)
    assert wa["progress"]["step"] == wb["progress"]["step"] == 6
    assert wa["progress"]["epoch_stats"]["seen"] == wb["progress"]["epoch_stats"]["seen"] == 6 * 32
    for name, w in wa["model"].items():
        # float32 round-off only (the gradients are summed in another order): measured <= 4.1e-7 of the
        # largest weight at K = 2 and 4; a wrong shard, augmentation or dropout mask gives ~0.8
        err = float(np.abs(wb["model"][name] - w).max() / np.abs(w).max())
        assert err < 2e-5, (k, name, err)
    ma = [json.loads(line) for line in open(os.path.join(a, "metrics.jsonl"))]
    mb = [json.loads(line) for line in open(os.path.join(b, "metrics.jsonl"))]
    assert [(r["type"], r["step"]) for r in ma] == [(r["type"], r["step"]) for r in mb]
    # the sharded evaluation sums every process's images: all 200 counted once
    assert abs(ma[-1]["test_loss"] - mb[-1]["test_loss"]) < 1e-3


def test_two_processes_train_as_one(one_process, two_processes):
    run, done = two_processes
    assert_same_run(one_process, run, 2)
    config = json.load(open(os.path.join(run, "config.json")))
    assert config["runtime"]["processes"] == 2 and config["runtime"]["mpi"].startswith(("Open MPI", "MPICH"))
    assert config["runtime"]["blas_threads"] == 1          # two processes share this machine's cores


def test_four_processes_oversubscribed_train_as_one(one_process, mpirun, tmp_path):
    done = mpirun(4, sys.executable, "-m", "alexnet.train", *TRAIN, "--max-steps", "6", "--out", tmp_path / "run")
    assert done.returncode == 0, done.stderr[-3000:]
    assert_same_run(one_process, tmp_path / "run", 4)


def test_process_zero_alone_prints_and_writes(one_process, two_processes):
    run, done = two_processes
    assert files_in(run) == files_in(one_process)        # no file of a second process, no leftover
    assert done.stdout.count("done: 6 steps") == 1
    assert done.stdout.count("training 'mini'") == 1 and "in each of 2 processes" in done.stdout
    assert "Traceback" not in done.stderr


def test_a_resumed_two_process_run_is_bit_exact(two_processes, mpirun, tmp_path):
    straight, _ = two_processes
    run = tmp_path / "run"
    first = mpirun(2, sys.executable, "-m", "alexnet.train", *TRAIN, "--max-steps", "3", "--out", run)
    assert first.returncode == 0, first.stderr[-3000:]
    assert weights(run)["progress"]["step"] == 3
    again = mpirun(2, sys.executable, "-m", "alexnet.train", "--out", run, "--resume", "--max-steps", "6",
                   "--no-progress")
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("resuming") == 1
    a, b = weights(straight), weights(run)
    for name in a["model"]:
        assert np.array_equal(a["model"][name], b["model"][name]), name
    assert a["optim"]["velocity"].keys() == b["optim"]["velocity"].keys()
    for key, v in a["optim"]["velocity"].items():
        assert np.array_equal(v, b["optim"]["velocity"][key]), key
    assert a["rng"] == b["rng"]


def test_resuming_under_another_number_of_processes_says_so_and_records_it(two_processes, tmp_path):
    run = Path(shutil.copytree(two_processes[0], tmp_path / "run"))
    done = subprocess.run([sys.executable, "-m", "alexnet.train", "--out", str(run), "--resume", "--max-steps", "7",
                           "--no-progress"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert ("resume: 1 process from step 6 on (was 2); each step is the same up to float round-off, the gradients "
            "being summed in another order, so the weights will not equal an uninterrupted run's bit for bit"
            in done.stdout.splitlines())
    records = [json.loads(line) for line in open(run / "metrics.jsonl")]
    resumed = [r for r in records if r.get("type") == "resume"]
    assert len(resumed) == 1 and resumed[0]["step"] == 6
    assert resumed[0]["changed"]["processes"] == {"was": 2, "now": 1}
    assert json.load(open(run / "config.json"))["runtime"]["processes"] == 1     # a later resume compares with 1
    assert weights(run)["progress"]["step"] == 7


# -- faults: nothing hangs, nothing half-written ---------------------------------------


def rank_pids(job_pid, rank):
    """PIDs of the processes under ``job_pid`` that the launcher numbered ``rank``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            environ = open(f"/proc/{entry}/environ", "rb").read().split(b"\0")
            cmdline = open(f"/proc/{entry}/cmdline", "rb").read()
        except OSError:
            continue
        if f"OMPI_COMM_WORLD_RANK={rank}".encode() in environ and b"alexnet.train" in cmdline \
                and job_pid in ancestors(int(entry)):
            found.append(int(entry))
    return found


def ancestors(pid):
    chain = []
    while pid > 1:
        try:
            stat = open(f"/proc/{pid}/stat").read()
        except OSError:
            break
        pid = int(stat.rsplit(")", 1)[1].split()[1])      # the field after the state: the parent's PID
        chain.append(pid)
    return chain


@contextlib.contextmanager
def a_long_two_process_run(run):
    """A 2-process training job that saves every 2 steps, once its first checkpoint is on disk: (job, last.npz).
    The job is killed on the way out if the test left it running."""
    job = subprocess.Popen(mpi_command(2, sys.executable, "-m", "alexnet.train", *TRAIN, "--max-steps", "100000",
                                       "--checkpoint-every", "2", "--out", run),
                           cwd=ROOT, env=mpi_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        last = run / "checkpoints" / "last.npz"
        deadline = time.monotonic() + LAUNCH_TIMEOUT
        while not last.exists() and job.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert last.exists(), "the run wrote no checkpoint"
        yield job, last
    finally:
        if job.poll() is None:
            job.kill()
            job.communicate()


def test_a_killed_process_stops_the_others_and_the_checkpoint_stays_good(mpirun, tmp_path):
    with a_long_two_process_run(tmp_path / "run") as (job, last):
        victims = rank_pids(job.pid, 1)
        assert len(victims) == 1
        os.kill(victims[0], signal.SIGKILL)
        output, _ = job.communicate(timeout=60)          # the whole job ends: no process left waiting
    assert job.returncode != 0
    assert "rank 1" in output and "signal 9" in output, output[-2000:]
    state = checkpoint.load(str(last))                   # the last checkpoint is whole
    assert state["progress"]["step"] >= 2


def test_interrupted_processes_agree_on_a_step_save_it_and_resume(mpirun, tmp_path):
    run = tmp_path / "run"
    with a_long_two_process_run(run) as (job, last):
        for rank in (0, 1):                  # Ctrl-C in a terminal reaches every process of the job
            for pid in rank_pids(job.pid, rank):
                os.kill(pid, signal.SIGINT)
        output, _ = job.communicate(timeout=60)
    assert job.returncode == 130, output[-2000:]
    step = checkpoint.load(str(last), arrays=False)["progress"]["step"]
    assert f"interrupted at step {step}; checkpoint saved" in output
    assert output.count("interrupt: finishing this step") == 1          # process 0 speaks for both
    assert "Continue with: mpirun -n 2 python -m alexnet.train" in output
    again = mpirun(2, sys.executable, "-m", "alexnet.train", "--out", run, "--resume", "--max-steps", str(step + 2),
                   "--no-progress")
    assert again.returncode == 0, again.stderr[-2000:]
    assert f"resuming {run} at epoch" in again.stdout and f"step {step}" in again.stdout


def test_a_process_that_raises_stops_every_process_and_names_itself(mpirun):
    script = (
        "from minidl import distributed\n"
        "g = distributed.group()\n"
        "def work():\n"
        "    if g.rank == 1:\n"
        "        raise ValueError('shard 1 cannot be read')\n"
        "    g.sum([1.0])                      # rank 0 waits here for a partner that never comes\n"
        "    return 0\n"
        "distributed.run_everywhere(g, work)\n"
    )
    start = time.monotonic()
    done = mpirun(2, sys.executable, "-c", script, timeout=120)
    assert done.returncode != 0
    assert "process 1 of 2: ValueError; stopping all 2 processes" in done.stderr
    assert "shard 1 cannot be read" in done.stderr
    assert time.monotonic() - start < 120


def test_without_mpi4py_one_line_says_what_to_install(mpirun, tmp_path):
    shim = tmp_path / "no-mpi4py" / "mpi4py"
    shim.mkdir(parents=True)
    (shim / "__init__.py").write_text("raise ImportError('No module named mpi4py')\n")
    env = {"PYTHONPATH": os.pathsep.join([str(shim.parent), str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = mpirun(2, sys.executable, "-m", "alexnet.train", *TRAIN, "--out", tmp_path / "run", env=env)
    assert done.returncode != 0
    lines = [line for line in done.stderr.splitlines() if line.startswith("train: error:")]
    assert lines == [lines[0]] and 'pip install -e ".[mpi]"' in lines[0]
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "run").exists()


def test_a_batch_that_does_not_divide_among_the_processes_is_refused(mpirun, tmp_path):
    done = mpirun(3, sys.executable, "-m", "alexnet.train", *TRAIN, "--out", tmp_path / "run")
    assert done.returncode == 2
    # the same mistake on every process: said once, by process 0 (what follows is mpirun's own account)
    lines = [line for line in done.stderr.splitlines() if line.startswith("train")]
    assert "Traceback" not in done.stderr and "MPI_ABORT" not in done.stderr
    assert lines == ["train: error: --batch-size 32 does not divide among 3 processes; give a multiple of 3 (each "
                     "process takes an equal share of every batch)"]


# -- the pieces, in one process ----------------------------------------------------------


def test_without_mpirun_the_group_is_this_process_and_mpi4py_is_not_imported():
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OMPI_", "PMI_", "PMIX_"))}
    code = ("import sys\nfrom minidl import distributed\nimport alexnet.train\ng = distributed.group()\n"
            "print(g.size, g.rank, 'mpi4py' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.split() == ["1", "0", "False"]


@pytest.mark.parametrize("k", [2, 3, 4])
def test_the_loader_shards_make_up_the_one_process_batches(k):
    labels = np.arange(50) % 10
    ds = ArrayDataset(np.arange(50, dtype=np.uint8).reshape(50, 1, 1, 1).repeat(4, axis=2).repeat(4, axis=3), labels)
    whole = DataLoader(ds, 12, seed=3, drop_last=True, prefetch=0)
    shards = [DataLoader(ds, 12, seed=3, drop_last=True, prefetch=0, shard=(r, k)) for r in range(k)]
    for epoch in (0, 1):
        parts = [list(s.batches(epoch, start=1)) for s in shards]
        for b, (x, y) in enumerate(whole.batches(epoch, start=1)):
            assert np.array_equal(np.concatenate([p[b][0] for p in parts]), x)
            assert np.array_equal(np.concatenate([p[b][1] for p in parts]), y)


def test_a_shard_is_augmented_as_its_rows_of_the_whole_batch():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(12, 3, 20, 20), dtype=np.uint8)
    eigvec = np.linalg.qr(rng.standard_normal((3, 3)))[0]
    tf = TrainTransform(16, mean=[120.0, 110.0, 100.0], flip=True, pca=(np.array([0.2, 0.02, 0.005]), eigvec))
    whole = tf(images, np.random.default_rng([7, 1, 2]))
    for part in (slice(0, 4), slice(4, 8), slice(8, 12), slice(3, 9)):
        shard = tf(images[part], np.random.default_rng([7, 1, 2]), rows=(part.start, 12))
        assert np.array_equal(shard, whole[part])
    with pytest.raises(ValueError, match="do not fit"):
        tf(images, np.random.default_rng(0), rows=(4, 12))


@pytest.mark.usefixtures("kernel_set")
def test_a_shard_draws_its_rows_dropout_masks():
    x = np.random.default_rng(1).standard_normal((8, 5, 3)).astype(np.float32)
    whole = Dropout(0.5, seed=4)
    expected = whole.forward(x)
    for start in (0, 2, 6):
        drop = Dropout(0.5, seed=4)
        drop.set_batch_offset(start)
        assert np.array_equal(drop.forward(x[start:start + 2]), expected[start:start + 2])
    assert np.array_equal(kernels.hash_uniform((3, 4), 9, 2, offset=8), kernels.hash_uniform((5, 4), 9, 2)[2:])


def test_rows_split_a_batch_in_rank_order():
    assert [distributed.rows(10, r, 4) for r in range(4)] == [slice(0, 2), slice(2, 5), slice(5, 7), slice(7, 10)]
    assert distributed.Group().sum([1.5, 2]).tolist() == [1.5, 2.0]


# -- GPUs: NCCL between the processes' devices (on the simulated CuPy where there is no GPU) --------


def need_gpus(n):
    """Skip on a real machine with fewer than ``n`` GPUs (the simulated one has as many as it is told)."""
    import cupy

    simulated = os.sep + "simcuda" + os.sep in (cupy.__file__ or "")
    if not simulated and cupy.cuda.runtime.getDeviceCount() < n:
        pytest.skip(f"needs {n} GPUs")


@pytest.mark.gpu
def test_on_gpus_the_gradients_go_by_nccl_and_the_run_equals_one_process(one_process, mpirun, tmp_path):
    # two processes of one machine, each with its two towers on GPUs of its own: 0,1 and 2,3
    need_gpus(4)
    run = tmp_path / "run"
    done = mpirun(2, sys.executable, "-m", "alexnet.train", *TRAIN, "--max-steps", "6", "--out", run,
                  "--backend", "cupy", "--gpus", "0,1,2,3", env={"SIMCUDA_DEVICES": "4"})
    assert done.returncode == 0, done.stderr[-3000:]
    config = json.load(open(run / "config.json"))
    assert config["devices"] == ["cuda:0", "cuda:1"] and config["runtime"]["allreduce"] == "nccl"
    assert_same_run(one_process, run, 2)


@pytest.mark.gpu
def test_on_gpus_without_nccl_the_gradients_go_through_the_host(one_process, mpirun, tmp_path):
    # CuPy 14 without the NCCL library: `from cupy.cuda import nccl` works, with nccl.available False
    if distributed_cupy_is_real():
        pytest.skip("simulates a CuPy without NCCL")
    run = tmp_path / "run"
    done = mpirun(2, sys.executable, "-m", "alexnet.train", *TRAIN, "--max-steps", "6", "--out", run,
                  "--backend", "cupy", "--gpus", "0,1,2,3", env={"SIMCUDA_DEVICES": "4", "SIMCUDA_NCCL": "0"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.load(open(run / "config.json"))["runtime"]["allreduce"] == "mpi"
    assert_same_run(one_process, run, 2)


@pytest.mark.gpu
def test_processes_that_share_their_gpus_reduce_through_the_host(one_process, mpirun, tmp_path):
    need_gpus(2)
    run = tmp_path / "run"
    done = mpirun(2, sys.executable, "-m", "alexnet.train", *TRAIN, "--max-steps", "6", "--out", run,
                  "--backend", "cupy", "--gpus", "0,1")
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.load(open(run / "config.json"))["runtime"]["allreduce"] == "mpi"
    assert_same_run(one_process, run, 2)


class MirroredComm:
    """MPI.COMM_WORLD of two processes as process 0 sees it, the other process holding the same values."""

    def Get_rank(self):
        return 0

    def Get_size(self):
        return 2

    def Split_type(self, split_type):
        return self

    def Free(self):
        pass

    def Allreduce(self, sendbuf, recvbuf, op):
        recvbuf *= 2


@pytest.mark.gpu
def test_gradients_averaged_through_the_host_go_back_on_their_own_devices_stream():
    # each gradient is uploaded on its device's stream: copied into p.grad on another device's stream, the
    # copy could read it before the upload is done (on the simulated CuPy: a StreamOrderError)
    pytest.importorskip("mpi4py")
    import cupy

    need_gpus(2)
    params = []
    for d in (0, 1):
        with cupy.cuda.Device(d):
            p = Parameter(cupy.zeros((3, 4), dtype=cupy.float32))
            p.grad = cupy.full((3, 4), d + 1.0, dtype=cupy.float32)
        params.append(p)
    group = distributed.MPIGroup(MirroredComm())
    group.reduction = "mpi"
    with cupy.cuda.Device(0):               # the home device is current in training
        group.average_gradients(params)
    for d, p in enumerate(params):
        with p.device:
            assert p.grad.device.id == d and bool((p.grad == d + 1).all())


def test_the_nccl_stand_in_sums_over_the_processes_and_refuses_a_shared_gpu(mpirun):
    if distributed_cupy_is_real():
        pytest.skip("checks the simulated NCCL")
    script = (
        "import sys\n"
        "import cupy\n"
        "from cupy.cuda import nccl\n"
        "from mpi4py import MPI\n"
        "world = MPI.COMM_WORLD\n"
        "rank = world.Get_rank()\n"
        "uid = world.bcast(nccl.get_unique_id() if rank == 0 else None)\n"
        "with cupy.cuda.Device(int(sys.argv[1]) * rank):\n"
        "    try:\n"
        "        comm = nccl.NcclCommunicator(2, uid, rank)\n"
        "        x = cupy.full(5, rank + 1, dtype=cupy.float32)\n"
        "        comm.allReduce(x.data.ptr, x.data.ptr, x.size, nccl.NCCL_FLOAT32, nccl.NCCL_SUM,\n"
        "                       cupy.cuda.get_current_stream().ptr)\n"
        "        said = x.tolist()\n"
        "    except nccl.NcclError as exc:\n"
        "        said = str(exc)\n"
        "everyone = world.gather(said)\n"
        "if rank == 0:\n"
        "    print(everyone)\n"
    )
    own = mpirun(2, sys.executable, "-c", script, "1", timeout=120)       # devices 0 and 1
    assert own.returncode == 0, own.stderr
    assert own.stdout.strip() == str([[3.0] * 5] * 2)
    shared = mpirun(2, sys.executable, "-c", script, "0", timeout=120)    # both on device 0
    assert shared.returncode == 0, shared.stderr
    assert shared.stdout.count("NCCL_ERROR_INVALID_USAGE: Duplicate GPU detected") == 2


def distributed_cupy_is_real():
    spec = importlib.util.find_spec("cupy")
    return spec is None or os.sep + "simcuda" + os.sep not in (spec.origin or "")


# -- the scaling benchmark -------------------------------------------------------------------


def test_the_ring_allreduce_model():
    from benchmarks.scaling import LATENCY_S, project, ring_allreduce_s

    assert ring_allreduce_s(10**9, 1, 8) == 0.0
    # 2 (K-1)/K x bytes / (bytes per second) + 2 (K-1) messages' latency
    assert ring_allreduce_s(10**9, 2, 8) == pytest.approx(1.0 + 2 * LATENCY_S)
    assert ring_allreduce_s(10**9, 4, 8) == pytest.approx(1.5 + 6 * LATENCY_S)
    one = {"step": 1.0, "allreduce": 0.0, "fc_params": 25 * 10**6, "conv_params": 0, "backward_conv": 0.5}
    rows = {(r["gbit"], r["hosts"]): r for r in project(one, 32)}
    assert rows[(10, 1)]["efficiency"] == 1.0 and rows[(10, 1)]["images_s"] == 32
    two = rows[(10, 2)]            # 100 MB: 0.08 s on the wire, hidden by the 0.5 s conv backward;
    # each of the two buckets (FC, conv) pays the ring's latency
    assert two["step_s"] == pytest.approx(1.08 + 4 * LATENCY_S)
    assert two["step_overlap_s"] == pytest.approx(1.0 + 2 * LATENCY_S)


def test_the_scaling_benchmark_measures_and_projects(mpirun, tmp_path):
    out, raw = tmp_path / "scaling.md", tmp_path / "scaling.json"
    done = subprocess.run([sys.executable, "-m", "benchmarks.scaling", "--quick", "--out", str(out),
                           "--json", str(raw)], cwd=ROOT, env=mpi_env(), capture_output=True, text=True,
                          timeout=LAUNCH_TIMEOUT)
    assert done.returncode == 0, done.stderr[-3000:]
    data = json.loads(raw.read_text())
    measured = data["measured"]["mini:16"]
    assert [measured[m]["processes"] for m in ("blas", "towers", "mpi", "overlap")] == [1, 1, 2, 2]
    assert measured["mpi"]["allreduce"] > 0 and measured["mpi"]["blas_threads"] == 1
    assert measured["towers"]["fc_params"] + measured["towers"]["conv_params"] == 1_474_186
    text = out.read_text()
    assert "## Measured on this machine" in text and "## Projected past one machine (a model" in text


class MirroredPair(distributed.Group):
    """Process 0 of a two-process job whose other process does exactly what this one does (in one process:
    every sum doubles, the average of two equal gradients is the gradient). ``after_exchange(n)`` runs right
    after the n-th end-of-step flag exchange returns, where a real Ctrl-C can land."""

    rank, size = 0, 2

    def __init__(self, after_exchange):
        self.after_exchange, self.exchanges = after_exchange, 0

    def sum(self, values):
        values = np.asarray(values, dtype=np.float64)
        out = 2 * values
        if values.shape == (3,):           # the end-of-step flags: (save now, stop now, --max-minutes reached)
            self.exchanges += 1
            self.after_exchange(self.exchanges)
        return out


def test_a_ctrl_c_that_lands_after_the_exchange_stops_every_process_one_step_later(tmp_path):
    # the other process did not see this signal at this exchange: stopping here would leave it waiting
    from alexnet.dataspec import describe_data
    from alexnet.settings import TrainConfig
    from alexnet.trainer import Trainer

    args = TrainConfig(**TRAIN_SETTINGS, max_steps=50, out=str(tmp_path / "run"))
    spec = describe_data(args.data, args.data_dir, "mini")
    box = {}

    def signal_lands(n):
        if n == 3:
            box["trainer"].stop_requested = True

    trainer = box["trainer"] = Trainer(args, spec, ["cpu", "cpu"], MirroredPair(signal_lands))
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    assert trainer.fit() == "interrupted"
    assert trainer.step == 4           # exchanged at step 4, so both processes stop there


def test_the_processes_of_a_job_stop_together_at_max_minutes(tmp_path):
    # each process reads its own clock: the moment is exchanged with the end-of-step flags, so one process
    # past the limit stops them all at the same step (here both mirrored processes are past it at once)
    from alexnet.dataspec import describe_data
    from alexnet.settings import TrainConfig
    from alexnet.trainer import Trainer

    args = TrainConfig(**TRAIN_SETTINGS, max_steps=50, out=str(tmp_path / "run"))
    flags = []
    pair = MirroredPair(lambda n: None)
    exchange = pair.sum
    pair.sum = lambda v: flags.append(list(v)) or exchange(v) if np.shape(v) == (3,) else exchange(v)
    trainer = Trainer(args, describe_data(args.data, args.data_dir, "mini"), ["cpu", "cpu"], pair)
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    trainer.deadline = 0.0            # time.monotonic() is past it
    assert trainer.fit() == "done"
    assert trainer.step == 1 and trainer.time_up and flags == [[False, False, True]]
