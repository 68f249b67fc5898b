"""A grid of linear-probe heads trained together on cached features, in one pass per epoch.

Every head is the paper's probe (BatchNorm1d without affine parameters, then a linear layer,
LARS with momentum 0.9, linear warm-up then cosine) with its own learning rate, weight decay and
input: the [cls] token, the average-pooled patch tokens, or the backbone's own probe feature
where it differs from both (`probe`, backbones/timm_family.py: DINOv2's [cls] concatenated with
the mean of the patch tokens, registers left out, read from the [cls] and avg columns; EVA-02's
and BEiT v2's fc_norm of the mean, SigLIP's attention pool, extracted as a channel of their
own), of the last block or of the last 4 blocks concatenated (DINOv2's linear-evaluation grid).
BatchNorm without affine is per feature,
so one normalisation of the union of the inputs serves every head; the heads reading the same
input (its columns of that union) form a group whose step is one matrix product forward and one
backward for all of them, with the cross-entropy gradient written out (no autograd graph). Heads do not
interact: a head trained in a grid ends as it would alone (a test checks it).

Selection never reads the evaluation split: `select` scores every head on a held-out slice of
the training set (maebench/data/heldout.py `stratified`), and only the chosen configuration, retrained on the whole
training set, is scored once on the evaluation split (tasks/linprobe.py).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch

from maebench.errors import UsageError
from maebench.lr_rule import peak_lr
from maebench.optim import lr_at

BN_MOMENTUM, BN_EPS, INIT_STD, TRUST_COEFF = 0.1, 1e-6, 0.01, 0.001


@dataclass(frozen=True)
class HeadSpec:
    lr: float                 # base lr: the peak lr is lr x batch / 256, as the protocol's base_lr
    weight_decay: float
    pooling: str              # "cls", "avg", "cls+avg" (both columns) or "probe" (its own channel)
    blocks: int               # last 1 or last 4 blocks

    def as_dict(self) -> dict:
        return asdict(self)

    def as_point(self) -> dict:
        """The head as a point of the protocol's search space (its config keys)."""
        return {"base_lr": self.lr, "weight_decay": self.weight_decay, "feature_blocks": self.blocks,
                "feature_pooling": "probe" if self.pooling == "cls+avg" else self.pooling}   # DINOv2's probe feature


def grid(space: dict) -> list[HeadSpec]:
    """The sweep's heads from the search space (maebench/protocols/linprobe.yaml `search.space`,
    checked by maebench/search.py): base_lr x weight_decay x feature_pooling x feature_blocks."""
    def values(key, kind):
        v = space.get(key)
        v = v if isinstance(v, list) else [v]
        try:
            return [kind(x) for x in v]
        except (TypeError, ValueError):
            raise UsageError(f"search space key '{key}' must list {kind.__name__} values, got {space.get(key)!r}") from None
    unknown_keys = set(space) - {"base_lr", "weight_decay", "feature_pooling", "feature_blocks"}
    if unknown_keys:
        raise UsageError(f"the linear probe's sweep searches base_lr, weight_decay, feature_pooling and "
                         f"feature_blocks, not {', '.join(sorted(unknown_keys))}")
    lrs, wds = values("base_lr", float), values("weight_decay", float)
    pools, blocks = values("feature_pooling", str), values("feature_blocks", int)
    for p in pools:
        if p not in SWEEP_POOLINGS:
            from maebench.errors import unknown
            raise unknown("feature_pooling value", p, SWEEP_POOLINGS)
    return [HeadSpec(lr, wd, p, b) for p in pools for b in blocks for wd in wds for lr in lrs]


SWEEP_POOLINGS = ("cls", "avg", "probe")
CHANNELS = ("cls", "avg", "probe")          # the extracted poolings, in the features' order


