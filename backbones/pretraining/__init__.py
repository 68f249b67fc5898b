"""Pretraining programs, apart from the models they train (backbones/mae.py, dvae.py,
mocov3.py, vit.py). `METHODS` is the one table of `maebench pretrain --method` names, of the
same shape as the task table (tasks/table.py; the display fields label, metrics and headline are
the leaderboard's, which shows transfer tasks only); each program is imported only when it runs, so
`maebench --help` stays fast. A method's results rows are task `pretrain-<name>`, metric `loss`."""
from __future__ import annotations

from maebench.runspec import Program

METHODS: dict[str, Program] = {m.name: m for m in (
    Program("mae", "method", "pretrain_mae", "maebench.backbones.pretraining.mae_method:recipes",
            ("target", "mask_ratio", "masking", "tokenizer", "trust_tokenizer"),
            "MAE: random masking, pixel / norm-pixel / token targets (Table 8)"),
    Program("dvae", "method", "pretrain_dvae", "maebench.backbones.pretraining.dvae_method:recipes", (),
            "the dVAE tokenizer that token targets read"),
    Program("supervised", "method", "pretrain_supervised", "maebench.backbones.pretraining.supervised_method:recipes", (),
            "supervised ViT on the labels (the paper's baseline)"),
    Program("mocov3", "method", "pretrain_mocov3", "maebench.backbones.pretraining.mocov3_method:recipes", (),
            "MoCo v3 contrastive baseline"),
)}
