"""Classification tasks, unit level: layer-decay groups, partial freezing rules, the weighted
k-NN vote, top-k counting, sharded evaluation and feature gathering, label subsets, protocols."""
import math

import numpy as np
import pytest
import torch
import torch.nn as nn
from torch.utils.data import TensorDataset

import maebench.distributed as dist
from maebench.backbones.vit import create_vit
from maebench import config
from maebench.errors import MaebenchError, UsageError
from maebench.tasks import features
from maebench.classification import evaluate, topk_correct
from maebench.tasks.finetune import layer_decay_groups
from maebench.tasks.knn import knn_grid_counts
from maebench.tasks.partial import check_blocks, freeze, parse_blocks


# ---- layer-wise lr decay ----------------------------------------------------------------
def test_layer_decay_scales_follow_the_formula():
    """vit-micro has 4 blocks: scale = decay ** (4 + 1 - layer_id), layer 0 = embeddings,
    block i = layer i + 1, fc_norm / head = layer 5. Expected values written out by hand."""
    model = create_vit("vit-micro", img_size=16, patch_size=4, num_classes=7, global_pool="avg")
    groups = layer_decay_groups(model, {"weight_decay": 0.05, "layer_decay": 0.65})
    scale = {n: g["lr_scale"] for g in groups for n in g["names"]}
    wd = {n: g["weight_decay"] for g in groups for n in g["names"]}
    expected = {
        "patch_embed.proj.weight": 0.65 ** 5, "cls_token": 0.65 ** 5, "pos_embed": 0.65 ** 5,
        "blocks.0.attn.qkv.weight": 0.65 ** 4, "blocks.0.norm1.bias": 0.65 ** 4,
        "blocks.1.mlp.fc1.weight": 0.65 ** 3, "blocks.2.attn.proj.bias": 0.65 ** 2,
        "blocks.3.mlp.fc2.weight": 0.65 ** 1, "fc_norm.weight": 1.0, "head.weight": 1.0, "head.bias": 1.0,
    }
    for name, s in expected.items():
        assert math.isclose(scale[name], s, rel_tol=1e-12), name
    assert math.isclose(0.65 ** 5, 0.1160290625)            # the embedding scale, by hand
    # decay only on matrices: biases, norms, cls token and position embedding are exempt
    assert wd["blocks.0.attn.qkv.weight"] == 0.05 and wd["head.weight"] == 0.05
    assert wd["blocks.0.norm1.bias"] == wd["cls_token"] == wd["pos_embed"] == wd["fc_norm.weight"] == 0.0
    assert set(scale) == {n for n, _ in model.named_parameters()}   # every parameter in one group


# ---- partial fine-tuning ------------------------------------------------------------------
def trainable(k, global_pool="avg"):
    model = create_vit("vit-micro", img_size=16, patch_size=4, num_classes=3, global_pool=global_pool)
    return set(freeze(model, k)), {n for n, _ in model.named_parameters()}


def test_partial_tunes_last_blocks_and_head():
    names, all_names = trainable(2)
    assert {n for n in names if n.startswith("blocks.")} == {n for n in all_names if n.startswith(("blocks.2.", "blocks.3."))}
    assert {"head.weight", "head.bias", "fc_norm.weight", "fc_norm.bias"} <= names
    assert not any(n.startswith(("patch_embed", "blocks.0.", "blocks.1.")) or n in ("cls_token", "pos_embed") for n in names)
    assert trainable(0)[0] == {"head.weight", "head.bias", "fc_norm.weight", "fc_norm.bias"}
    assert trainable(4)[0] == trainable(4)[1] - {"cls_token", "pos_embed", "patch_embed.proj.weight", "patch_embed.proj.bias"}
    # [cls]-token pooling: the final norm (not fc_norm) is the trained norm
    assert {"norm.weight", "norm.bias"} <= trainable(0, "token")[0]


def test_partial_half_block_is_the_last_mlp_sub_block():
    names, _ = trainable(0.5)
    blocks = {n for n in names if n.startswith("blocks.")}
    assert blocks == {"blocks.3.norm2.weight", "blocks.3.norm2.bias", "blocks.3.mlp.fc1.weight",
                      "blocks.3.mlp.fc1.bias", "blocks.3.mlp.fc2.weight", "blocks.3.mlp.fc2.bias"}


