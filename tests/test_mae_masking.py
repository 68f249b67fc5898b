"""Mask sampling (backbones/masking.py): counts, the restore permutation, grid and block shapes."""
import pytest
import torch

from maebench.backbones.masking import num_keep, sample
from maebench.errors import UsageError


@pytest.mark.parametrize("side, ratio", [(4, 0.75), (7, 0.75), (14, 0.75), (14, 0.5), (7, 0.9), (8, 0.6)])
@pytest.mark.parametrize("strategy", ["random", "block"])
def test_keeps_exactly_round_l_times_one_minus_ratio(side, ratio, strategy):
    L, n = side * side, 6
    keep = round(L * (1 - ratio))
    ids_keep, ids_restore, mask = sample(strategy, n, (side, side), ratio,
                                         generator=torch.Generator().manual_seed(1))
    assert ids_keep.shape == (n, keep)
    assert mask.shape == (n, L)
    assert (mask.sum(1) == L - keep).all()
    # the mask is 0 exactly at the kept indices
    rebuilt = torch.ones(n, L).scatter_(1, ids_keep, 0.0)
    assert torch.equal(rebuilt, mask)
    assert all(len(set(row.tolist())) == keep for row in ids_keep)


def test_ids_restore_undoes_the_shuffle_as_the_decoder_uses_it():
    n, side = 5, 7
    L = side * side
    ids_keep, ids_restore, mask = sample("random", n, (side, side), 0.75)
    x = torch.arange(L).float().repeat(n, 1) + 100                    # token i carries value 100 + i
    visible = torch.gather(x, 1, ids_keep)                            # what the encoder sees
    filler = torch.full((n, L - ids_keep.shape[1]), -1.0)             # the decoder's mask tokens
    unshuffled = torch.gather(torch.cat([visible, filler], 1), 1, ids_restore)
    assert torch.equal(unshuffled[mask == 0], x[mask == 0])           # visible tokens back in place
    assert (unshuffled[mask == 1] == -1).all()                        # mask tokens exactly where removed
    assert torch.equal(torch.sort(ids_restore, 1).values, torch.arange(L).repeat(n, 1))


def test_random_masking_with_noise_is_the_official_argsort():
    noise = torch.rand(3, 16)
    ids_keep, _, mask = sample("random", 3, (4, 4), 0.75, noise=noise)
    assert torch.equal(ids_keep, torch.argsort(noise, dim=1)[:, :4])
    again = sample("random", 3, (4, 4), 0.75, noise=noise.clone())
    assert torch.equal(again[2], mask)


def test_grid_keeps_one_in_four():
    _, _, mask = sample("grid", 4, (8, 8), 0.75)
    expected = torch.ones(8, 8)
    for r in range(0, 8, 2):
        for c in range(0, 8, 2):
            expected[r, c] = 0                                        # top-left of each 2x2 cell
    for m in mask:
        assert torch.equal(m.view(8, 8), expected)
    assert (mask == 0).sum().item() == 4 * 64 // 4


def test_grid_on_an_odd_grid_keeps_a_quarter_inside_the_grid_pattern():
    _, _, mask = sample("grid", 8, (7, 7), 0.75)
    on_grid = torch.tensor([[r % 2 == 0 and c % 2 == 0 for c in range(7)] for r in range(7)]).flatten()
    assert ((mask == 0).sum(1) == round(49 * 0.25)).all()
    assert not ((mask == 0) & ~on_grid).any()


def _boundary_edges(mask, side):
    m = mask.view(-1, side, side)
    return ((m[:, 1:] != m[:, :-1]).sum() + (m[:, :, 1:] != m[:, :, :-1]).sum()).item()


@pytest.mark.parametrize("ratio", [0.5, 0.75])
def test_block_masking_hits_the_ratio_and_removes_contiguous_regions(ratio):
    g = torch.Generator().manual_seed(0)
    _, _, block = sample("block", 16, (14, 14), ratio, generator=g)
    _, _, rand = sample("random", 16, (14, 14), ratio, generator=g)
    assert ((block.sum(1)) == 196 - round(196 * (1 - ratio))).all()
    # blocks: far fewer masked/visible borders than scattered random patches
    assert _boundary_edges(block, 14) < 0.6 * _boundary_edges(rand, 14)


def test_block_masking_is_reproducible_from_the_noise():
    noise = torch.rand(2, 49)
    a = sample("block", 2, (7, 7), 0.75, noise=noise)[2]
    b = sample("block", 2, (7, 7), 0.75, noise=noise.clone())[2]
    assert torch.equal(a, b)


def test_bad_strategy_and_ratio_are_usage_errors():
    with pytest.raises(UsageError, match="unknown masking 'grd'.*grid"):
        sample("grd", 1, (4, 4), 0.75)
    with pytest.raises(UsageError, match="grid masking .* 0.75"):
        sample("grid", 1, (4, 4), 0.5)
    with pytest.raises(UsageError, match="mask_ratio"):
        num_keep(16, 1.0)
