"""The GPU paths end to end, on CuPy with two devices (a real GPU's where there is one, else
tests/simcuda): every tower layout of --gpus, placement of every array, host synchronisations,
resume, and the command lines, each against the NumPy backend.

Agreement with NumPy is checked after one step: the arithmetic is the same but summed in
another order, and from the second step on a mini net at lr 0.02 amplifies float32 round-off
through ReLU and max-pool switches that flip (a few percent of an update after two steps, the
same between two CPU runs that differ only in their BLAS thread count).
"""

import json
import subprocess
import sys

import numpy as np
import pytest

from alexnet import build_model, evaluate, predict, train, visualize
from alexnet.dataspec import describe_data, make_transforms, open_split
from alexnet.devices import tower_devices
from alexnet.runs import load_run
from alexnet.settings import TrainConfig
from alexnet.trainer import Trainer
from minidl import SGD, SoftmaxCrossEntropy, asnumpy, checkpoint, to_device
from minidl.backend import get_device

pytestmark = pytest.mark.gpu
cupy = pytest.importorskip("cupy")

LAYOUTS = ["0,1", "1,0", "1,1", "0,0"]
FAST = ["--train-subset", "256", "--val-size", "100", "--batch-size", "32", "--test-subset", "100", "--no-progress"]
FAST_SETTINGS = dict(train_subset=256, val_size=100, batch_size=32, test_subset=100, no_progress=True)


def devices_of(layout):
    ids = [int(i) for i in layout.split(",")]
    if max(ids) >= cupy.cuda.runtime.getDeviceCount():
        pytest.skip(f"--gpus {layout} needs {max(ids) + 1} GPUs")
    return [f"cuda:{i}" for i in ids]


def assert_placed(model, optim=None):
    """Every tower's parameters, gradients and velocities are on that tower's device."""
    for st in model.stages:
        for block, dev in zip(st.blocks, model.devices):
            for p in block.parameters():
                arrays = [p.data] + ([p.grad] if p.grad is not None else [])
                if optim is not None and id(p) in optim.velocity:
                    arrays.append(optim.velocity[id(p)])
                for a in arrays:
                    assert type(a).__module__.startswith("cupy") and get_device(a) == dev, (st.name, dev)


def one_step(model, optim, seed=0):
    x = np.random.default_rng(seed).standard_normal((4, 1, 28, 28)).astype(np.float32)
    y = np.array([1, 3, 5, 7])
    home = model.devices[0]
    loss_fn = SoftmaxCrossEntropy()
    with home:
        loss = loss_fn.forward(model.forward(to_device(x, home)), to_device(y, home))
        optim.zero_grad()
        model.backward(loss_fn.backward())
        optim.step()
    return loss


@pytest.fixture(scope="module")
def gpu_run(tmp_path_factory):
    """A 4-step run on --gpus 0,1 (or 0,0 on one GPU)."""
    run = tmp_path_factory.mktemp("gpu") / "run"
    gpus = "0,1" if cupy.cuda.runtime.getDeviceCount() > 1 else "0,0"
    assert train.main([*FAST, "--backend", "cupy", "--gpus", gpus, "--max-steps", "4", "--out", str(run)]) == 0
    return run


# -- placement ----------------------------------------------------------------------------

@pytest.mark.parametrize("layout", LAYOUTS)
def test_every_array_lives_on_its_towers_device(layout, gpu_run):
    devices = devices_of(layout)
    model = build_model("mini", num_classes=10, in_channels=1, devices=devices, seed=0)
    assert [str(d) for d in model.devices] == devices
    assert_placed(model)
    optim = SGD(model.parameters(), lr=0.01)
    one_step(model, optim)
    assert_placed(model, optim)
    # loading a host state dict, and the optimizer state, from any device
    host = {k: asnumpy(v) for k, v in model.state_dict().items()}
    model.load_state_dict(host)
    optim.load_state_dict({"lr": 0.01, "velocity": {k: asnumpy(v) for k, v in optim.state_dict()["velocity"].items()}})
    assert_placed(model, optim)
    # resuming a run trained on another layout
    config = TrainConfig(**FAST_SETTINGS, backend="cupy", gpus=layout, out=str(gpu_run))
    trainer = Trainer(config, describe_data("fashion-mnist", None, "mini"), tower_devices("cupy", layout, 2))
    trainer.restore(gpu_run / "checkpoints" / "last.npz")
    assert_placed(trainer.model, trainer.optim)
    assert len(trainer.optim.velocity) == 32