def resolve_probe(specs: list[HeadSpec], probe_kind: str | None) -> tuple[list[HeadSpec], str | None]:
    """The grid for a backbone whose documented probe feature is `probe_kind` (the registry
    entry's `probe`: None for maebench's ViTs, else cls+avg | token | avg | map), and a note on
    what changed. `probe` heads become [cls] heads where the probe feature is the [cls] token
    (duplicates dropped), 'cls+avg' heads for DINOv2, and stay a channel of their own for the
    rest; a backbone without [cls] (SigLIP's attention pool) loses its [cls] heads."""
    kind = probe_kind or "token"
    as_pool = {"token": "cls", "pre_logits": "cls", "cls+avg": "cls+avg"}.get(kind, "probe")
    out, note = [], None
    for h in specs:
        h = HeadSpec(h.lr, h.weight_decay, as_pool, h.blocks) if h.pooling == "probe" else h
        if h not in out:
            out.append(h)
    if kind == "map" and any(h.pooling == "cls" for h in out):
        kept = [h for h in out if h.pooling != "cls"]
        if not kept:
            raise UsageError("this backbone has no [cls] token (its probe feature is an attention pool): "
                             "use --search-space feature_pooling=avg,probe")
        out, note = kept, "no [cls] token: the cls heads are left out"
    if any(h.pooling == "probe" for h in specs):
        note = ", ".join(x for x in (note, f"the backbone's probe feature ({kind}) as '{as_pool}' heads") if x)
    return out, note


def channels(specs: list[HeadSpec]) -> tuple[str, ...]:
    """The poolings to extract for `specs` ('cls+avg' reads the cls and avg channels)."""
    need = {p for h in specs for p in (("cls", "avg") if h.pooling == "cls+avg" else (h.pooling,))}
    return tuple(p for p in CHANNELS if p in need)


class _Group:
    """The heads reading one input (pooling, blocks): column ranges `segs` [(start, end), ...] of
    the normalised union (one range, or two for 'cls+avg'), weights [D, heads, classes] (D the
    ranges' total width, in their order) so that all its heads are one matrix product."""

    def __init__(self, heads: list[int], segs: list[tuple[int, int]]):
        self.heads, self.segs = heads, segs
        self.width = sum(e - s for s, e in segs)
        self.w: torch.Tensor | None = None
        self.off = 0                                   # first position of its heads in group order
        self.buf: torch.Tensor | None = None


