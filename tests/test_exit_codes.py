"""The exit codes of README.md's table, one command line of each: 0 done, 1 bad input data or
files, 2 usage, 130 interrupted."""
import os
import signal
import subprocess
import sys
import time

import pytest


def env_for(home):
    env = {**os.environ, "MAEBENCH_HOME": str(home), "OMP_NUM_THREADS": "1"}
    env.pop("MAEBENCH_RESULTS", None)
    return env


def maebench(home, *args):
    return subprocess.run([sys.executable, "-m", "maebench", *map(str, args)], env=env_for(home),
                          capture_output=True, text=True, timeout=300)


def one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("maebench: error: "), stderr[-2000:]
    return lines[0]


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    root = tmp_path_factory.mktemp("shapes")
    r = maebench(root / "home", "data", "prepare", "shapes", "--out", root, "--only", "classification",
                 "--classes", "3", "--img-size", "16", "--train-per-class", "10", "--val-per-class", "3")
    assert r.returncode == 0, r.stderr
    return root / "classification"


def test_0_done(tmp_path):
    assert maebench(tmp_path, "backbones", "list").returncode == 0


def test_1_bad_input_file(tmp_path):
    bad = tmp_path / "broken.pth"
    bad.write_bytes(b"PK\x03\x04 not a checkpoint")
    r = maebench(tmp_path, "backbones", "register", "broken", "--checkpoint", bad)
    assert r.returncode == 1 and str(bad) in one_error_line(r.stderr)


def test_2_usage(tmp_path):
    r = maebench(tmp_path, "run", "--task", "finetune", "--backbone", "scratch-vit-micro", "--set", "lr=abc",
                 "--batch-size", "32")
    assert r.returncode == 2
    assert one_error_line(r.stderr) == ("maebench: error: config key 'lr' in --set lr=abc expects a number > 0 "
                                        "(or null), got 'abc'")


def test_130_interrupted(tmp_path, shapes):
    """SIGTERM once training has started (the run directory is locked): the row is resumable."""
    args = ["run", "--task", "finetune", "--backbone", "scratch-vit-micro", "--data", shapes, "--epochs", "500",
            "--batch-size", "10", "--set", "num_workers=0", "--set", "img_size=16"]
    proc = subprocess.Popen([sys.executable, "-m", "maebench", *map(str, args)], env=env_for(tmp_path),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while not list((tmp_path / "runs").glob("*/.maebench.lock")):
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()[-2000:]
        time.sleep(0.1)
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    from maebench.results import ResultsStore
    (row,) = ResultsStore(tmp_path / "results.sqlite").rows(status=None)
    assert row.status == "failed-resumable"