def test_a_parameter_refuses_an_array_from_another_device():
    devices = devices_of("0,1")
    model = build_model("mini", num_classes=10, in_channels=1, devices=devices)
    p = model.conv1.tower1.conv.weight
    with pytest.raises(ValueError, match=r"would be on cuda:0 but the parameter is on cuda:1"):
        p.data = cupy.zeros(p.shape, p.dtype)                 # allocated on the current device, 0
    with pytest.raises(ValueError, match=r"would be on cpu but the parameter is on cuda:1"):
        p.grad = np.zeros(p.shape, p.dtype)
    with cupy.cuda.Device(1):
        p.data = cupy.zeros(p.shape, p.dtype)


# -- host synchronisations ---------------------------------------------------------------

def _trainer(tmp_path, **settings):
    gpus = "0,1" if cupy.cuda.runtime.getDeviceCount() > 1 else "0,0"
    config = TrainConfig(**FAST_SETTINGS, backend="cupy", gpus=gpus, out=str(tmp_path), **settings)
    tmp_path.mkdir(parents=True, exist_ok=True)
    return Trainer(config, describe_data("fashion-mnist", None, "mini"), tower_devices("cupy", gpus, 2))


# CUDA has no count of the times the host waited for a GPU: these two tests run on the simulated CuPy
# only, which counts every synchronisation (tests/simcuda/README.md, rule 7).

@pytest.mark.simulated
def test_a_training_step_waits_for_no_gpu(tmp_path):
    from cupy import _sim

    trainer = _trainer(tmp_path)
    batches = trainer.loader.batches(0)
    for _ in range(3):
        images, labels = next(batches)
        _sim.reset_sync_count()
        loss, correct = trainer.train_step(images, labels)
        assert _sim.sync_count() == 0
        assert type(loss).__module__.startswith("cupy") and type(correct).__module__.startswith("cupy")


@pytest.mark.simulated
def test_logged_results_cost_one_synchronisation_for_all_pending_steps(tmp_path):
    from cupy import _sim

    def syncs(steps):
        trainer = _trainer(tmp_path / str(steps), max_steps=steps, log_every=3)
        _sim.reset_sync_count()
        trainer.fit()
        return _sim.sync_count()

    # three more steps (one more log line) and the same final evaluation and checkpoint
    assert syncs(6) - syncs(3) == 1


# -- the command lines, against NumPy ----------------------------------------------------------

def _weights_and_loss(run):
    state = checkpoint.load(run / "checkpoints" / "last.npz")
    return state["model"], state["progress"]["epoch_stats"]["loss"]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_one_step_on_every_layout_equals_numpy(layout, tmp_path):
    devices_of(layout)
    cpu, gpu = tmp_path / "cpu", tmp_path / "gpu"
    assert train.main([*FAST, "--max-steps", "1", "--out", str(cpu)]) == 0
    assert train.main([*FAST, "--max-steps", "1", "--backend", "cupy", "--gpus", layout, "--out", str(gpu)]) == 0
    init = build_model("mini", num_classes=10, in_channels=1, seed=0).state_dict()
    (wc, lc), (wg, lg) = _weights_and_loss(cpu), _weights_and_loss(gpu)
    assert lg == pytest.approx(lc, rel=1e-5)
    for name, w in wc.items():
        update = np.abs(w - init[name]).max()
        assert np.abs(wg[name] - w).max() <= 1e-4 * update + 1e-9, name
    config = json.loads((gpu / "config.json").read_text())
    assert config["devices"] == [f"cuda:{i}" for i in layout.split(",")]


