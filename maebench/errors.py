"""User-facing errors: one line, a non-zero exit code, no traceback.

Raise `MaebenchError` for bad input (a file, a key, a value) and `UsageError` for a bad
command line or an unknown name; `cli.main` prints `maebench: error: <message>` and exits.
"""
from __future__ import annotations

import difflib
import re
from collections.abc import Iterable


class MaebenchError(Exception):
    """A failure the user can fix; the message names the file, key or value at fault."""

    exit_code = 1


class UsageError(MaebenchError):
    """Unknown subcommand, task, backbone or config key; bad option value."""

    exit_code = 2


class AlreadyDone(Exception):
    """Not an error: the run asked for is finished (maebench.runs). `cli.main` prints the
    message, which says so with its metrics, and exits 0."""

    exit_code = 0


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """' (did you mean: a, b?)' for the closest valid names, or ' (valid: ...)' when none is close."""
    choices = sorted(set(choices))
    close = difflib.get_close_matches(name, choices, n=3, cutoff=0.5)
    if close:
        return f" (did you mean: {', '.join(close)}?)"
    if len(choices) <= 12:
        return f" (valid: {', '.join(choices)})"
    return ""


def unknown(kind: str, name: str, choices: Iterable[str]) -> UsageError:
    """UsageError for an unknown name of some kind, with suggestions."""
    return UsageError(f"unknown {kind} '{name}'{did_you_mean(name, choices)}")


def first_line(e: BaseException, limit: int | None = None, *, typed: bool = False) -> str:
    """An exception as one line, for messages that must stay one line (cli.main prints one):
    its first non-blank line with whitespace folded (its type name when it has none); past
    `limit` characters, whole sentences only, or a word cut with ' ...'; `typed`: 'Type: ...'."""
    lines = [" ".join(line.split()) for line in str(e).splitlines()]
    text = next((line for line in lines if line), "")
    if not text:
        return type(e).__name__
    if limit is not None and len(text) > limit:
        kept = ""
        for sentence in re.split(r"(?<=[.!?])\s+", text):
            if kept and len(kept) + 1 + len(sentence) > limit:
                break
            kept = f"{kept} {sentence}".strip()
        if len(kept) > limit:                 # one sentence longer than the limit: end at a word
            kept = kept[:limit].rsplit(" ", 1)[0] + " ..."
        text = kept
    return f"{type(e).__name__}: {text.rstrip('.')}" if typed else text
