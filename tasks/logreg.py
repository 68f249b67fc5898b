"""Logistic regression on frozen features (`maebench run --task linprobe --head logreg`), the
protocol of CLIP-style benchmarks: a multinomial logistic regression fitted to convergence by
L-BFGS on the device, full batch, on standardised features (an affine map, so the classifier
stays linear in the features). The L2 strength follows scikit-learn's convention: the objective
is C x sum of cross-entropies + |W|^2 / 2, minimised here divided by C x N. C is swept on a
held-out slice of the training set (DINOv2's logistic-regression evaluation holds out 10 %), the
chosen C refitted on the whole training set and scored once on the evaluation split.

The row is a linprobe row with config `head: logreg` and `sweep: true`."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from maebench import runs
from maebench.errors import UsageError
from maebench.runner import Outcome, Recipe
from maebench.runspec import RunSpec
from maebench.tasks import frozen_data
from maebench.data.heldout import stratified as holdout_split


def fit(x: torch.Tensor, y: torch.Tensor, C: float, num_classes: int, *, max_iter: int = 500,
        init: tuple[torch.Tensor, torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(W [D, classes], b [classes]) minimising mean CE + |W|^2 / (2 C N) on standardised x."""
    n, dim = x.shape
    w = (init[0].clone() if init else torch.zeros(dim, num_classes, device=x.device)).requires_grad_(True)
    b = (init[1].clone() if init else torch.zeros(num_classes, device=x.device)).requires_grad_(True)
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=max_iter, history_size=20, tolerance_grad=1e-7,
                            tolerance_change=1e-10, line_search_fn="strong_wolfe")
    reg = 1.0 / (2.0 * C * n)

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(x @ w + b, y) + reg * (w * w).sum()
        loss.backward()
        return loss
    opt.step(closure)
    return w.detach(), b.detach()


def standardise(train: torch.Tensor, *others: torch.Tensor) -> list[torch.Tensor]:
    mean, std = train.mean(0), train.std(0).clamp_min(1e-6)
    return [(t - mean) / std for t in (train, *others)]


@torch.no_grad()
def scores(w, b, x, y) -> dict:
    logits = x @ w + b
    top = logits.topk(min(5, logits.shape[1]), dim=1).indices
    hit = top.eq(y.view(-1, 1))
    n = max(len(y), 1)
    return {"top1": 100.0 * int(hit[:, :1].any(1).sum()) / n, "top5": 100.0 * int(hit.any(1).sum()) / n,
            "loss": float(F.cross_entropy(logits, y)) if len(y) else float("nan")}


def sweep(train_x, train_y, num_classes: int, Cs: list[float], *, holdout: float, seed: int,
          max_iter: int) -> tuple[float, list[dict], int, int]:
    """(chosen C, [{"C", "holdout_top1", "holdout_loss"}], fit images, held-out images): every C
    fitted on the fit part of the training set (warm-started from the previous, smaller C) and
    scored on the held-out part."""
    fit_i, held_i = holdout_split(train_y.cpu(), holdout, seed)
    fit_i, held_i = fit_i.to(train_x.device), held_i.to(train_x.device)
    xf, xh = standardise(train_x[fit_i], train_x[held_i])
    heads, init = [], None
    for C in sorted(Cs):
        init = fit(xf, train_y[fit_i], C, num_classes, max_iter=max_iter, init=init)
        sc = scores(*init, xh, train_y[held_i])
        heads.append({"C": C, "holdout_top1": sc["top1"], "holdout_loss": sc["loss"]})
    best = max(heads, key=lambda h: (h["holdout_top1"], -h["holdout_loss"], -h["C"]))
    return best["C"], heads, len(fit_i), len(held_i)


def recipe(spec: RunSpec, s) -> Recipe:
    """tasks/linprobe.py's recipe when --head logreg (s: its Setup)."""
    cfg = s.cfg
    Cs = cfg["logreg_Cs"] if isinstance(cfg["logreg_Cs"], list) else [cfg["logreg_Cs"]]
    if not Cs or any(not isinstance(c, (int, float)) or isinstance(c, bool) or c <= 0 for c in Cs):
        raise UsageError(f"config key 'logreg_Cs' must list numbers > 0, got {cfg['logreg_Cs']!r}")
    seed = spec.seed
    pooling, blocks = frozen_data.feature_choice(cfg)
    holdout_split(torch.tensor(s.data.train_targets), cfg["holdout"], seed)   # an empty slice fails before a row
    device = s.device
    printed: dict = {}

    def compute(run) -> Outcome:
        fr = frozen_data.load(spec.backbone, seed, s, blocks=blocks, pooling=(pooling,),
                              batch_size=cfg["eval_batch_size"], task="linprobe (logreg)")
        train_x = fr.train.select(pooling, blocks)[fr.subset].to(device)
        train_y = fr.train_labels.to(device)
        val_x, val_y = fr.val.select(pooling, blocks).to(device), fr.val.labels.to(device)
        C, heads, n_fit, n_held = sweep(train_x, train_y, s.data.num_classes, [float(c) for c in Cs],
                                        holdout=cfg["holdout"], seed=seed, max_iter=cfg["logreg_max_iter"])
        xt, xv = standardise(train_x, val_x)
        w, b = fit(xt, train_y, C, s.data.num_classes, max_iter=cfg["logreg_max_iter"])
        final = scores(w, b, xv, val_y)
        metrics = {"top1": final["top1"], "top5": final["top5"], "val_images": len(val_y), **fr.info,
                   "sweep": {"head": "logreg", "grid": {"C": sorted(float(c) for c in Cs)}, "heads": heads,
                             "chosen": {"C": C, "pooling": pooling, "blocks": blocks},
                             "holdout": cfg["holdout"], "fit_images": n_fit, "holdout_images": n_held,
                             "selected_on": "held-out slice of the training set"}}
        rec = frozen_data.label_subset_record(s, seed, run.out_dir)
        if rec:
            metrics["label_subset"] = rec
        printed.update(C=C, heads=heads)
        return Outcome(run.run_id, metrics)

    def report(metrics: dict, run) -> None:
        for h in printed["heads"]:
            print(f"  C {h['C']:<10g} held-out top1 {h['holdout_top1']:6.2f}" + ("  <- chosen" if h["C"] == printed["C"] else ""))
        print(f"linprobe (logreg): chosen C {printed['C']:g} ({pooling}, last {blocks} block{'s' * (blocks > 1)}); "
              f"top1 {metrics['top1']:.2f}  top5 {metrics['top5']:.2f} ({metrics['val_images']} val images; "
              f"run {run.run_id})")

    return Recipe(task="linprobe", backbone=spec.backbone, dataset=s.data.name, config=cfg, device=device,
                  backbone_info=runs.backbone_info(s.entry), checkpoint_sha256=s.entry.sha256,
                  compute=compute, report=report)