def test_the_command_line_trains_on_two_gpus(tmp_path):
    devices_of("0,1")
    r = subprocess.run([sys.executable, "-m", "alexnet.train", *FAST, "--backend", "cupy", "--gpus", "0,1",
                        "--max-steps", "2", "--out", str(tmp_path / "run")], cwd=tmp_path, capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert "towers on cuda:0, cuda:1" in r.stdout and "done: 2 steps" in r.stdout


def test_resume_on_gpus_is_bit_exact(tmp_path):
    gpus = "0,1" if cupy.cuda.runtime.getDeviceCount() > 1 else "0,0"
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    flags = [*FAST, "--backend", "cupy", "--gpus", gpus]
    assert train.main([*flags, "--max-steps", "5", "--out", str(straight)]) == 0
    assert train.main([*flags, "--max-steps", "2", "--out", str(stopped)]) == 0
    assert train.main(["--out", str(stopped), "--resume", "--max-steps", "5", "--no-progress"]) == 0
    a, b = (checkpoint.load(r / "checkpoints" / "last.npz") for r in (straight, stopped))
    for part in ("model",):
        for k in a[part]:
            assert np.array_equal(a[part][k], b[part][k]), k
    for k in a["optim"]["velocity"]:
        assert np.array_equal(a["optim"]["velocity"][k], b["optim"]["velocity"][k]), k
    assert a["rng"] == b["rng"] and a["progress"]["step"] == b["progress"]["step"] == 5


# -- comparing rankings: a GPU sums in another order than NumPy, so its float results differ in the last
# bits (exp, log, GEMM). A choice among values closer than that (two classes of almost the same
# probability, two training images at almost the same distance) may then go either way: rankings are
# compared up to such near-ties, and values to a tolerance.

TIE = 1e-5          # relative to the values compared: far above float32 rounding, far below real differences


def assert_same_ranking(cpu_scores, gpu_order, tol=TIE):
    """``gpu_order`` (rows of indices, best first) ranks each row of ``cpu_scores`` (higher is better) as the
    CPU would, except where the CPU's scores of two candidates are within ``tol`` of each other."""
    cpu_scores, gpu_order = np.asarray(cpu_scores, np.float64), np.asarray(gpu_order)
    k = gpu_order.shape[1]
    for row, order in zip(cpu_scores, gpu_order):
        picked = row[order]
        scale = tol * max(1.0, np.abs(row).max())
        kth_best = np.sort(row)[::-1][k - 1]
        assert np.all(np.diff(picked) <= scale), (picked, "not in the CPU's order, beyond near-ties")
        assert picked.min() >= kth_best - scale, (picked, kth_best, "a candidate the CPU ranks lower was chosen")


def well_separated(values, tol=TIE):
    """Rows of sorted values whose neighbours all differ by more than ``tol`` (relative): no near-tie."""
    values = np.asarray(values, np.float64)
    gaps = np.abs(np.diff(values, axis=1))
    return (gaps > tol * np.maximum(1.0, np.abs(values).max(axis=1, keepdims=True))).all(axis=1)


def test_the_ranking_comparison_accepts_near_ties_and_refuses_real_differences():
    scores = np.array([[0.5, 0.5 + 1e-7, 0.1, 0.3]])
    assert_same_ranking(scores, [[1, 0, 3]])
    assert_same_ranking(scores, [[0, 1, 3]])               # the two near-equal classes in either order
    with pytest.raises(AssertionError):
        assert_same_ranking(scores, [[1, 3, 0]])           # 0.3 before 0.5: a real difference
    with pytest.raises(AssertionError):
        assert_same_ranking(scores, [[1, 0, 2]])           # 0.1 chosen over 0.3
    assert well_separated([[1.0, 2.0, 3.0], [1.0, 1.0 + 1e-9, 3.0]]).tolist() == [True, False]


def test_evaluate_predict_and_visualize_on_gpus_equal_numpy(gpu_run, tmp_path, capsys):
    layout = "1,0" if cupy.cuda.runtime.getDeviceCount() > 1 else "0,0"
    cpu, _, spec = load_run(gpu_run, "last")
    gpu, _, _ = load_run(gpu_run, "last", backend="cupy", gpus=layout)
    _, evalt = make_transforms(spec, cpu.input_size)
    test = open_split(spec, "test")
    # the probabilities of every class for the images evaluated: equal to rounding, the same classes ranked
    probs_c, probs_g = (np.asarray(asnumpy(visualize.class_probabilities(m, test.images[:100], evalt)))
                        for m in (cpu, gpu))
    np.testing.assert_allclose(probs_g, probs_c, rtol=1e-4, atol=1e-6)
    assert_same_ranking(probs_c, np.argsort(-probs_g, axis=1, kind="stable"))
    rc, rg = (evaluate.evaluate(m, test, evalt, batch_size=50, limit=100) for m in (cpu, gpu))
    assert rg["loss"] == pytest.approx(rc["loss"], rel=1e-5)
    top2 = np.sort(probs_c, axis=1)[:, -2:]
    near_ties = int((top2[:, 1] - top2[:, 0] <= TIE).sum())     # images whose top-1 rounding may flip
    assert abs(round(100 * rg["top1"]) - round(100 * rc["top1"])) <= near_ties
    assert evaluate.main(["--run", str(gpu_run), "--backend", "cupy", "--gpus", layout, "--limit", "100"]) == 0
    images = [np.repeat(test.images[i, 0][:, :, None], 3, axis=2) for i in range(3)]
    pc, pg = (predict.predict(m, spec, images) for m in (cpu, gpu))
    np.testing.assert_allclose([[p for _, p in r] for r in pg], [[p for _, p in r] for r in pc], rtol=1e-4)
    full = predict.predict(cpu, spec, images, top=spec.num_classes)       # every class's CPU probability
    cpu_scores = [[dict(r)[c] for c in range(spec.num_classes)] for r in full]
    assert_same_ranking(cpu_scores, [[k for k, _ in r] for r in pg])

    kw = dict(checkpoint="last")
    for name, call in (("filters", lambda **k: visualize.filters(gpu_run, **k)),
                       ("predictions", lambda **k: visualize.predictions(gpu_run, n=3, **k))):
        _, on_cpu = call(out=tmp_path / f"{name}-cpu.png", **kw)
        _, on_gpu = call(out=tmp_path / f"{name}-gpu.png", backend="cupy", gpus=layout, **kw)
        for key, value in on_cpu.items():
            if key == "top_classes":             # a ranking: compared up to near-ties, as above
                assert_same_ranking(probs_of(cpu, test, on_cpu["indices"], evalt), on_gpu[key])
            elif isinstance(value, np.ndarray) and value.dtype.kind == "f":
                np.testing.assert_allclose(on_gpu[key], value, rtol=1e-3, atol=1e-5, err_msg=f"{name} {key}")
            elif isinstance(value, np.ndarray):
                np.testing.assert_array_equal(on_gpu[key], value, err_msg=f"{name} {key}")

    # neighbours in fc7 space: distances equal to rounding; the images chosen equal for the queries whose
    # k+1 nearest distances are well apart (else two images tie and either may be chosen)
    queries = list(range(6))
    _, near = visualize.neighbours(gpu_run, out=tmp_path / "n-cpu.png", indices=queries, k=4, limit=200, **kw)
    _, near_g = visualize.neighbours(gpu_run, out=tmp_path / "n-gpu.png", indices=queries, k=3, limit=200,
                                     backend="cupy", gpus=layout, **kw)
    np.testing.assert_allclose(near_g["distances"], near["distances"][:, :3], rtol=1e-3, atol=1e-5)
    apart = well_separated(near["distances"], tol=1e-3)
    assert apart.any(), near["distances"]              # else this test compares no choice at all
    np.testing.assert_array_equal(near_g["indices"][apart], near["indices"][apart, :3])

    # deconvnet: the channels named, so that no ranking is involved; each channel's strongest position must
    # win by more than rounding for the positions to be compared
    feats = np.asarray(asnumpy(cpu.eval().features(evalt(test.get_batch([0])), "conv3")))[0]
    tops = np.sort(feats.reshape(len(feats), -1), axis=1)[:, -2:]
    clear = np.flatnonzero((tops[:, 1] - tops[:, 0] > 1e-3 * max(1.0, tops.max())) & (tops[:, 1] > 0))[:2]
    assert len(clear) == 2, "no conv3 channel with a clear maximum"
    _, dc = visualize.deconv(gpu_run, out=tmp_path / "d-cpu.png", layer="conv3", channels=clear, **kw)
    _, dg = visualize.deconv(gpu_run, out=tmp_path / "d-gpu.png", layer="conv3", channels=clear, backend="cupy",
                             gpus=layout, **kw)
    for key in ("channels", "positions", "fields"):
        np.testing.assert_array_equal(dg[key], dc[key], err_msg=key)
    for key in ("projections", "activations", "image"):
        np.testing.assert_allclose(dg[key], dc[key], rtol=1e-3, atol=1e-5, err_msg=key)


def probs_of(model, test, indices, evalt):
    return np.asarray(asnumpy(visualize.class_probabilities(model, test.get_batch(indices), evalt)))


def test_fine_tuning_from_a_run_on_gpus(gpu_run, tmp_path):
    from PIL import Image

    layout = "1,0" if cupy.cuda.runtime.getDeviceCount() > 1 else "0,0"
    for split, n in (("train", 4), ("val", 1)):
        for c in ("a", "b"):
            (tmp_path / "tree" / split / c).mkdir(parents=True)
            for i in range(n):
                img = np.random.default_rng(i + ord(c)).integers(0, 256, (28, 28), dtype=np.uint8)
                Image.fromarray(img).save(tmp_path / "tree" / split / c / f"{i}.png")
    run = tmp_path / "ft"
    assert train.main(["--data", str(tmp_path / "tree"), "--init-from", str(gpu_run), "--train-layers", "fc8",
                       "--backend", "cupy", "--gpus", layout, "--batch-size", "4", "--max-steps", "2",
                       "--out", str(run), "--no-progress"]) == 0
    src = checkpoint.load(gpu_run / "checkpoints" / "best.npz")["model"]
    end = checkpoint.load(run / "checkpoints" / "last.npz")["model"]
    assert np.array_equal(end["conv2.tower1.weight"], src["conv2.tower1.weight"])
    assert end["fc8.tower0.weight"].shape[0] == 1 and np.isfinite(end["fc8.tower0.weight"]).all()


# -- bad labels -------------------------------------------------------------------------------

def test_labels_out_of_range_are_an_error_on_the_gpu_too():
    logits = cupy.zeros((3, 4), cupy.float32)
    bad = cupy.asarray(np.array([0, 4, 1]))              # CuPy's gather would wrap 4 around to 0
    loss_fn = SoftmaxCrossEntropy()
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 4\), got values from 0 to 4"):
        loss_fn.forward(logits, bad)
    loss = loss_fn.compute(logits, bad)                   # no synchronisation: the loss is NaN instead
    assert np.isnan(float(loss)) and bool(cupy.isnan(loss_fn.backward()).all())
    good = cupy.asarray(np.array([0, 3, 1]))
    assert loss_fn.forward(logits, good) == pytest.approx(np.log(4), rel=1e-6)
