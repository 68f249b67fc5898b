"""The `maebench` command. Argument parsing only: heavy libraries (torch, timm, torchvision)
are imported inside the subcommand that needs them, so `--help` and argument errors answer at
once."""
from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys

from maebench.errors import AlreadyDone, MaebenchError, did_you_mean

# subcommand -> (module under maebench.commands, one-line help)
COMMANDS = {
    "demo": ("demo", "run the whole benchmark end to end on the fashion world (real Fashion-MNIST images) "
                     "and print the leaderboard"),
    "pretrain": ("pretrain", "pretrain a ViT (MAE, dVAE tokenizer, supervised or MoCo v3) and register it"),
    "run": ("run", "run a transfer task (finetune, linprobe, partial, knn, coco, ade20k) on a backbone"),
    "backbones": ("backbones", "list, show, register and remove backbones"),
    "leaderboard": ("leaderboard", "render the results store as comparison tables and figures"),
    "data": ("data", "prepare (generate or convert) and check datasets"),
    "visualize": ("visualize", "MAE reconstruction figures (original, masked, reconstruction)"),
    "cache": ("cache", "list or clear the frozen-feature cache (linprobe, logreg, knn)"),
    "study": ("study", "an MAE ablation study: pretrain each variant of a base recipe, score each with transfer protocols"),
    "grid": ("grid", "run a grid of backbones x tasks x datasets x seeds as jobs (locally in lanes, or on SLURM)"),
    "runs": ("runs", "list the runs of a results store (age, size on disk), show one (config, metrics, a PNG of its "
                     "loss and lr curves; a searched run: every trial and the one chosen), or clean their checkpoints"),
    "doctor": ("doctor", "self-check of this machine: versions, fp32 vs bf16 MAE step, attention kernels, "
                         "compile, speed, MFU, NCCL (a GPU; the CPU path without one)"),
}


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors, exit code 2, and suggestions for unknown subcommands."""

    def error(self, message: str):  # noqa: D401
        if "invalid choice" in message and "argument command" in message:
            bad = message.split("'")[1] if "'" in message else ""
            message = f"unknown command '{bad}'{did_you_mean(bad, COMMANDS)}"
        elif "invalid choice" in message:
            try:
                bad = message.split("invalid choice: ")[1].split(" (")[0].strip("'")
                choices = message.split("choose from ")[1].rstrip(")").replace("'", "").split(", ")
                message = f"{message.split(':')[0]}: unknown value '{bad}'{did_you_mean(bad, choices)}"
            except IndexError:
                pass
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="maebench", description="Masked Autoencoder pretraining and ViT transfer benchmark.")
    from maebench import __version__
    parser.add_argument("--version", action="version", version=f"maebench {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name, (module, help_text) in COMMANDS.items():
        mod = importlib.import_module(f"maebench.commands.{module}")
        p = sub.add_parser(name, help=help_text, description=help_text)
        mod.add_arguments(p)
        p.set_defaults(_handler=mod.main)
    return parser


def _unwrap_worker_error(message: str) -> str:
    """A MaebenchError raised in a DataLoader worker comes back with the worker's traceback
    folded into its message; keep the error's own line, which names the file at fault."""
    if "Original Traceback" in message:
        last = message.strip().splitlines()[-1]
        message = last.split(": ", 1)[1] if ": " in last else last
    return message


def main(argv: list[str] | None = None) -> int:
    # OpenMP threads that spin while waiting steal the cores they wait for when the machine is
    # shared (measured: a 2-thread step 5-190x slower than 1 thread; passive waiting: 1.1x).
    # Must be set before torch is imported; a user's own setting wins.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        args = build_parser().parse_args(argv)
        args.argv = list(sys.argv[1:] if argv is None else argv)    # what a launcher's job runs again
    except SystemExit as e:          # --help, --version, or a usage error already printed
        return e.code if isinstance(e.code, int) else 0
    old_sigterm = _sigterm_as_interrupt()
    try:
        return int(args._handler(args) or 0)
    except MaebenchError as e:
        print(f"maebench: error: {_unwrap_worker_error(str(e))}", file=sys.stderr)
        return e.exit_code
    except AlreadyDone as e:         # a finished run asked for again: say so, train nothing
        if str(e):
            print(e)
        return 0
    except KeyboardInterrupt as e:
        print(f"maebench: interrupted{f' by {e}' if str(e) else ''}", file=sys.stderr)
        return 130
    finally:
        if old_sigterm is not None:
            signal.signal(signal.SIGTERM, old_sigterm)
        _destroy_process_group()


def _destroy_process_group() -> None:
    """Under torchrun, every command (finished or failed) destroys its process group before the
    interpreter exits: gloo work still held by its threads at finalization aborts the worker
    (SIGABRT) after the run has finished."""
    distributed = sys.modules.get("maebench.distributed")   # imported only by commands that train
    if distributed is not None:
        distributed.cleanup()


def _sigterm_as_interrupt():
    """Outside the training loop (which checkpoints on SIGTERM itself), SIGTERM ends a command as
    Ctrl-C does, so a run that is loading data or evaluating is marked failed-resumable instead
    of dying with its row left 'running'. Returns the handler it replaced (None off the main thread)."""
    import threading
    if threading.current_thread() is not threading.main_thread():
        return None

    def handler(signum, frame):
        raise KeyboardInterrupt("SIGTERM")
    return signal.signal(signal.SIGTERM, handler)


if __name__ == "__main__":
    raise SystemExit(main())