def test_blocks_option_parsing_and_checks():
    assert parse_blocks("0,0.5,1,2,4") == [0, 0.5, 1, 2, 4]
    assert parse_blocks("1,1,2") == [1, 2] and parse_blocks(None) == [None]
    with pytest.raises(UsageError, match="--blocks"):
        parse_blocks("1,two")
    for bad in (5, 1.5, -1, 0.25):
        with pytest.raises(UsageError, match="depth"):
            check_blocks(bad, 4)
    for ok in (0, 0.5, 1, 4):
        check_blocks(ok, 4)


# ---- weighted k-NN ------------------------------------------------------------------------
def brute_force_knn(bank, labels, queries, num_classes, k, t):
    """Straight from the definition, in float64 numpy: cosine similarity to every bank row,
    the k largest, each voting exp(sim / t) for its label."""
    b = bank / np.linalg.norm(bank, axis=1, keepdims=True)
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    out = np.zeros((len(q), num_classes))
    for i, row in enumerate(q @ b.T):
        for j in np.argsort(-row)[:k]:
            out[i, labels[j]] += np.exp(row[j] / t)
    return out


def test_knn_matches_brute_force_vote():
    g = torch.Generator().manual_seed(0)
    bank, queries = torch.randn(300, 16, generator=g), torch.randn(50, 16, generator=g)
    labels, q_labels = torch.randint(0, 6, (300,), generator=g), torch.randint(0, 6, (50,), generator=g)
    pairs = [(20, 0.07), (5, 0.2), (300, 0.07)]
    ours = knn_grid_counts(bank, labels, queries, q_labels, 6, pairs, chunk=7)    # chunks of 7: ragged end
    for k, t in pairs:
        ref = brute_force_knn(bank.double().numpy(), labels.numpy(), queries.double().numpy(), 6, k, t)
        want = topk_correct(torch.from_numpy(ref), q_labels)
        assert ours[(k, t)].tolist() == [50, *want.tolist()], (k, t)


def test_knn_on_separable_features_is_exact():
    """Each class is a tight cluster around its own direction: every query's 20 neighbours share
    its class, so top-1 is 100%."""
    g = torch.Generator().manual_seed(1)
    centres = torch.randn(5, 32, generator=g) * 5
    labels = torch.arange(5).repeat_interleave(40)                      # 40 per class
    bank = centres[labels] + 0.1 * torch.randn(200, 32, generator=g)
    q_labels = torch.arange(5).repeat(6)
    queries = centres[q_labels] + 0.1 * torch.randn(30, 32, generator=g)
    assert knn_grid_counts(bank, labels, queries, q_labels, 5, [(20, 0.07)])[(20, 0.07)].tolist() == [30, 30, 30]


def test_topk_counts_and_few_classes():
    logits = torch.tensor([[0.1, 0.9, 0.0], [0.8, 0.05, 0.15], [0.2, 0.3, 0.5]])
    targets = torch.tensor([1, 2, 0])
    assert topk_correct(logits, targets, ks=(1, 2, 5)).tolist() == [1, 2, 3]   # top-5 of 3 classes = all


# ---- distributed evaluation: every image exactly once -----------------------------------------
def as_rank(monkeypatch, r, w):
    monkeypatch.setattr(dist, "rank", lambda: r)
    monkeypatch.setattr(dist, "world_size", lambda: w)


@pytest.mark.parametrize("n", [0, 1, 5, 13])
@pytest.mark.parametrize("world", [1, 2, 3, 4])
def test_shard_sampler_covers_every_index_once(monkeypatch, n, world):
    seen = []
    for r in range(world):
        as_rank(monkeypatch, r, world)
        seen += list(dist.ShardSampler(n))
    assert sorted(seen) == list(range(n))


@pytest.mark.parametrize("world", [1, 2, 3, 4])
def test_sharded_evaluation_sums_to_the_single_process_result(monkeypatch, world):
    """Each simulated rank evaluates its shard; all_reduce_sum is then the sum of their counts.
    13 images over 2..4 ranks leave ragged shards: nothing may be padded or dropped."""
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(13, 8, generator=g), torch.randint(0, 6, (13,), generator=g)
    model = nn.Linear(8, 6)
    single = evaluate(model, TensorDataset(x, y), batch_size=4, device=torch.device("cpu"))
    counts = []
    monkeypatch.setattr(dist, "all_reduce_sum", lambda t: counts.append(t.clone()) or t)
    for r in range(world):
        as_rank(monkeypatch, r, world)
        evaluate(model, TensorDataset(x, y), batch_size=4, device=torch.device("cpu"))
    n, c1, c5 = torch.stack(counts).sum(0).tolist()
    assert n == 13 == single["val_images"]
    assert 100 * c1 / n == single["top1"] and 100 * c5 / n == single["top5"]


