"""`maebench doctor`: check this machine before a run (maebench/doctor.py): versions, an MAE
training step in fp32 against bf16 autocast, the attention kernels, eager against compiled
speed, memory, MFU and a one-process NCCL group on a CUDA GPU; the CPU path without one."""
from __future__ import annotations

import argparse


def _positive(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got '{text}'")
    return n


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", metavar="FILE", default="doctor.json",
                   help="write every measurement and the environment here (default: doctor.json)")
    p.add_argument("--steps", type=_positive, metavar="N",
                   help="timed training steps after warm-up (default: 20 on a GPU, 3 on CPU)")
    p.add_argument("--batch-size", type=_positive, metavar="N",
                   help="images per step (default: 128 on a GPU with MAE ViT-B/16, 8 on CPU with vit-micro)")


def main(args: argparse.Namespace) -> int:
    from maebench import doctor
    return doctor.run(args.json, steps=args.steps, batch_size=args.batch_size)
