"""Pretraining programs, apart from the models they train (backbones/mae.py, dvae.py,
mocov3.py, vit.py). `METHODS` is the one table of `maebench pretrain --method` names; each
program is imported only when it runs, so `maebench --help` stays fast."""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class Method:
    name: str                        # `maebench pretrain --method NAME`; results task pretrain-NAME
    protocol: str                    # maebench/protocols/<protocol>.yaml
    entry: str                       # "module:function" implementing run(args) -> int
    options: tuple[str, ...] = ()    # method-specific command-line options (argparse dests)
    summary: str = ""

    def runner(self) -> Callable:
        module, function = self.entry.split(":")
        return getattr(importlib.import_module(module), function)


METHODS: dict[str, Method] = {m.name: m for m in (
    Method("mae", "pretrain_mae", "maebench.backbones.pretraining.mae:run",
           ("target", "mask_ratio", "masking", "tokenizer", "trust_tokenizer"),
           "MAE: random masking, pixel / norm-pixel / token targets (Table 8)"),
    Method("dvae", "pretrain_dvae", "maebench.backbones.pretraining.dvae:run", (),
           "the dVAE tokenizer that token targets read"),
    Method("supervised", "pretrain_supervised", "maebench.backbones.pretraining.supervised:run", (),
           "supervised ViT on the labels (the paper's baseline)"),
    Method("mocov3", "pretrain_mocov3", "maebench.backbones.pretraining.mocov3:run", (),
           "MoCo v3 contrastive baseline"),
)}

METHOD_OPTIONS: tuple[str, ...] = tuple(dict.fromkeys(o for m in METHODS.values() for o in m.options))
