"""The command line: fast help, one-line errors with suggestions, exit codes."""
import subprocess
import sys

import pytest


def maebench(*args, env=None):
    return subprocess.run([sys.executable, "-m", "maebench", *args], capture_output=True, text=True,
                          timeout=120, env=env)


def test_help_lists_every_subcommand():
    r = maebench("--help")
    assert r.returncode == 0
    for cmd in ("demo", "pretrain", "run", "backbones", "leaderboard", "data", "visualize"):
        assert cmd in r.stdout


def test_help_and_argument_errors_do_not_import_torch():
    code = ("import sys; from maebench.cli import build_parser; build_parser();"
            "heavy = [m for m in ('torch', 'timm', 'torchvision', 'transformers', 'matplotlib') if m in sys.modules];"
            "print(heavy)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.stdout.strip() == "[]", r.stdout + r.stderr


@pytest.mark.parametrize("args, expected", [
    (["trian"], "unknown value 'trian'"),
    (["run", "--task", "cocoo", "--backbone", "x"], "unknown task 'cocoo' (did you mean: coco?)"),
    (["pretrain", "--method", "maee"], "unknown method 'maee' (did you mean: mae"),
])
def test_unknown_names_exit_2_with_suggestion_and_no_traceback(args, expected):
    r = maebench(*args)
    assert r.returncode == 2
    assert expected in r.stderr
    assert "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) <= 2   # usage line (argparse) + one error line


def test_unknown_subcommand_suggests_closest():
    r = maebench("runn")
    assert r.returncode == 2 and "did you mean: run?" in r.stderr


def test_error_from_a_dataloader_worker_prints_one_line(tmp_path):
    """A bad image met inside a worker process still gives the reader's one-line message."""
    code = (
        "import torch\n"
        "from maebench.errors import MaebenchError\n"
        "from maebench.cli import main, COMMANDS\n"
        "import maebench.commands.data as data\n"
        "class Bad(torch.utils.data.Dataset):\n"
        "    def __len__(self): return 2\n"
        "    def __getitem__(self, i): raise MaebenchError('cannot read image /x/broken.jpg: truncated')\n"
        "def boom(args):\n"
        "    next(iter(torch.utils.data.DataLoader(Bad(), num_workers=1)))\n"
        "data.main = boom\n"
        "raise SystemExit(main(['data', 'check', '--task', 'coco', '.']))\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 1
    assert r.stderr.strip() == "maebench: error: cannot read image /x/broken.jpg: truncated"
