"""The MAE model (backbones/mae.py): official layout, initialisation, targets, loss, determinism."""
import math
from functools import partial

import pytest
import torch
import torch.nn as nn

from maebench.backbones.mae import MaskedAutoencoderViT, create_mae, from_state_dict
from maebench.errors import MaebenchError, UsageError
from maebench.optim import param_groups




def small(**kw):
    """img 16, patch 4 (4 x 4 = 16 patches), 8-d encoder x 2 blocks, 4-d decoder x 1 block."""
    args = dict(img_size=16, patch_size=4, in_chans=3, embed_dim=8, depth=2, num_heads=2,
                decoder_embed_dim=4, decoder_depth=1, decoder_num_heads=1, mlp_ratio=2.,
                norm_layer=partial(nn.LayerNorm, eps=1e-6))
    args.update(kw)
    return MaskedAutoencoderViT(**args)


def block_keys(prefix, d, hidden):
    """One timm/official Block, written out by name."""
    return {f"{prefix}.norm1.weight": [d], f"{prefix}.norm1.bias": [d],
            f"{prefix}.attn.qkv.weight": [3 * d, d], f"{prefix}.attn.qkv.bias": [3 * d],
            f"{prefix}.attn.proj.weight": [d, d], f"{prefix}.attn.proj.bias": [d],
            f"{prefix}.norm2.weight": [d], f"{prefix}.norm2.bias": [d],
            f"{prefix}.mlp.fc1.weight": [hidden, d], f"{prefix}.mlp.fc1.bias": [hidden],
            f"{prefix}.mlp.fc2.weight": [d, hidden], f"{prefix}.mlp.fc2.bias": [d]}


def test_state_dict_has_the_official_keys_and_shapes():
    expected = {"cls_token": [1, 1, 8], "pos_embed": [1, 17, 8],
                "patch_embed.proj.weight": [8, 3, 4, 4], "patch_embed.proj.bias": [8],
                **block_keys("blocks.0", 8, 16), **block_keys("blocks.1", 8, 16),
                "norm.weight": [8], "norm.bias": [8],
                "decoder_embed.weight": [4, 8], "decoder_embed.bias": [4],
                "mask_token": [1, 1, 4], "decoder_pos_embed": [1, 17, 4],
                **block_keys("decoder_blocks.0", 4, 8),
                "decoder_norm.weight": [4], "decoder_norm.bias": [4],
                "decoder_pred.weight": [4 * 4 * 3, 4], "decoder_pred.bias": [48]}
    got = {k: list(v.shape) for k, v in small().state_dict().items()}
    assert got == expected


def test_position_embeddings_are_fixed_sincos():
    m = small()
    assert not m.pos_embed.requires_grad and not m.decoder_pos_embed.requires_grad
    assert torch.equal(m.pos_embed[0, 0], torch.zeros(8))                 # [cls] row: zeros
    # patch (row 0, col 0): sin(0) = 0 and cos(0) = 1 for both the column and the row halves
    assert torch.allclose(m.pos_embed[0, 1], torch.tensor([0., 0, 1, 1, 0, 0, 1, 1]))
    # patch (row 0, col 1): column half at position 1, frequencies 1 and 1/100 (D/4 = 2 of them)
    col = [math.sin(1), math.sin(0.01), math.cos(1), math.cos(0.01)]
    assert torch.allclose(m.pos_embed[0, 2], torch.tensor(col + [0, 0, 1, 1.]), atol=1e-6)
    names = {n for g in param_groups(m, weight_decay=0.05) for n in g["names"]}
    assert "pos_embed" not in names and "decoder_pos_embed" not in names


def test_weight_decay_skips_norms_biases_and_tokens():
    groups = param_groups(small(), weight_decay=0.05)
    no_decay = {n for g in groups if g["weight_decay"] == 0 for n in g["names"]}
    decay = {n for g in groups if g["weight_decay"] > 0 for n in g["names"]}
    assert {"cls_token", "mask_token", "norm.weight", "blocks.0.attn.qkv.bias", "decoder_pred.bias"} <= no_decay
    assert {"blocks.0.attn.qkv.weight", "decoder_pred.weight", "patch_embed.proj.weight"} <= decay