@pytest.mark.parametrize("world", [2, 3])
def test_feature_gathering_restores_dataset_order(monkeypatch, world):
    class Enc(nn.Module):   # the [cls] feature is the input itself
        def forward_features(self, x):
            return x

        def forward_head(self, x, pre_logits=False):
            return x

    data = TensorDataset(torch.arange(7.0).view(7, 1).repeat(1, 3), torch.arange(7))
    shards = []
    for r in range(world):
        as_rank(monkeypatch, r, world)
        shards.append(features.extract(Enc(), data, batch_size=2, device=torch.device("cpu"), gather=False))
    monkeypatch.setattr(dist, "all_gather_objects", lambda obj: shards)
    f, labels = features.extract(Enc(), data, batch_size=2, device=torch.device("cpu"))
    assert labels.tolist() == list(range(7)) and f[:, 0].tolist() == [float(i) for i in range(7)]


# ---- low-label subsets ------------------------------------------------------------------------
def test_label_subsets_are_stratified_exact_and_seeded(small_set):
    from collections import Counter

    from maebench.tasks.classification_data import open_data
    d = open_data(str(small_set), labels_per_class=3, seed=5)
    assert Counter(d.train_targets) == {0: 3, 1: 3, 2: 3, 3: 3}
    assert open_data(str(small_set), labels_per_class=3, seed=5).train_indices == d.train_indices
    assert open_data(str(small_set), labels_per_class=3, seed=6).train_indices != d.train_indices
    f = open_data(str(small_set), label_fraction=0.5, seed=0)
    assert Counter(f.train_targets) == {0: 5, 1: 5, 2: 5, 3: 5}
    assert d.name == "shapes" and d.n_val == 12 and d.n_train_total == 40
    with pytest.raises(MaebenchError, match="fewer than labels_per_class"):
        open_data(str(small_set), labels_per_class=11)
    with pytest.raises(UsageError, match="at most one"):
        open_data(str(small_set), labels_per_class=1, label_fraction=0.5)
    with pytest.raises(MaebenchError, match="missing-dir"):
        open_data(str(small_set.parent / "missing-dir"))


# ---- protocols ------------------------------------------------------------------------------
def test_protocol_defaults_per_size():
    base = config.load("finetune", arch="vit-base")
    assert (base["base_lr"], base["layer_decay"], base["drop_path"], base["epochs"]) == (5e-4, 0.65, 0.1, 100)
    large = config.load("finetune", arch="vit-large")
    assert (large["base_lr"], large["layer_decay"], large["epochs"]) == (1e-3, 0.75, 50)
    assert config.load("finetune", arch="vit-huge")["drop_path"] == 0.3
    lp = config.load("linprobe")
    assert (lp["optimizer"], lp["base_lr"], lp["batch_size"], lp["weight_decay"], lp["epochs"]) == ("lars", 0.1, 16384, 0.0, 90)
    kn = config.load("knn")
    assert (kn["k"], kn["temperature"]) == (20, 0.07)


def test_partial_protocol_is_the_finetune_recipe():
    """partial.yaml repeats finetune.yaml (the paper uses Table 9 for partial fine-tuning); only
    `blocks` may differ, so the two files cannot drift apart."""
    ft, pa = config.protocol_defaults("finetune"), config.protocol_defaults("partial")
    assert pa.pop("blocks") == 1
    assert pa == ft


def test_randaugment_posterize_at_full_magnitude():
    """timm asks Pillow to keep 0 bits at magnitude 10 ('inc1'), which Pillow >= 10 refuses; the
    fine-tuning transform must give the black image older Pillow gave instead of crashing."""
    from PIL import Image
    from timm.data.auto_augment import RandAugment

    from maebench.tasks.classification_data import finetune_train_transform
    aug = {"scale": [0.08, 1.0], "hflip": 0.5, "rand_augment": "rand-m10-mstd0-inc1", "reprob": 0.0, "remode": "pixel"}
    tf = finetune_train_transform({"img_size": 16, "aug": aug}, (0.5,) * 3, (0.5,) * 3)
    (ra,) = [t for t in tf.transforms if isinstance(t, RandAugment)]
    (op,) = [o for o in ra.ops if o.name == "PosterizeIncreasing"]
    op.prob = 1.0
    out = op(Image.new("RGB", (16, 16), (200, 120, 40)))
    assert np.asarray(out).max() == 0
