"""Options shared by every command that trains or reads results."""
from __future__ import annotations

import argparse


def add_results_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--results", metavar="FILE",
                   help="results store (default: $MAEBENCH_RESULTS or $MAEBENCH_HOME/results.sqlite)")


def add_training_options(p: argparse.ArgumentParser) -> None:
    add_results_option(p)
    p.add_argument("--config", metavar="FILE.yaml", help="override protocol defaults from a YAML file")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override one config key (repeatable); unknown keys are an error")
    p.add_argument("--epochs", type=int, help="training epochs (config key: epochs)")
    p.add_argument("--batch-size", type=int, help="global batch size per optimizer step (config key: batch_size)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--resume", action="store_true", help="continue from the run's last checkpoint")
    p.add_argument("--force", action="store_true",
                   help="train a run again that is already done (without it, a done run prints its metrics)")
    p.add_argument("--out", metavar="DIR", help="run directory (default: $MAEBENCH_HOME/runs/<run id>)")
    p.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    p.add_argument("--deterministic", action="store_true",
                   help="deterministic algorithms and a single data-loading process (exact resume checks)")
    p.add_argument("--tag", action="append", default=[], metavar="KEY=VALUE", type=_tag,
                   help="a label stored with the run's row as tag_KEY, outside its recipe (`maebench study` "
                        "tags each row with the study and the variant)")
    p.add_argument("--tensorboard", action="store_true",
                   help="also write TensorBoard event files into the run directory (needs `pip install "
                        "tensorboard`; or set MAEBENCH_TENSORBOARD=1)")


def _tag(text: str) -> str:
    key, sep, value = text.partition("=")
    if not sep or not key.isidentifier() or not value:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE (KEY a name), got '{text}'")
    return text


def run_spec(args: argparse.Namespace, program, *, backbone: str | None, extra_options: tuple[str, ...] = ()):
    """The command line as a RunSpec (maebench/runspec.py): here the namespace stops."""
    from maebench.runspec import RunSpec
    options = {o: getattr(args, o, None) for o in (*program.options, *extra_options)}
    return RunSpec(program=program, backbone=backbone, data=args.data, seed=args.seed, out=args.out,
                   results=args.results, resume=args.resume, force=args.force, device=args.device,
                   deterministic=args.deterministic, tensorboard=bool(getattr(args, "tensorboard", False)),
                   config_file=args.config, sets=tuple(args.set or ()), tags=tuple(getattr(args, "tag", None) or ()),
                   epochs=args.epochs, batch_size=args.batch_size, options=options,
                   search=bool(getattr(args, "search", False)), search_space=tuple(getattr(args, "search_space", None) or ()),
                   search_budget=getattr(args, "search_budget", None),
                   search_reuse=bool(getattr(args, "search_reuse", False)),
                   search_worker=getattr(args, "search_worker", None))


def choose_program(args: argparse.Namespace, table: dict, name: str, selector: str):
    """The table row named `name` (`--task` or `--method`); unknown names and options the chosen
    program does not read are usage errors naming the ones that do, instead of a flag silently
    ignored. Program options default to None, so False (`--no-...`) counts as given."""
    from maebench.errors import UsageError, unknown
    if name not in table:
        raise unknown(selector.lstrip("-"), name, table)
    program = table[name]
    every = tuple(dict.fromkeys(o for p in table.values() for o in p.options))
    for dest in every:
        if dest not in program.options and getattr(args, dest, None) is not None:
            takers = " / ".join(p.name for p in table.values() if dest in p.options)
            raise UsageError(f"--{dest.replace('_', '-')} applies to {selector} {takers}, not {program.name}")
    return program