def test_initialisation_follows_the_release():
    torch.manual_seed(0)
    m = create_mae("vit-tiny", img_size=32, patch_size=16, decoder_embed_dim=64, decoder_depth=1,
                   decoder_num_heads=2)
    for name, mod in m.named_modules():
        if isinstance(mod, nn.Linear):
            bound = math.sqrt(6 / (mod.in_features + mod.out_features))      # xavier uniform
            assert mod.weight.abs().max() <= bound + 1e-7, name
            assert mod.weight.abs().max() > 0.9 * bound, name
            assert torch.equal(mod.bias, torch.zeros_like(mod.bias)), name
        if isinstance(mod, nn.LayerNorm):
            assert torch.equal(mod.weight, torch.ones_like(mod.weight)) and not mod.bias.any(), name
    w = m.patch_embed.proj.weight
    assert w.abs().max() <= math.sqrt(6 / (w[0].numel() + w.shape[0])) + 1e-7     # as a Linear
    assert m.cls_token.std().item() == pytest.approx(0.02, rel=0.3)
    assert m.mask_token.std().item() == pytest.approx(0.02, rel=0.3)


def test_patchify_layout_and_round_trip():
    m = small()
    imgs = torch.randn(2, 3, 16, 16)
    x = m.patchify(imgs)
    assert x.shape == (2, 16, 48)
    # patch 5 = row 1, column 1: pixels [4:8, 4:8], flattened as (row, column, channel)
    assert torch.equal(x[1, 5], imgs[1, :, 4:8, 4:8].permute(1, 2, 0).reshape(-1))
    assert torch.equal(m.unpatchify(x), imgs)


def test_loss_is_the_mean_squared_error_over_removed_patches_only():
    torch.manual_seed(0)
    m = small()
    imgs = torch.randn(3, 3, 16, 16)
    latent, mask, ids_restore = m.forward_encoder(imgs, 0.75)
    pred = m.forward_decoder(latent, ids_restore)
    loss = m.forward_loss(imgs, pred, mask)
    target = m.patchify(imgs)
    per_patch = [((pred[n, i] - target[n, i]) ** 2).mean() for n in range(3) for i in range(16) if mask[n, i]]
    assert loss.item() == pytest.approx(torch.stack(per_patch).mean().item(), rel=1e-5)

    # changing predictions of visible patches changes nothing; of a removed patch, it does
    visible = (mask == 0).unsqueeze(-1)
    assert m.forward_loss(imgs, pred + 100 * visible * torch.randn_like(pred), mask).item() == pytest.approx(loss.item(), rel=1e-6)
    bumped = pred.clone()
    n, i = (mask == 1).nonzero()[0].tolist()
    bumped[n, i] += 1.0
    assert m.forward_loss(imgs, bumped, mask).item() != pytest.approx(loss.item(), rel=1e-6)


def test_norm_pixel_targets_have_zero_mean_and_unit_variance_per_patch():
    m = small(norm_pix_loss=True)
    assert m.target == "norm-pixel"
    imgs = torch.rand(4, 3, 16, 16) * 5 + 2
    t = m.patch_targets(imgs)
    assert torch.allclose(t.mean(-1), torch.zeros(4, 16), atol=1e-5)
    assert torch.allclose(t.var(-1), torch.ones(4, 16), atol=1e-3)
    assert torch.equal(small(target="pixel").patch_targets(imgs), m.patchify(imgs))


def test_forward_with_given_noise_is_deterministic_and_follows_the_noise():
    torch.manual_seed(0)
    m = small().eval()
    imgs = torch.randn(2, 3, 16, 16)
    noise = torch.rand(2, 16)
    a, b = m(imgs, 0.75, noise), m(imgs, 0.75, noise.clone())
    for x, y in zip(a, b):
        assert torch.equal(x, y)
    loss, pred, mask = a
    assert pred.shape == (2, 16, 48) and mask.shape == (2, 16)
    assert torch.equal(mask == 0, torch.zeros(2, 16, dtype=torch.bool).scatter_(1, noise.argsort(1)[:, :4], True))
    assert not torch.equal(m(imgs, 0.75, torch.rand(2, 16))[2], mask)


