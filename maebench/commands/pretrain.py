"""`maebench pretrain --method M`: pretrain a ViT and register the result as a backbone."""
from __future__ import annotations

import argparse

from maebench.backbones.pretraining import METHODS
from maebench.commands.options import add_training_options, choose_program, run_spec
from maebench.commands.launcher_options import add_launcher_options, launcher_settings


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--method", required=True, metavar="METHOD", help="; ".join(f"{m.name}: {m.summary}" for m in METHODS.values()))
    p.add_argument("--arch", metavar="ARCH", help="vit-tiny, vit-small, vit-base, vit-large, vit-huge")
    p.add_argument("--data", metavar="DIR", help="ImageFolder dataset (default: the embedded shapes set)")
    p.add_argument("--img-size", type=int, help="input resolution (config key: img_size)")
    p.add_argument("--patch-size", type=int, help="patch size (config key: patch_size)")
    p.add_argument("--name", "--out-name", dest="name", metavar="NAME",
                   help="register the final checkpoint as backbone NAME")
    m = p.add_argument_group("mae")
    m.add_argument("--target", help="pixel, norm-pixel, pca (principal coefficients), token (--tokenizer FILE) "
                                    "or dvae (self-trained dVAE)")
    m.add_argument("--mask-ratio", type=float, help="share of patches removed (default 0.75)")
    m.add_argument("--masking", help="random, block or grid")
    m.add_argument("--tokenizer", metavar="PATH", help="tokenizer for --target token (DALL-E encoder.pkl or state "
                   "dict, BEiT v2 VQ-KD state dict) or dvae (a `pretrain --method dvae` NAME or file)")
    m.add_argument("--trust-tokenizer", action="store_true", default=None,
                   help="allow full unpickling of a pickled tokenizer (DALL-E's encoder.pkl): runs code in the file")
    add_training_options(p)
    add_launcher_options(p, jobs=False)


def main(args: argparse.Namespace) -> int:
    method = choose_program(args, METHODS, args.method, "--method")
    spec = run_spec(args, method, backbone=args.name, extra_options=("arch", "img_size", "patch_size"))
    if (settings := launcher_settings(args)).launcher == "slurm":
        from maebench.config import protocol_defaults
        from maebench.launch.one import submit
        arch = args.arch or protocol_defaults(method.protocol).get("arch")
        return submit(settings, args.argv, protocol=method.protocol, arch=arch, label=f"pretrain {method.name}")
    from maebench import runner
    runner.execute(spec)
    return 0
