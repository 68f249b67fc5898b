"""MoCo v3 pieces against hand computations: InfoNCE (one process, and two gloo processes that
gather keys), the momentum update and its schedule, where in the step the momentum encoder
moves, the frozen random patch projection, and an interrupted run that resumes exactly."""
import math

import numpy as np
import pytest
import torch
from loop_config import loop_cfg

from maebench.backbones.mocov3 import MoCoV3, contrastive_loss, momentum_at
from maebench.optim import param_groups




def tiny_moco(**kw):
    torch.manual_seed(0)
    args = dict(img_size=16, patch_size=4, dim=8, mlp_dim=16, temperature=0.2)
    args.update(kw)
    return MoCoV3("vit-micro", **args)


def test_infonce_matches_numpy_hand_computation():
    q = np.array([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    k = np.array([[2.0, 1.0], [0.0, 1.0], [-1.0, 1.0]])
    t = 0.2
    qn = q / np.linalg.norm(q, axis=1, keepdims=True)
    kn = k / np.linalg.norm(k, axis=1, keepdims=True)
    logits = qn @ kn.T / t
    log_softmax = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    expected = -np.mean(np.diag(log_softmax)) * 2 * t          # positives on the diagonal, x 2T
    got = contrastive_loss(torch.tensor(q, dtype=torch.float32), torch.tensor(k, dtype=torch.float32), t)
    assert got.item() == pytest.approx(expected, rel=1e-5)
    # a perfectly aligned, well separated batch costs almost nothing; a swapped one a lot
    eye = torch.eye(3)
    assert contrastive_loss(eye, eye, t).item() < 0.01
    assert contrastive_loss(eye, eye[[1, 2, 0]], t).item() > 1.0


def test_model_loss_is_symmetric_over_the_two_views():
    m = tiny_moco().eval()                       # eval: no momentum update, BN running stats
    x1, x2 = torch.randn(4, 3, 16, 16), torch.randn(4, 3, 16, 16)
    with torch.no_grad():
        q1, q2 = m.predictor(m.base_encoder(x1)), m.predictor(m.base_encoder(x2))
        k1, k2 = m.momentum_encoder(x1), m.momentum_encoder(x2)
        expected = contrastive_loss(q1, k2, 0.2) + contrastive_loss(q2, k1, 0.2)
        assert m(x1, x2).item() == pytest.approx(expected.item(), rel=1e-6)
        assert m(x2, x1).item() == pytest.approx(expected.item(), rel=1e-6)


def test_momentum_schedule_is_a_half_cosine_from_099_to_1():
    assert momentum_at(0, 1000) == pytest.approx(0.99, abs=1e-12)
    assert momentum_at(1000, 1000) == 1.0
    assert momentum_at(500, 1000) == pytest.approx(0.995, abs=1e-12)
    assert momentum_at(250, 1000) == pytest.approx(1 - 0.005 * (1 + math.cos(math.pi / 4)), abs=1e-12)
    values = [momentum_at(s, 1000) for s in range(0, 1001, 50)]
    assert values == sorted(values)


def test_momentum_update_is_m_k_plus_one_minus_m_q():
    m = tiny_moco()
    with torch.no_grad():
        for p in m.base_encoder.parameters():
            p.copy_(torch.randn_like(p))
    k_before = [p.clone() for p in m.momentum_encoder.parameters()]
    q = [p.clone() for p in m.base_encoder.parameters()]
    bn_stats = {k: v.clone() for k, v in m.momentum_encoder.named_buffers()}
    m.update_momentum_encoder(0.9)
    for kb, qq, ka in zip(k_before, q, m.momentum_encoder.parameters()):
        torch.testing.assert_close(ka, 0.9 * kb + 0.1 * qq, rtol=0, atol=1e-6)
    for k, v in m.momentum_encoder.named_buffers():       # BN statistics are not averaged
        assert torch.equal(v, bn_stats[k])
    assert not any(p.requires_grad for p in m.momentum_encoder.parameters())


def _opt(m):
    return torch.optim.AdamW(param_groups(m, weight_decay=0.1), lr=1e-2)


def test_the_step_hook_moves_the_momentum_encoder_with_the_scheduled_m_and_forwards_do_not():
    """engine.fit calls on_step once before every optimizer step (tests/test_engine.py); here the
    hook applies m(step) and any number of forwards (micro-batches) in between leave it alone."""
    m = tiny_moco().train()
    opt = _opt(m)
    x = torch.randn(4, 3, 16, 16)
    for step in range(3):
        k_before = [p.clone() for p in m.momentum_encoder.parameters()]
        q_now = [p.detach().clone() for p in m.base_encoder.parameters()]
        m.on_step(step, 4)
        mom = momentum_at(step, 4)
        for kb, qq, ka in zip(k_before, q_now, m.momentum_encoder.parameters()):
            torch.testing.assert_close(ka, mom * kb + (1 - mom) * qq, rtol=0, atol=1e-6)
        k_after = [p.clone() for p in m.momentum_encoder.parameters()]
        for _ in range(2):
            m(x, x.flip(3)).backward()
        assert all(torch.equal(a, b) for a, b in zip(k_after, m.momentum_encoder.parameters()))
        opt.step()
        opt.zero_grad()


@pytest.mark.parametrize("frozen", [True, False])
def test_frozen_random_patch_projection_stays_unchanged(frozen):
    m = tiny_moco(stop_grad_patch_embed=frozen).train()
    w0 = m.base_encoder.patch_embed.proj.weight.detach().clone()
    b0 = m.base_encoder.patch_embed.proj.bias.detach().clone()
    block0 = m.base_encoder.blocks[0].attn.qkv.weight.detach().clone()
    opt = _opt(m)
    in_groups = {id(p) for g in opt.param_groups for p in g["params"]}
    assert (id(m.base_encoder.patch_embed.proj.weight) in in_groups) is not frozen
    for _ in range(3):
        m(torch.randn(4, 3, 16, 16), torch.randn(4, 3, 16, 16)).backward()
        opt.step()
        opt.zero_grad()
    unchanged = torch.equal(m.base_encoder.patch_embed.proj.weight, w0) and \
        torch.equal(m.base_encoder.patch_embed.proj.bias, b0)
    assert unchanged is frozen
    assert not torch.equal(m.base_encoder.blocks[0].attn.qkv.weight, block0)   # the rest trains
    # position embeddings are fixed sin-cos in MoCo v3, frozen either way
    assert not m.base_encoder.pos_embed.requires_grad


def test_encoder_state_dict_is_the_timm_vit_without_the_projection_head():
    from maebench.backbones.vit import create_vit
    m = tiny_moco()
    enc = m.encoder_state_dict()
    assert set(enc) == set(create_vit("vit-micro", img_size=16, patch_size=4).state_dict())
    assert not any(k.startswith("head.") for k in enc)


def _rank_loss(rank, world, port, q, k, out):
    """One process of a gloo group: its share of queries against everyone's keys."""
    import os

    import torch.distributed as tdist
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    tdist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        n = len(q) // world
        out.put((rank, contrastive_loss(q[rank * n:(rank + 1) * n], k[rank * n:(rank + 1) * n], 0.2).item()))
    finally:
        tdist.destroy_process_group()


def test_keys_are_gathered_across_processes_and_labels_offset_by_rank():
    import multiprocessing
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(6, 4, generator=g), torch.randn(6, 4, generator=g)
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    procs = [ctx.Process(target=_rank_loss, args=(r, 2, port, q, k, out)) for r in range(2)]
    for p in procs:
        p.start()
    got = dict(out.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    # by hand: rank r's 3 queries against all 6 keys, positives at columns 3r .. 3r+2
    qn = (q / q.norm(dim=1, keepdim=True)).double().numpy()
    kn = (k / k.norm(dim=1, keepdim=True)).double().numpy()
    logits = qn @ kn.T / 0.2
    log_softmax = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    for r in range(2):
        rows = np.arange(3 * r, 3 * r + 3)
        assert got[r] == pytest.approx(-log_softmax[rows, rows].mean() * 0.4, rel=1e-5)
    # equal shares: the mean over processes is the single-process loss of the whole batch
    assert (got[0] + got[1]) / 2 == pytest.approx(contrastive_loss(q, k, 0.2).item(), rel=1e-5)


class _Pairs(torch.utils.data.Dataset):
    """Two noisy views per sample, drawn in __getitem__ (resume must replay the draws too)."""

    def __len__(self):
        return 8

    def __getitem__(self, i):
        base = torch.full((3, 16, 16), float(i) / 8)
        return (base + 0.1 * torch.randn(3, 16, 16), base + 0.1 * torch.randn(3, 16, 16)), 0


def _fit(out_dir, stop_at=None, resume=False):
    import os
    import signal

    from maebench.engine import fit
    calls = {"n": 0}

    def loss_fn(m, batch, device):
        calls["n"] += 1
        if calls["n"] == stop_at:
            os.kill(os.getpid(), signal.SIGTERM)       # preempted mid-epoch
        (x1, x2), _ = batch
        return m(x1, x2), {}

    m = tiny_moco()
    cfg = loop_cfg(epochs=3, batch_size=4, lr=1e-3, weight_decay=0.1, num_workers=0, log_every=1)
    fit(m, _Pairs(), loss_fn, cfg, out_dir=out_dir, device=torch.device("cpu"), resume=resume,
        param_groups=param_groups(m, weight_decay=0.1), on_step=m.on_step, log=lambda s: None)
    return m


def test_resume_continues_the_momentum_schedule_exactly(tmp_path):
    from maebench.engine import Interrupted
    straight = _fit(tmp_path / "a")
    with pytest.raises(Interrupted):
        _fit(tmp_path / "b", stop_at=4)                 # stops after step 4 of 6 (mid epoch 2)
    resumed = _fit(tmp_path / "b", resume=True)
    for (k, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), k