def test_tiny_model_overfits_one_batch():
    torch.manual_seed(0)
    m = small(embed_dim=32, num_heads=2, decoder_embed_dim=32, decoder_num_heads=2)
    imgs, noise = torch.randn(2, 3, 16, 16), torch.rand(2, 16)
    opt = torch.optim.AdamW(m.parameters(), lr=1e-2)
    first = None
    for _ in range(150):
        loss, _, _ = m(imgs, 0.75, noise)
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.05 * first


def test_mask_tokens_in_encoder_runs_the_encoder_on_every_patch():
    torch.manual_seed(0)
    plain, ablation = small(), small(mask_tokens_in_encoder=True)
    imgs, noise = torch.randn(2, 3, 16, 16), torch.rand(2, 16)
    assert plain.forward_encoder(imgs, 0.75, noise)[0].shape == (2, 1 + 4, 8)
    assert ablation.forward_encoder(imgs, 0.75, noise)[0].shape == (2, 1 + 16, 8)
    assert "encoder_mask_token" in ablation.state_dict() and "encoder_mask_token" not in plain.state_dict()
    # a removed patch's pixels cannot reach the ablation's encoder either: only the [M] token does
    other = imgs.clone()
    removed = ablation(imgs, 0.75, noise)[2][0].nonzero()[0].item()
    r, c = divmod(removed, 4)
    other[0, :, 4 * r:4 * r + 4, 4 * c:4 * c + 4] += 10
    assert torch.allclose(ablation.forward_encoder(imgs, 0.75, noise)[0], ablation.forward_encoder(other, 0.75, noise)[0])


def test_dvae_target_is_refused_without_a_tokenizer():
    with pytest.raises(UsageError, match="vocab_size"):
        small(target="dvae")
    m = small(target="dvae", vocab_size=32)
    assert m.decoder_pred.weight.shape == (32, 4)
    with pytest.raises(MaebenchError, match="tokenizer"):
        m(torch.randn(1, 3, 16, 16))
    with pytest.raises(UsageError, match="unknown target 'pixels'"):
        small(target="pixels")


def test_dvae_target_is_cross_entropy_on_the_frozen_tokenizer_indices():
    from maebench.backbones.dvae import DiscreteVAE
    torch.manual_seed(0)
    tok = DiscreteVAE(vocab_size=32, downsample=2, hidden=8, code_dim=8)
    m = small(target="dvae", vocab_size=32)
    m.attach_tokenizer(tok)
    imgs, noise = torch.randn(2, 3, 16, 16), torch.rand(2, 16)
    loss, pred, mask = m(imgs, 0.75, noise)
    ids = tok.tokenize(imgs, grid=(4, 4))                       # image resized 16 -> 8 px for f = 2
    assert ids.shape == (2, 16)
    ce = torch.nn.functional.cross_entropy(pred[mask == 1], ids[mask == 1])
    assert loss.item() == pytest.approx(ce.item(), rel=1e-5)
    assert not any(k.startswith("_tokenizer") or "encoder.0" in k for k in m.state_dict())
    assert all(not p.requires_grad for p in tok.parameters())
    loss.backward()
    assert m.decoder_pred.weight.grad is not None


def test_rebuilt_from_its_state_dict_gives_the_same_outputs():
    torch.manual_seed(0)
    m = create_mae("vit-micro", img_size=16, patch_size=4, decoder_embed_dim=64, decoder_depth=2,
                   decoder_num_heads=2).eval()
    copy = from_state_dict(m.state_dict(), num_heads=3, patch_size=4, decoder_num_heads=2).eval()
    imgs, noise = torch.randn(2, 3, 16, 16), torch.rand(2, 16)
    assert torch.equal(m(imgs, 0.75, noise)[1], copy(imgs, 0.75, noise)[1])
    enc_only = {k: v for k, v in m.state_dict().items() if not k.startswith("decoder") and k != "mask_token"}
    with pytest.raises(MaebenchError, match="no MAE decoder"):
        from_state_dict(enc_only, num_heads=3, patch_size=4)


def test_vit_huge_has_the_released_dec512d8b_architecture():
    with torch.device("meta"):
        m = create_mae("vit-huge")
    assert (len(m.blocks), m.cls_token.shape[-1], m.patch_size) == (32, 1280, 14)
    assert (len(m.decoder_blocks), m.mask_token.shape[-1], m.decoder_blocks[0].attn.num_heads) == (8, 512, 16)
    assert m.decoder_pred.out_features == 14 * 14 * 3
