"""`maebench leaderboard` on the command line: which store it shows (an explicit --results that
does not exist is an error; an empty default store gives way to the newest demo store, saying
so), hints that are commands that run, filters, formats and the terminal width."""
from __future__ import annotations

import json
import os
import re
import shlex
import time

import pytest
from leaderboard_helpers import add, known_store, markdown_tables

from maebench.cli import build_parser
from maebench.cli import main as cli_main
from maebench.home import remember_store
from maebench.leaderboards.board import build_leaderboard
from maebench.results import ResultsStore


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return known_store(tmp_path_factory.mktemp("lb") / "results.sqlite")


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("MAEBENCH_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MAEBENCH_RESULTS", raising=False)
    return tmp_path / "home"


def _demo_store(home, mode: str, backbone: str, age_s: float) -> ResultsStore:
    store = ResultsStore(home / "demo" / mode / "results.sqlite")
    remember_store(store.path, "the demo's store")         # as `maebench demo` does
    add(store, "knn", backbone, "shapes", {"top1": 11.0})
    t = time.time() - age_s
    os.utime(store.path, (t, t))
    return store


def test_a_results_path_that_does_not_exist_is_an_error_naming_it(tmp_path, capsys):
    missing = tmp_path / "typo.sqlite"
    assert cli_main(["leaderboard", "--results", str(missing)]) == 1
    err = capsys.readouterr().err
    assert str(missing) in err and err.count("\n") == 1
    assert not missing.exists()                      # and nothing was created there


def test_an_empty_default_store_shows_the_newest_demo_store_and_says_which(home, capsys):
    _demo_store(home, "full", "older-demo", age_s=3600)
    newest = _demo_store(home, "quick", "newer-demo", age_s=0)
    assert cli_main(["leaderboard", "--format", "github"]) == 0
    out, err = capsys.readouterr()
    assert str(newest.path) in err and str(home / "results.sqlite") in err
    assert "newer-demo" in out and "older-demo" not in out and str(newest.path) in out
    command = re.search(r"`(maebench leaderboard [^`]+)`", err).group(1)
    assert build_parser().parse_args(shlex.split(command)[1:]).results == str(newest.path)


def test_a_default_store_with_runs_is_shown_even_after_a_demo(home, capsys):
    _demo_store(home, "quick", "demo-b", age_s=0)
    add(ResultsStore(home / "results.sqlite"), "knn", "mine", "shapes", {"top1": 12.0})
    assert cli_main(["leaderboard", "--format", "github"]) == 0
    out, err = capsys.readouterr()
    assert "mine" in out and "demo-b" not in out and err == ""


def _commands(message: str) -> list[list[str]]:
    return [shlex.split(c)[1:] for c in re.findall(r"`(maebench [^`]*)`", message)]


def test_every_hint_of_an_empty_board_is_a_command_that_parses(home, store, capsys):
    assert cli_main(["leaderboard"]) == 0
    message = capsys.readouterr().out
    assert "No finished transfer runs" in message
    filtered = build_leaderboard(store, backbones=["moco-tiny"], tasks=["coco"]).empty_message()
    for text in (message, filtered):
        commands = _commands(text)
        assert commands, text
        for argv in commands:
            try:
                build_parser().parse_args(argv)
            except SystemExit as e:                   # --help exits 0; a usage error exits 2
                assert e.code == 0, argv
    assert _commands(filtered) == [["leaderboard", "--results", str(store.path)]]


def test_filters_formats_and_unknown_names(store, tmp_path, capsys):
    out = tmp_path / "board.json"
    assert cli_main(["leaderboard", "--results", str(store.path), "--out", str(out),
                     "--task", "linprobe,knn", "--no-paper"]) == 0
    records = json.loads(out.read_text())
    assert {r["task"] for r in records} == {"linprobe", "knn"} and {r["kind"] for r in records} == {"measured"}
    assert capsys.readouterr().out == ""
    assert cli_main(["leaderboard", "--results", str(store.path), "--backbones", "moco-tiny,mae-tiny",
                     "--dataset", "shapes", "--tables", "tasks", "--format", "markdown"]) == 0
    tables = markdown_tables(capsys.readouterr().out)
    assert "linear · shapes" in tables and not any("ImageNet" in t or "Summary" in t for t in tables)
    assert {r[0].strip("*") for _, rows in tables.values() for r in rows} <= {"moco-tiny", "mae-tiny"}
    assert cli_main(["leaderboard", "--results", str(store.path), "--backbones", "nope"]) == 2
    assert "unknown backbone" in capsys.readouterr().err


def test_terminal_format_fits_the_terminal_width(store, monkeypatch, capsys):
    for width in (60, 100):
        monkeypatch.setenv("COLUMNS", str(width))
        assert cli_main(["leaderboard", "--results", str(store.path), "--format", "terminal"]) == 0
        lines = capsys.readouterr().out.splitlines()
        assert max(len(line) for line in lines) <= width
        assert any(line.startswith("mae-tiny") and "72.00 ± 2.00 [67.03, 76.97]*" in line for line in lines)
