"""Frozen-feature evaluation, piece by piece: the grid of probe heads trained in one pass, the
held-out split, k-NN over k x T in one search, L-BFGS logistic regression, the Student-t
interval, and the feature cache (hit, miss on a changed key, a corrupt file rebuilt)."""
import pytest
import torch

from maebench.data.heldout import stratified as holdout_split
from maebench.tasks.linear_sweep import HeadBank, HeadSpec, select, train

CFG = dict(epochs=3, batch_size=16, warmup_epochs=1, min_lr=0.0, schedule="cosine", optimizer="lars", momentum=0.9)
POOL = ("cls", "avg")


def features(n=64, classes=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 2, 4, 8, generator=g), torch.randint(0, classes, (n,), generator=g)


def test_a_head_trained_in_a_grid_ends_as_it_would_alone():
    f, y = features()
    specs = [HeadSpec(lr, wd, p, b) for lr in (0.5, 4.0) for wd in (0.0, 1e-3) for p in POOL for b in (1, 4)]
    grid = train(specs, f, y, CFG, pooling=POOL, num_classes=3, seed=0, device="cpu")
    together = grid.evaluate(f, y)
    for h, spec in enumerate(specs):
        alone = train([spec], f, y, CFG, pooling=POOL, num_classes=3, seed=0, device="cpu").evaluate(f, y)[0]
        assert together[h]["loss"] == pytest.approx(alone["loss"], abs=1e-5), spec
        assert together[h]["top1"] == alone["top1"]


