"""benchmarks/gpu_check.py, the one command for a GPU machine lent for minutes: rehearsed here.

The rehearsal runs the script on the simulated CuPy under the lent machine's conditions
(tests/simcuda/lent_machine.py): one device; CuPy installed as cupy-cuda13x, without the
simulator's control API; no network; no Fashion-MNIST but the copy brought along; an empty
home and kernel cache; no Jupyter. Every section must end ok within the budget of the real
run, writing only its report; a run killed halfway must leave the report of what it finished.
None of these tests is marked gpu: on a GPU machine, ``pytest -m gpu`` (the script's first
section) must not start the script again.
"""

import ast
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "simcuda"))
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import lent_machine  # noqa: E402

from benchmarks import gpu_check  # noqa: E402
from minidl.data.fashion_mnist import find_fashion_mnist  # noqa: E402

REPORT = {"gpu_check.md", "gpu_check.json", "tests.log", "cli.log", "benchmark.log", "fashion.log"}


@pytest.fixture(scope="module")
def lent(tmp_path_factory):
    """(environment, the carried dataset folder, a scratch folder) of a rehearsal of the lent machine."""
    pytest.importorskip("torch")            # section 3's reference, PyTorch on the CPU here
    files = [p for split in ("train", "test") for p in (find_fashion_mnist(split) or ())]
    if len(files) != 4:
        pytest.skip("needs Fashion-MNIST on this machine, to carry it")
    root = tmp_path_factory.mktemp("lent")
    env = lent_machine.prepare(root, files)
    return env, root / "carry" / "fashion-mnist", root