class HeadBank:
    """H heads over the columns of features [N, P, L, D] (poolings x last blocks x dim)."""

    def __init__(self, specs: list[HeadSpec], pooling: tuple[str, ...], blocks: int, dim: int,
                 num_classes: int, *, seed: int, device, optimizer: str = "lars", momentum: float = 0.9):
        if optimizer not in ("lars", "sgd"):
            from maebench.errors import unknown
            raise unknown("sweep optimizer", optimizer, ("lars", "sgd"))
        self.specs, self.device, self.optimizer, self.momentum = specs, device, optimizer, momentum
        self.pools = [p for p in pooling if p in channels(specs)]
        self.nblocks = max(s.blocks for s in specs)
        if self.nblocks > blocks:
            raise UsageError(f"a head reads the last {self.nblocks} blocks but only {blocks} were extracted")
        self.src_pool = [pooling.index(p) for p in self.pools]
        self.src_blocks = blocks
        width = len(self.pools) * self.nblocks * dim
        groups: dict[tuple[str, int], _Group] = {}
        for h, s in enumerate(specs):
            segs = []
            for p in (("cls", "avg") if s.pooling == "cls+avg" else (s.pooling,)):
                start = (self.pools.index(p) * self.nblocks + self.nblocks - s.blocks) * dim
                segs.append((start, start + s.blocks * dim))
            groups.setdefault((s.pooling, s.blocks), _Group([], segs)).heads.append(h)
        self.groups = list(groups.values())
        self.order = [h for grp in self.groups for h in grp.heads]     # heads in group order
        off = 0
        for grp in self.groups:
            w = torch.empty(grp.width, len(grp.heads), num_classes)
            for j in range(len(grp.heads)):
                # every head draws its own init from `seed`: the same head alone or in any grid
                g = torch.Generator().manual_seed(seed)
                w[:, j] = torch.nn.init.trunc_normal_(torch.empty(num_classes, grp.width),
                                                      std=INIT_STD, generator=g).T
            grp.w, grp.off = w.to(device), off
            off += len(grp.heads)
        self.order_t = torch.tensor(self.order, device=device)
        self.b = torch.zeros(len(specs), num_classes, device=device)   # group order
        self.buf_b = None
        self.diverged: list[dict] = []           # specs of heads whose weights became non-finite
        self.running_mean = torch.zeros(width, device=device)
        self.running_var = torch.ones(width, device=device)
        self.wd = torch.tensor([specs[h].weight_decay for h in self.order], device=device)

    def head_weight(self, h: int) -> torch.Tensor:
        """[D_h, classes]: head h's weight matrix."""
        grp = next(g for g in self.groups if h in g.heads)
        return grp.w[:, grp.heads.index(h)]

    def finite(self) -> list[bool]:
        return [bool(torch.isfinite(self.head_weight(h)).all()) for h in range(len(self.specs))]

    def inputs(self, feats: torch.Tensor) -> torch.Tensor:
        """[B, P, L, D] -> [B, width]: the columns any head reads."""
        f = feats[:, self.src_pool, self.src_blocks - self.nblocks:, :]
        return f.reshape(f.shape[0], -1).to(self.device, torch.float32)

    def _logits(self, z: torch.Tensor) -> torch.Tensor:
        """[B, width] normalised -> [B, H, C], heads in group order: one product per group."""
        out = []
        for grp in self.groups:
            d, hg, c = grp.w.shape
            w, row, y = grp.w.view(d, hg * c), 0, None
            for s, e in grp.segs:                # one product per column range ('cls+avg': two)
                part = z[:, s:e] @ w[row:row + e - s]
                y, row = part if y is None else y + part, row + e - s
            out.append(y.view(-1, hg, c))
        return (out[0] if len(out) == 1 else torch.cat(out, dim=1)) + self.b

    def step(self, x: torch.Tensor, y: torch.Tensor, lr: torch.Tensor) -> None:
        """One optimizer step of every head on one batch x = inputs(features) [B, width];
        lr [H] (spec order) the scheduled lrs."""
        n = x.shape[0]
        mean = x.mean(0)
        xc = x - mean
        var = xc.square().mean(0)
        self.running_mean.mul_(1 - BN_MOMENTUM).add_(mean, alpha=BN_MOMENTUM)
        self.running_var.mul_(1 - BN_MOMENTUM).add_(var, alpha=BN_MOMENTUM * n / max(n - 1, 1))
        z = xc.mul_(torch.rsqrt(var + BN_EPS))
        logits = self._logits(z)                                            # [B, H, C]
        d = (logits - logits.amax(-1, keepdim=True)).exp_()               # softmax, written out: torch's
        d.div_(d.sum(-1, keepdim=True))                                     # kernel is ~4x slower at C=10
        H, C = self.b.shape
        d.scatter_add_(2, y.view(n, 1, 1).expand(n, H, 1), torch.full((n, H, 1), -1.0, device=self.device))
        d /= n                                                              # dCE/dlogits, batch mean
        lr = lr[self.order_t]
        for grp in self.groups:
            dim, hg, c = grp.w.shape
            sl = slice(grp.off, grp.off + hg)
            dd = d[:, sl].reshape(n, hg * c)
            gw = (z[:, grp.segs[0][0]:grp.segs[0][1]].T @ dd if len(grp.segs) == 1 else
                  torch.cat([z[:, s:e].T @ dd for s, e in grp.segs])).view(dim, hg, c)
            wd = self.wd[sl].view(1, hg, 1)
            if self.optimizer == "lars":                                    # timm Lars, always_adapt for W
                wn = grp.w.square().sum(dim=(0, 2)).sqrt()
                gn = gw.square().sum(dim=(0, 2)).sqrt()
                trust = TRUST_COEFF * wn / (gn + wn * wd.view(-1) + 1e-8)
                trust = torch.where((wn > 0) & (gn > 0), trust, torch.ones_like(trust))
                gw = (gw + wd * grp.w) * trust.view(1, hg, 1)
            else:
                gw = gw + wd * grp.w
            if grp.buf is None:
                grp.buf = gw
            else:
                grp.buf.mul_(self.momentum).add_(gw)
            grp.w.sub_(lr[sl].view(1, hg, 1) * grp.buf)
        gb = d.sum(0)
        if self.buf_b is None:
            self.buf_b = gb
        else:
            self.buf_b.mul_(self.momentum).add_(gb)
        self.b.sub_(lr.view(-1, 1) * self.buf_b)

    @torch.no_grad()
    def evaluate(self, feats: torch.Tensor, y: torch.Tensor, chunk: int = 4096) -> list[dict]:
        """Per head (spec order) {"top1", "top5", "loss"} on (feats [N, P, L, D], y), BatchNorm
        with the running statistics."""
        H, C = self.b.shape
        correct = torch.zeros(H, 2, dtype=torch.long)
        loss = torch.zeros(H, dtype=torch.float64)
        for start in range(0, len(y), chunk):
            x = self.inputs(feats[start:start + chunk])
            yy = y[start:start + chunk].to(self.device)
            logits = self._logits((x - self.running_mean) * torch.rsqrt(self.running_var + BN_EPS))
            logp = torch.log_softmax(logits, dim=-1)
            loss += -logp.gather(2, yy.view(-1, 1, 1).expand(-1, H, 1)).sum(dim=(0, 2)).double().cpu()
            hit = logits.topk(min(5, C), dim=-1).indices.eq(yy.view(-1, 1, 1))            # [B, H, 5]
            correct[:, 0] += hit[..., :1].any(-1).sum(0).cpu()
            correct[:, 1] += hit.any(-1).sum(0).cpu()
        n = max(len(y), 1)
        by_group = [{"top1": 100.0 * int(c[0]) / n, "top5": 100.0 * int(c[1]) / n, "loss": float(l) / n}
                    for c, l in zip(correct, loss)]
        return [by_group[self.order.index(h)] for h in range(H)]


