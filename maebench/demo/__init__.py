"""`maebench demo`: the MAE paper's comparison in miniature, on the fashion world.

Five vit-micro backbones -- MAE with the normalised-pixel target, MAE with the pixel target,
MoCo v3, supervised (trained on all 60k labels) and scratch (random init) -- are pretrained on
the 60k Fashion-MNIST training images and transferred to the fashion world's tasks: low-label
fine-tuning (100 labels per class), the partial fine-tuning curve (Fig. 9), linear probing,
k-NN, COCO-style detection / instance segmentation and ADE20K-style semantic segmentation.

The demo sits on top, beside the CLI: it drives `maebench` command lines and reads their rows
through the public APIs (results store, leaderboard); nothing below imports it.

    stages.py   which stages run: literal `maebench` command lines, what each needs, estimates
    ledger.py   the stage ledger: recipe hashes, so a second run reuses unchanged stages
    eta.py      the ETA printed as each stage starts
    report.py   report.md and the per-stage result lines, from the demo's results store
    driver.py   one demo: the above in order, its stages run by a launcher (maebench/launch/: local
                lanes, one per physical core, or SLURM), then the leaderboard and the report

The fashion world's generators stay in maebench/data/ (`maebench data prepare fashion` and the
benchmarks use them too).
"""
from maebench.demo.ledger import recipe_hashes
from maebench.demo.driver import run
from maebench.demo.stages import ESTIMATE, LEFT_OUT, PRETRAIN, QUICK_WORLD, Stage, backbone_name, plan

__all__ = ["ESTIMATE", "LEFT_OUT", "PRETRAIN", "QUICK_WORLD", "Stage", "backbone_name", "plan", "recipe_hashes", "run"]