def test_one_head_equals_the_papers_probe_trained_with_timm_lars():
    """BatchNorm1d(affine=False) + Linear under timm's Lars on the same batches, constant lr."""
    from timm.optim import Lars

    from maebench.tasks.linprobe import ProbeHead, lars_groups
    f, y = features()
    cfg = {**CFG, "warmup_epochs": 0, "schedule": "constant"}
    spec = HeadSpec(2.0, 1e-3, "cls", 1)
    bank = train([spec], f, y, cfg, pooling=POOL, num_classes=3, seed=0, device="cpu")
    head = ProbeHead(8, 3)
    with torch.no_grad():
        head.linear.weight.copy_(HeadBank([spec], POOL, 4, 8, 3, seed=0, device="cpu").head_weight(0).T)
        head.linear.bias.zero_()
    opt = Lars(lars_groups(head, 1e-3), lr=2.0 * 16 / 256, momentum=0.9)
    g, x = torch.Generator().manual_seed(0), f[:, 0, -1, :]
    for _ in range(3):
        perm = torch.randperm(64, generator=g)
        for i in range(4):
            idx = perm[i * 16:(i + 1) * 16]
            loss = torch.nn.functional.cross_entropy(head(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    torch.testing.assert_close(bank.head_weight(0).T, head.linear.weight.detach(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(bank.b[bank.order.index(0)], head.linear.bias.detach(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(bank.running_var, head.bn.running_var, rtol=1e-5, atol=1e-6)


def test_holdout_is_a_seeded_stratified_slice_disjoint_from_the_fit_part():
    y = torch.tensor([0] * 30 + [1] * 20 + [2] * 10)
    fit, held = holdout_split(y, 0.1, seed=3)
    assert sorted(torch.cat([fit, held]).tolist()) == list(range(60))
    assert torch.bincount(y[held]).tolist() == [3, 2, 1]
    assert torch.equal(held, holdout_split(y, 0.1, seed=3)[1])
    assert not torch.equal(held, holdout_split(y, 0.1, seed=4)[1])


def test_selection_takes_the_best_held_out_top1_then_the_lower_loss_and_never_a_diverged_head():
    specs = [HeadSpec(lr, 0.0, "cls", 1) for lr in (1, 2, 3, 4)]
    scores = [{"top1": 90, "loss": 0.5}, {"top1": 95, "loss": 0.4}, {"top1": 95, "loss": 0.3},
              {"top1": 99, "loss": float("nan")}]
    assert select(specs, scores) == 2


def test_knn_grid_gives_for_every_k_and_T_what_a_separate_knn_gives():
    """One top-max(k) search serves every (k, T): each pair counts what a search of its own does."""
    from maebench.tasks.knn import knn_grid_counts
    g = torch.Generator().manual_seed(0)
    bank, bank_y = torch.randn(300, 16, generator=g), torch.randint(0, 5, (300,), generator=g)
    q, q_y = torch.randn(50, 16, generator=g), torch.randint(0, 5, (50,), generator=g)
    pairs = [(k, t) for k in (10, 20, 100, 200, 500) for t in (0.02, 0.07, 0.2)]
    got = knn_grid_counts(bank, bank_y, q, q_y, 5, pairs, chunk=17)
    for k, t in pairs:
        alone = knn_grid_counts(bank, bank_y, q, q_y, 5, [(k, t)], chunk=50)
        assert got[(k, t)].tolist() == alone[(k, t)].tolist(), (k, t)


def test_logreg_reaches_the_minimum_of_its_l2_regularised_objective():
    from maebench.tasks.logreg import fit
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(200, 6, generator=g), torch.randint(0, 3, (200,), generator=g)
    w, b = fit(x, y, C=0.5, num_classes=3)
    w, b = w.requires_grad_(True), b.requires_grad_(True)
    loss = torch.nn.functional.cross_entropy(x @ w + b, y) + (w * w).sum() / (2 * 0.5 * 200)
    gw, gb = torch.autograd.grad(loss, (w, b))
    assert gw.abs().max() < 1e-4 and gb.abs().max() < 1e-4


def test_t_interval_uses_student_t_quantiles():
    from maebench.leaderboards.compare import Summary, t975
    s = Summary([70.0, 71.0, 72.5])
    half = 4.302653 * s.std / 3 ** 0.5                  # t(0.975, 2) from any table
    assert s.interval == pytest.approx((s.mean - half, s.mean + half), rel=1e-5)
    assert s.text() == f"71.17 ± {s.std:.2f} [{s.mean - half:.2f}, {s.mean + half:.2f}] (n=3)"
    assert Summary([1.0]).interval is None and Summary([1.0]).text() == "1.00 (n=1)"
    assert t975(40) == pytest.approx(2.021075, abs=1e-4) and t975(1000) == pytest.approx(1.962339, abs=1e-4)


# ---- the feature cache ----------------------------------------------------------------------
@pytest.fixture
def tiny(tmp_path):
    from maebench.backbones.vit import create_vit
    from maebench.data.imagefolder import ImageFolder
    from maebench.data.shapes import ShapesOptions, prepare
    from maebench.data.transforms import classification_eval
    root = prepare(tmp_path / "d", ShapesOptions(img_size=16, classes=2, train_per_class=3, val_per_class=1),
                   kinds=("classification",))["classification"]
    torch.manual_seed(0)
    enc = create_vit("vit-micro", img_size=16, patch_size=4).eval()
    tf = classification_eval(16, (0.5,) * 3, (0.5,) * 3, crop_pct=0.875)
    return enc, ImageFolder(root, "train", transform=tf), tf


def get(enc, ds, tf, **kw):
    from maebench.tasks import feature_cache
    args = dict(transform=repr(tf), blocks=4, pooling=("cls", "avg"), batch_size=4, device=torch.device("cpu"))
    return feature_cache.get(enc, ds, **{**args, **kw})


def test_cache_serves_a_repeat_and_a_narrower_request_and_misses_a_changed_key(tiny, capsys):
    from maebench.tasks import features
    enc, ds, tf = tiny
    first = get(enc, ds, tf)
    assert first.status == "miss" and first.features.shape == (6, 2, 4, 96)
    x = torch.stack([ds[i][0] for i in range(6)])
    with torch.no_grad():                                # [cls] of the last block = the probe's features
        torch.testing.assert_close(first.select("cls", 1), features.cls_features(enc, x), rtol=1e-5, atol=1e-5)
    again = get(enc, ds, tf)
    assert again.status == "hit" and torch.equal(again.features, first.features)
    narrow = get(enc, ds, tf, blocks=1, pooling=("avg",))
    assert narrow.status == "hit" and torch.equal(narrow.features[:, 0], first.features[:, 1, -1:])
    assert get(enc, ds, tf, transform=repr(tf) + " 32px").status == "miss"        # changed transform
    with torch.no_grad():
        enc.blocks[0].mlp.fc1.bias.add_(1.0)                                        # changed weights
    assert get(enc, ds, tf).status == "miss"


def test_a_truncated_cache_file_fails_its_checksum_and_is_rebuilt_with_a_note(tiny, capsys):
    enc, ds, tf = tiny
    first = get(enc, ds, tf)
    blob = first.path.read_bytes()
    first.path.write_bytes(blob[:len(blob) // 2])
    rebuilt = get(enc, ds, tf)
    err = capsys.readouterr().err.strip().splitlines()
    assert rebuilt.status == "rebuilt" and torch.equal(rebuilt.features, first.features)
    assert len(err) == 1 and "fails its checksum" in err[0] and str(first.path) in err[0]
    assert get(enc, ds, tf).status == "hit"