def run_check(env, *args, timeout=900):
    return subprocess.run([sys.executable, "-m", "benchmarks.gpu_check", *map(str, args)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


def group_gone(pgid, seconds=30):
    """Wait until no process of group ``pgid`` is left (zombies count as gone); kill them if some stay."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        alive = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                alive.append(stat.parent.name)
        if not alive:
            return True
        time.sleep(0.2)
    os.killpg(pgid, signal.SIGKILL)
    return False


def repository_files():
    """What git sees changed, new or ignored in the repository (byte-code caches aside)."""
    r = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all", "--ignored"], cwd=REPO,
                       capture_output=True, text=True)
    return {ln for ln in r.stdout.splitlines() if "__pycache__" not in ln} if r.returncode == 0 else None


def test_the_rehearsal_is_the_lent_machine(lent):
    env, carry, _ = lent
    probe = ("import cupy, json\n"
             "from importlib import metadata\n"
             "from minidl.data.fashion_mnist import find_fashion_mnist\n"
             "try:\n    cupy._sim\n    control = True\nexcept AttributeError:\n    control = False\n"
             "print(json.dumps([cupy.cuda.runtime.getDeviceCount(), control, find_fashion_mnist('train') is None,\n"
             "                  metadata.packages_distributions()['cupy']]))\n"
             "import nbclient\n")
    r = subprocess.run([sys.executable, "-c", probe], cwd=REPO, env={**env, "PYTHONPATH": env["PYTHONPATH"] +
                       os.pathsep + str(REPO)}, capture_output=True, text=True, timeout=120)
    devices, control, no_data, packages = json.loads(r.stdout.splitlines()[0])
    assert (devices, control, no_data, packages) == (1, False, True, ["cupy-cuda13x"])
    assert "No module named 'nbclient'" in r.stderr               # the lent machine has no Jupyter
    assert {p.name for p in carry.iterdir()} == {"train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                                                 "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"}


@pytest.mark.slow
def test_rehearsal_every_section_ends_ok_within_the_budget(lent):
    env, carry, root = lent
    out = root / "report"
    before = repository_files()
    r = run_check(env, "--quick", "--torch-device", "cpu", "--data-dir", carry, "--out", out, "--budget", 480)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    data = json.loads((out / "gpu_check.json").read_text())
    assert {s: v["state"] for s, v in data["status"].items()} == dict.fromkeys(gpu_check.SECTIONS, "ok")
    assert all(v["seconds"] <= v["allowed"] for v in data["status"].values())
    assert data["elapsed_s"] <= 480 and data["section_errors"] == {}
    assert data["gpu"]["devices"] == 1 and data["gpu"]["cupy_package"] == "cupy-cuda13x 14.2.0"
    assert data["data_dir"] == str(carry)
    t = data["tests"]
    assert t["counts"]["passed"] >= 20 and "failed" not in t["counts"] and t["workers"] >= 2
    # the tests that need the simulator's control API were skipped, not failed: it is hidden, as on a GPU
    assert "cupy._sim" in (out / "tests.log").read_text()
    assert [e["step"] for e in data["cli"]["runs"]] == ["train", "resume", "evaluate"]
    assert [r["tf32"] for r in data["benchmark"]["rows"]] == [False, True]
    f = data["fashion"]
    assert f["final"] is not None and f["plan"]["test_images"] == 100 and f["plan"]["train_minutes"] > 0
    report = (out / "gpu_check.md").read_text()
    for heading in ("## 1. GPU tests", "## 2. Command lines", "## 3. Training step", "## 4. The paper network"):
        assert heading in report
    assert "Quick mode" in report and "0.884 after 10 epochs" in report and "cupy-cuda13x 14.2.0" in report
    # the report's folder holds the report alone (no run folder, no checkpoint), small enough to copy back
    assert {p.name for p in out.iterdir()} == REPORT
    assert all(p.stat().st_size < 1 << 20 for p in out.iterdir())
    assert not list((root / "tmp").glob("gpu-check-work-*"))          # the scratch folder is gone
    assert repository_files() == before                                # nothing written into the repository


@pytest.mark.slow
def test_a_run_killed_halfway_leaves_the_report_of_what_it_finished(lent):
    env, carry, root = lent
    out = root / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "benchmarks.gpu_check", "--quick", "--torch-device", "cpu",
                             "--data-dir", carry, "--out", out, "--sections", "cli,benchmark"], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline, status = time.monotonic() + 300, {}
    while time.monotonic() < deadline and status.get("benchmark", {}).get("pgid") is None:
        assert proc.poll() is None, "gpu_check ended before it could be killed"
        time.sleep(0.2)
        try:
            status = json.loads((out / "gpu_check.json").read_text())["status"]
        except (OSError, ValueError):
            pass
    proc.kill()                           # as a command stopped at the machine's time limit
    proc.wait()
    assert status["cli"]["state"] == "ok" and status["benchmark"]["state"] == "running"
    data = json.loads((out / "gpu_check.json").read_text())
    assert data["cli"]["ok"] and [e["step"] for e in data["cli"]["runs"]] == ["train", "resume", "evaluate"]
    report = (out / "gpu_check.md").read_text()
    assert "| evaluate | 0 |" in report
    assert "## 3. Training step" in report and "**did not finish**" in report
    # the section's process died with the script (a GPU left busy would falsify a rerun's benchmark)
    assert group_gone(status["benchmark"]["pgid"]), "the benchmark's process outlived the killed script"


@pytest.mark.slow
def test_sigterm_ends_the_section_writes_the_report_and_exits_130(lent):
    env, carry, root = lent
    out = root / "terminated"
    proc = subprocess.Popen([sys.executable, "-m", "benchmarks.gpu_check", "--quick", "--data-dir", carry,
                             "--out", out, "--sections", "cli"], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    pgid, deadline = None, time.monotonic() + 120
    while pgid is None and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.1)
        try:
            pgid = json.loads((out / "gpu_check.json").read_text())["status"]["cli"].get("pgid")
        except (OSError, ValueError, KeyError):
            pass
    proc.terminate()
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert err.splitlines()[-1].startswith("gpu_check: interrupted; the report of what finished is in ")
    assert json.loads((out / "gpu_check.json").read_text())["status"]["cli"]["state"] == "interrupted"
    assert "**interrupted**" in (out / "gpu_check.md").read_text()
    assert group_gone(pgid), "the section's processes outlived the script"


def test_without_the_dataset_it_stops_at_once_saying_what_to_carry(lent, tmp_path):
    env, _, _ = lent
    for where in ([], ["--data-dir", tmp_path]):
        r = run_check(env, "--out", tmp_path / "out", *where, timeout=120)
        assert r.returncode == 2 and r.stdout == ""
        (line,) = r.stderr.splitlines()
        assert line.startswith("gpu_check: error: Fashion-MNIST not found in ")
        assert "train-images-idx3-ubyte.gz" in line and "--data-dir" in line and "nothing is downloaded" in line
        assert not (tmp_path / "out").exists()


def test_offline_the_nvcc_check_skips_at_once(lent):
    # it compiles the kernels against CuPy's headers: a real CuPy's own, else a wheel's, which needs network
    env, _, _ = lent
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
                        "tests/test_cuda_sources.py", "-k", "nvcc"], cwd=REPO, env={**env, "PYTHONPATH":
                       env["PYTHONPATH"] + os.pathsep + str(REPO)}, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:]
    assert "2 skipped" in r.stdout and ("could not download" in r.stdout or "needs nvcc" in r.stdout)
    assert time.monotonic() - t0 < 120


def test_it_does_not_start_itself_again(tmp_path):
    r = subprocess.run([sys.executable, "-m", "benchmarks.gpu_check", "--out", tmp_path], cwd=REPO,
                       env={**os.environ, gpu_check.NESTED: "1"}, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and len(r.stderr.splitlines()) == 1 and "not nested" in r.stderr


def test_work_inside_the_report_folder_is_refused(tmp_path):
    r = subprocess.run([sys.executable, "-m", "benchmarks.gpu_check", "--out", tmp_path,
                        "--work", tmp_path / "runs"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and len(r.stderr.splitlines()) == 1 and "is inside --out" in r.stderr


def test_a_deadline_ends_the_whole_process_group(tmp_path):
    # a child that starts a grandchild and both wait: at the deadline both must be gone
    script = ("import subprocess, sys, time\n"
              f"p = subprocess.Popen(['sleep', '300'])\n"
              f"open({str(tmp_path / 'pid')!r}, 'w').write(str(p.pid))\n"
              "time.sleep(300)\n")
    t0 = time.monotonic()
    rc, _ = gpu_check.run_group([sys.executable, "-c", script], 2, dict(os.environ), tmp_path / "log")
    assert rc == "timeout" and time.monotonic() - t0 < 60
    grandchild = int((tmp_path / "pid").read_text())
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(grandchild, 0)
        except ProcessLookupError:
            break
        with open(f"/proc/{grandchild}/stat") as f:      # a zombie is gone too
            if f.read().split(")")[-1].split()[0] == "Z":
                break
        time.sleep(0.1)
    else:
        os.kill(grandchild, signal.SIGKILL)
        pytest.fail("the grandchild outlived the deadline")


@pytest.mark.parametrize("budget", [60, 150, 300])
@pytest.mark.parametrize("params,rate", [(60_965_224, 1500), (60_965_224, 300), (1_474_186, 100)])
def test_the_fashion_plan_leaves_time_for_the_last_evaluation_and_checkpoints(budget, params, rate):
    plan = gpu_check.plan_fashion(budget, params, rate)
    evaluation = plan["test_images"] / rate
    assert 1000 <= plan["test_images"] <= 10000
    assert evaluation <= max(0.1 * budget, 1000 / rate)          # an evaluation takes a tenth at most
    saves = 20 * params / 2e8                                     # last.npz twice and best.npz, at 200 MB/s
    validation = plan["val_images"] / rate
    if plan["train_minutes"] is not None:
        assert 60 * plan["train_minutes"] + validation + evaluation + saves <= 0.9 * budget + 1e-6
        assert plan["after_limit_s"] == pytest.approx(validation + evaluation + saves, abs=0.1)


def test_the_report_says_which_section_failed():
    data = {"date": "2026-01-01", "quick": False, "budget_s": 480, "elapsed_s": 12.0, "command": "x",
            "gpu": {"name": "NVIDIA H200"}, "section_errors": {"benchmark": "RuntimeError: no cuDNN"},
            "status": {"tests": {"state": "failed", "seconds": 10, "allowed": 158},
                       "cli": {"state": "running", "seconds": 3, "allowed": 50}},
            "tests": {"ok": False, "exit": 1, "summary": "1 failed, 3 passed", "failed": ["FAILED t::x"],
                      "tail": "boom", "counts": {}, "workers": 8, "selection": "all"}}
    report = gpu_check.render(data)
    assert report.startswith("# GPU check: NVIDIA H200")
    assert "**1 failed, 3 passed** (failed)" in report and "- FAILED t::x" in report
    assert "failed in 10 s (allowed 158 s)" in report and "**did not finish**" in report
    assert "Section benchmark failed: `RuntimeError: no cuDNN`" in report


def test_the_pytest_summary_is_read_with_or_without_an_interruption():
    out = "x\nFAILED tests/a.py::t - boom\n!!! KeyboardInterrupt !!!\n3 failed, 40 passed, 2 skipped in 9.1s\n"
    summary, counts, failed = gpu_check.parse_pytest(out)
    assert counts == {"failed": 3, "passed": 40, "skipped": 2} and failed == ["FAILED tests/a.py::t - boom"]
    assert gpu_check.parse_pytest("=== 1 error in 2.0s ===\n")[1] == {"error": 1}


# -- which tests run on a real GPU ---------------------------------------------------------------

def _marks(node):
    names = set()
    for dec in getattr(node, "decorator_list", []):
        target = dec.func if isinstance(dec, ast.Call) else dec
        if isinstance(target, ast.Attribute) and isinstance(target.value, ast.Attribute) \
                and target.value.attr == "mark":
            names.add(target.attr)
    return names


def _module_marks(tree):
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "pytestmark" for t in node.targets):
            return {n.attr for n in ast.walk(node.value) if isinstance(n, ast.Attribute)}
    return set()


def test_no_test_that_runs_on_a_real_gpu_reaches_the_simulators_control_api():
    """cupy._sim exists only in the stand-in: a test using it must be marked simulated (skipped on a GPU)."""
    offenders = []
    for path in sorted((REPO / "tests").glob("test_*.py")):
        if path.name == "test_simcuda.py":       # the stand-in's own tests: skipped wherever cupy is not it
            continue
        tree = ast.parse(path.read_text())
        module = _module_marks(tree)
        for func in (n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)):
            if not func.name.startswith("test"):
                continue
            uses = any(isinstance(n, ast.Attribute) and n.attr == "_sim"
                       or isinstance(n, ast.ImportFrom) and any(a.name == "_sim" for a in n.names)
                       or isinstance(n, ast.Import) and any(a.name.endswith("._sim") for a in n.names)
                       for n in ast.walk(func))
            if uses and "simulated" not in _marks(func) | module:
                offenders.append(f"{path.name}::{func.name}")
    assert offenders == []


def test_no_gpu_test_starts_the_gpu_check():
    """Section 1 runs ``pytest -m gpu``: a GPU test that ran gpu_check would start it inside itself."""
    r = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-m", "gpu", "-p",
                        "no:cacheprovider", "tests/test_gpu_check.py", "tests/test_benchmarks.py"], cwd=REPO,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 5, r.stdout[-2000:]            # 5: no test collected
