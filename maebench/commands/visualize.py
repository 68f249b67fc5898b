"""`maebench visualize` (being written; see the issue that owns it)."""
from __future__ import annotations

import argparse

from maebench.errors import MaebenchError


def add_arguments(p: argparse.ArgumentParser) -> None:
    pass


def main(args: argparse.Namespace) -> int:
    raise MaebenchError("'maebench visualize' is not available in this build yet")
