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
    assert r.returncode == 2 and "did you mean: run, runs?" in r.stderr


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


def _value_for(parser, dest):
    """A command-line value for option `dest` that argparse accepts."""
    action = next(a for a in parser._actions if a.dest == dest)
    flag = max(action.option_strings, key=len)
    if action.nargs == 0:                               # store_true / BooleanOptionalAction
        return [flag]
    if action.choices:
        return [flag, str(list(action.choices)[0])]
    return [flag, "1" if action.type in (int, float) else "x"]


def _subparser(command):
    from maebench.cli import build_parser
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    return sub.choices[command]


def _foreign(table, all_options):
    return [(name, opt) for name, entry in table.items() for opt in all_options if opt not in entry.options]


from maebench.backbones.pretraining import METHODS   # noqa: E402
from maebench.tasks.table import TASKS               # noqa: E402

TASK_OPTIONS = tuple(dict.fromkeys(o for t in TASKS.values() for o in t.options))
METHOD_OPTIONS = tuple(dict.fromkeys(o for m in METHODS.values() for o in m.options))


@pytest.mark.parametrize("task, option", _foreign(TASKS, TASK_OPTIONS))
def test_an_option_the_task_does_not_take_is_a_usage_error(task, option, capsys):
    from maebench.cli import main
    argv = ["run", "--task", task, "--backbone", "scratch-vit-micro", *_value_for(_subparser("run"), option)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"--{option.replace('_', '-')} applies to --task" in err and f"not {task}" in err


@pytest.mark.parametrize("method, option", _foreign(METHODS, METHOD_OPTIONS))
def test_an_option_the_pretraining_method_does_not_take_is_a_usage_error(method, option, capsys):
    from maebench.cli import main
    assert main(["pretrain", "--method", method, *_value_for(_subparser("pretrain"), option)]) == 2
    assert "applies to --method" in capsys.readouterr().err


def test_every_task_and_method_entry_point_exists():
    for entry in [*TASKS.values(), *METHODS.values()]:
        assert callable(entry.recipes()), entry.name
