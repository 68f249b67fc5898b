"""`maebench study`: the paper's ablations as a command -- a grid of MAE pretrainings, each scored by
the same transfer protocols, in one table per ablation with the default row marked and the
paper's numbers beside ours.

A study file (maebench/study/builtin/*.yaml are two):

    name: mask-ratio                   # backbones are study-<name>-<variant>
    arch: vit-micro
    data: fashion                      # the fashion world (prepared by the first stage), or a directory
    base: {target: pixel}              # pretrain_mae config keys (as --set takes them)
    ablations:                         # one table each; the base is every table's marked row
      mask ratio:
        - {name: "0.5", label: "50%", set: {mask_ratio: 0.5}, paper: "50%"}
        - {label: "75%", base: true, paper: "75%"}
        - {label: PCA, not_run: "why", paper: PCA}      # a paper row this study does not run
    variants: [{name: deep, set: {decoder_depth: 4}}]   # ... or a flat list, and/or
    grid: {mask_ratio: [0.1, 0.5, 0.9]}                 # a grid over keys (names mask_ratio-0.1, ...)
    tokenizers: {NAME: {epochs: 2}}    # `pretrain --method dvae` stages a `tokenizer: NAME` target needs
                                       # (data: fashion-quick trains it on the quick world)
    protocols: [finetune, linprobe]    # how each variant is scored (`maebench run --task`)
    protocol_options: {linprobe: [--cached-features]}
    transfer_data: {coco: DIR}         # optional: another dataset for a protocol
    seeds: [0]
    paper: table1                      # leaderboards/reference.yaml `studies:` entry

studyfile.py reads and checks it, plan.py makes the stages, driver.py runs them and writes the
report, tables.py / render.py / claims.py are the report.
"""
from maebench.study.studyfile import Study, read

BUILTIN = ("table1", "mask-ratio")


def builtin_path(name: str):
    from pathlib import Path
    return Path(__file__).parent / "builtin" / f"{name}.yaml"


__all__ = ["BUILTIN", "Study", "builtin_path", "read"]
