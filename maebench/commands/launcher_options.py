"""The launcher options every command that runs jobs takes (maebench/launch/settings.py reads
them with launcher.yaml's defaults)."""
from __future__ import annotations

import argparse
from dataclasses import fields

from maebench.launch.settings import Settings, load


def add_launcher_options(p: argparse.ArgumentParser, *, jobs: bool = True) -> None:
    g = p.add_argument_group("launcher (maebench/launch/; defaults from $MAEBENCH_HOME/launcher.yaml)")
    g.add_argument("--launcher", choices=["local", "slurm"],
                   help="local: processes on this machine (default); slurm: jobs submitted through submitit")
    if jobs:
        g.add_argument("--jobs", type=int, metavar="N",
                       help="local launcher: jobs at a time (default: one per physical core; run --seeds: one)")
    g.add_argument("--partition", metavar="P", help="slurm: partition")
    g.add_argument("--account", metavar="A", help="slurm: account")
    g.add_argument("--qos", metavar="Q", help="slurm: quality of service")
    g.add_argument("--constraint", metavar="C", help="slurm: node constraint (e.g. volta32gb)")
    g.add_argument("--nodes", type=int, metavar="N", help="slurm: nodes per job (default: the protocol's resources)")
    g.add_argument("--gpus-per-node", "--gpus-per-job", dest="gpus_per_node", type=int, metavar="G",
                   help="slurm: GPUs per node, one process each (default: the protocol's resources)")
    g.add_argument("--cpus-per-task", type=int, metavar="C", help="slurm: CPUs per process")
    g.add_argument("--tasks-per-node", type=int, metavar="T",
                   help="slurm: processes per node (default: one per GPU; a CPU job's process group: T)")
    g.add_argument("--mem-gb", type=int, metavar="M", help="slurm: memory per node, GB")
    g.add_argument("--time", metavar="T", help="slurm: time limit per job, minutes or H:MM[:SS]")
    g.add_argument("--launcher-dir", metavar="DIR", help="slurm: where submitit writes job files and logs")


def launcher_settings(args: argparse.Namespace) -> Settings:
    """The command's launcher options over launcher.yaml's."""
    return load({f.name: getattr(args, f.name, None) for f in fields(Settings)})