def train(specs: list[HeadSpec], feats: torch.Tensor, y: torch.Tensor, cfg: dict, *, pooling: tuple[str, ...],
          num_classes: int, seed: int, device) -> HeadBank:
    """Train every head of `specs` on features [N, P, L, D] for cfg epochs, batch min(batch_size, N),
    the same shuffled batches for all heads (a generator seeded by `seed`)."""
    n = len(y)
    batch = min(int(cfg["batch_size"]), n)
    steps_per_epoch = max(n // batch, 1)
    total = cfg["epochs"] * steps_per_epoch
    warmup = cfg.get("warmup_epochs", 0) * steps_per_epoch
    bank = HeadBank(specs, pooling, feats.shape[2], feats.shape[3], num_classes, seed=seed, device=device,
                    optimizer=cfg.get("optimizer", "lars"), momentum=cfg.get("momentum", 0.9))
    peaks = sorted({s.lr for s in specs})
    which = torch.tensor([peaks.index(s.lr) for s in specs], device=device)
    peak_lrs = [peak_lr(p, batch) for p in peaks]                       # the grid holds base lrs
    x_all, y = bank.inputs(feats), y.to(device)                         # [N, width], once
    g = torch.Generator().manual_seed(seed)
    step = 0
    for _ in range(cfg["epochs"]):
        perm = torch.randperm(n, generator=g)
        for i in range(steps_per_epoch):
            idx = perm[i * batch:(i + 1) * batch].to(device)
            lrs = torch.tensor([lr_at(step, lr=p, min_lr=cfg.get("min_lr", 0.0), warmup_steps=warmup,
                                      total_steps=total, schedule=cfg.get("schedule", "cosine"))
                                for p in peak_lrs], device=device)
            bank.step(x_all.index_select(0, idx), y.index_select(0, idx), lrs[which])
            step += 1
    bank.diverged = [s.as_dict() for s, ok in zip(specs, bank.finite()) if not ok]
    return bank


def select(specs: list[HeadSpec], scores: list[dict]) -> int:
    """Index of the chosen head: highest held-out top-1, then lowest held-out loss, then grid order.
    A head whose loss is not finite is never chosen."""
    def key(i):
        s = scores[i]
        ok = math.isfinite(s["loss"])
        return (ok, s["top1"] if ok else -1.0, -s["loss"] if ok else -math.inf, -i)
    return max(range(len(specs)), key=key)
