"""Partial fine-tuning (MAE paper Sec. 4.3, Fig. 9): freeze the ViT except its last K blocks,
the final norm and the head, then train with the fine-tuning recipe.

K = 0.5 is the paper's "MLP sub-block of the last block": in a pre-norm block
x = x + attn(norm1(x)); x = x + mlp(norm2(x)), the MLP sub-block is the second residual branch,
so we tune norm2 and mlp (and the layer-scale ls2 / gamma_2 where a model has one) and keep the
attention branch (norm1, attn) frozen. `--blocks 0,0.5,1,2,4` runs one training per K and
stores one result row per K (config key `blocks`), the points of the Fig. 9 curve.

K = 0 is the paper's linear probe (Fig. 9's 73.5 for ViT-L is Table 1's linear number), not
the head trained with the fine-tuning recipe: it runs the linprobe task's recipe (its protocol,
maebench/protocols/linprobe.yaml; --epochs, --batch-size and the --set keys linprobe knows carry
over), then a partial row with blocks 0 that carries that run's metrics and id (config keys
`protocol: linprobe`, `linprobe_run_id`), so the curve reads one table. With --out, the probe
runs in <the K = 0 directory>/linprobe.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import torch.nn as nn

from maebench.classification import uses_mixup
from maebench.errors import UsageError
from maebench.runner import Outcome, Recipe
from maebench.runspec import RunSpec
from maebench.tasks.classification_setup import check_batch, load_config, prepare
from maebench.tasks.finetune import build_classifier, classifier_recipe, forward_flops

HALF = 0.5
MLP_SUB_BLOCK = ("norm2.", "mlp.", "ls2.", "gamma_2")   # timm Block / BEiT Block names
HEAD_PARTS = ("head.", "fc_norm.", "norm.")              # after the blocks: always tuned


def parse_blocks(text: str | None) -> list[int | float | None]:
    """'0,0.5,1,2,4' -> [0, 0.5, 1, 2, 4]; None -> [None] (the protocol's default)."""
    if text is None:
        return [None]
    out: list[int | float | None] = []
    for part in str(text).split(","):
        try:
            k = float(part)
        except ValueError:
            raise UsageError(f"--blocks expects numbers such as 0,0.5,1,2,4; got '{text}'") from None
        k = int(k) if k.is_integer() else k
        if k not in out:
            out.append(k)
    return out


def check_blocks(k, depth: int) -> None:
    ok = not isinstance(k, bool) and isinstance(k, (int, float)) and (
        k == HALF or (float(k).is_integer() and 0 <= k <= depth))
    if not ok:
        raise UsageError(f"blocks must be 0.5 or a whole number from 0 to the backbone's depth ({depth}), got {k!r}")


def tuned(name: str, k: float, depth: int) -> bool:
    """Does parameter `name` train when the last `k` blocks are tuned?"""
    if name.startswith(HEAD_PARTS):
        return True
    if not name.startswith("blocks."):
        return False                                       # patch/pos embedding, cls token
    index, rest = name.split(".", 2)[1:]
    if k == HALF:
        return int(index) == depth - 1 and rest.startswith(MLP_SUB_BLOCK)
    return int(index) >= depth - int(k)


def freeze(model: nn.Module, k: float) -> list[str]:
    """Set requires_grad per `tuned`; returns the names left trainable."""
    depth = len(model.blocks)
    names = []
    for name, p in model.named_parameters():
        p.requires_grad_(tuned(name, k, depth))
        if p.requires_grad:
            names.append(name)
    return names


def recipes(spec: RunSpec):
    """One recipe per K (K = 0: the linear probe's recipe, then the partial row that carries it);
    every K is checked before the first row exists."""
    ks = parse_blocks(spec.option("blocks"))
    s = prepare(spec, extra={"blocks": ks[0]})
    cfgs = [s.cfg] + [load_config(spec, s.entry, {"blocks": k}) for k in ks[1:]]
    depth = s.entry.depth                                  # timm families: stored at registration
    for cfg in cfgs:                                       # every K checked before the first row
        check_blocks(cfg["blocks"], depth)
    for cfg in cfgs:
        if cfg["blocks"] != 0:
            check_batch(cfg, len(s.data.train_indices), even=uses_mixup(cfg))
    probe = linear_probe_spec(spec) if any(cfg["blocks"] == 0 for cfg in cfgs) else None
    probe_recipes = list(probe.program.recipes()(probe)) if probe else []   # checked before any row too

    def out_for(k) -> str | None:                          # one directory per K of a sweep
        return str(Path(spec.out) / f"blocks-{k:g}") if spec.out and len(cfgs) > 1 else spec.out

    for cfg in cfgs:
        k = cfg["blocks"]
        if k == 0:
            yield from linear_probe_recipes(probe, probe_recipes, out_for(0))
            continue
        model = build_classifier(spec.backbone, cfg, s.data.num_classes, spec.seed)
        freeze(model, k)
        # The engine counts 3 x forward FLOPs per image (forward + backward); frozen blocks only
        # run forward. Blocks dominate a ViT's FLOPs, so the tuned share is about K / depth
        # (the MLP is about 2/3 of a block's FLOPs).
        total = forward_flops(model, cfg["img_size"])
        share = (2 / 3 if k == HALF else k) / depth
        flops = total * (1 - share) / 3 + total * share
        yield classifier_recipe(spec, "partial", dataclasses.replace(s, cfg=cfg), model,
                                flops_per_image=flops, out=out_for(k))


def search_points(spec: RunSpec) -> list[tuple[RunSpec, bool]]:
    """--search: one search per K, each in its own directory under --out when there are several;
    K = 0 searches inside the linear probe's recipe (its joint sweep: True)."""
    ks = parse_blocks(spec.option("blocks"))

    def one(k) -> RunSpec:
        if k is None:
            return spec
        out = str(Path(spec.out) / f"blocks-{k:g}") if spec.out and len(ks) > 1 else spec.out
        return spec.replace(options={**spec.options, "blocks": f"{k:g}"}, out=out)
    return [(one(k), k == 0) for k in ks]


def linear_probe_spec(spec: RunSpec) -> RunSpec:
    """The linprobe task's spec for K = 0: the same backbone, data, seed, labels and training
    flags; the --set keys the linprobe protocol knows; its own default config file."""
    from maebench import config
    from maebench.tasks.table import TASKS
    known = config.flatten(config.protocol_defaults("linprobe"))
    sets = tuple(item for item in spec.sets if config.parse_set(item)[0] in known)
    options = {k: spec.options.get(k) for k in ("labels_per_class", "label_fraction")}
    return spec.replace(program=TASKS["linprobe"], config_file=None, sets=sets, options=options)


def linear_probe_recipes(probe: RunSpec, probe_recipes: list[Recipe], out: str | None):
    """K = 0: the linear probe (its own row, task linprobe), then the partial row with blocks 0
    that carries the probe's metrics and run id."""
    from maebench import runs
    from maebench.results import ResultsStore
    (recipe,) = probe_recipes
    recipe.out = str(Path(out) / "linprobe") if out else None
    print("partial: blocks 0 is the paper's linear probe (Fig. 9): running the linprobe protocol")
    yield recipe
    probe_id = runs.run_id_for(recipe.task, recipe.backbone, recipe.dataset, recipe.config, probe.seed)

    def carry(run) -> Outcome:
        (*_, row) = ResultsStore(probe.results).rows(run_id=probe_id)    # the probe's done row
        return Outcome(run.run_id, dict(row.metrics), peak_mem_mb=row.peak_mem_mb, images_per_s=row.images_per_s)

    def report(metrics: dict, run) -> None:
        print(f"partial blocks 0: top1 {metrics.get('top1', float('nan')):.2f} (linear probe run {probe_id})")

    cfg = {**recipe.config, "blocks": 0, "protocol": "linprobe", "linprobe_run_id": probe_id}
    yield Recipe(task="partial", backbone=recipe.backbone, dataset=recipe.dataset, config=cfg,
                 backbone_info=recipe.backbone_info, checkpoint_sha256=recipe.checkpoint_sha256, out=out,
                 compute=carry, report=report)
