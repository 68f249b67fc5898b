"""Which patches the MAE encoder sees: random (the paper's default), block-wise (BEiT style) and
grid masking (paper Table 1f / Fig. 6).

Every strategy is written as a *score* per patch, [N, L]; a sample keeps the `len_keep` patches
with the lowest scores. Random masking's score is the uniform noise itself, exactly as in the
official release, so that a run given the same `noise` masks the same patches as the official
code. Block and grid masking add to the scores of the patches their pattern removes (block
masking: 2, and 1 to the patches bordering its blocks, which fill a short pattern), so the noise
only breaks ties inside the pattern; the shared argsort / gather machinery then works unchanged, and
every sample keeps the same number of patches, so the visible tokens batch as one dense tensor.

    scores [N, L] -> ids_shuffle = argsort(scores)   order of patches: kept ones first
                     ids_restore = argsort(ids_shuffle)   undoes the shuffle (gather again)
                     mask [N, L]: 0 = kept, 1 = removed, in image order
"""
from __future__ import annotations

import hashlib
import math

import torch

from maebench.backbones.mae_names import check_masking as check
from maebench.errors import UsageError


def num_keep(num_patches: int, mask_ratio: float) -> int:
    """Patches kept per sample: round(L * (1 - ratio)).

    The release truncates with int(); rounding gives the same count for the usual grids
    (196 -> 49, 49 -> 12 at 0.75) and avoids losing a patch to float error (49 * 0.1 = 4.8999).
    """
    if not 0.0 <= mask_ratio < 1.0:
        raise UsageError(f"mask_ratio must lie in [0, 1), got {mask_ratio}")
    return max(1, int(round(num_patches * (1.0 - mask_ratio))))


# --------------------------------------------------------------------------------------------
# pattern of each strategy: [N, L] with 1 where the pattern removes a patch
# --------------------------------------------------------------------------------------------
def grid_pattern(n: int, grid: tuple[int, int], device=None) -> torch.Tensor:
    """Keep the top-left patch of every 2x2 cell, remove the other three (same for every sample).

    On an odd grid (7 x 7) the pattern keeps 16 of 49 patches, more than round(49 / 4) = 12;
    the noise then decides which 4 of the 16 are removed as well, so the count stays exact.
    """
    gh, gw = grid
    rows = torch.arange(gh, device=device).view(gh, 1)
    cols = torch.arange(gw, device=device).view(1, gw)
    removed = ((rows % 2 != 0) | (cols % 2 != 0)).float().reshape(1, gh * gw)
    return removed.expand(n, -1)


def block_pattern(n: int, grid: tuple[int, int], num_mask: int, *, min_block: int | None = None,
                  min_aspect: float = 0.3, generator: torch.Generator | None = None,
                  device=None) -> torch.Tensor:
    """BEiT's block-wise masking (Bao et al. 2021, Algorithm 1, as its release's MaskingGenerator
    runs it): rectangles are added until `num_mask` patches are covered. Each try draws an area
    uniformly between `min_block` and the patches still to mask (also when fewer remain than
    min_block: the draw then lies between the two, so late rectangles are big and mostly overlap
    what is masked, which is what keeps the blocks few), and a log-uniform aspect ratio in
    [min_aspect, 1/min_aspect]; h, w = round(sqrt(area * ratio)), round(sqrt(area / ratio)) must
    be strictly smaller than the grid. A rectangle counts only when it adds between 1 and the
    remaining number of patches; ten failed tries in a row end the sample, which may then cover
    fewer than num_mask patches (`sample` leaves the remainder to the noise, so the count stays
    exact). min_block defaults to BEiT's 16 patches of a 14 x 14 grid, scaled to this grid's size.
    """
    gh, gw = grid
    if min_block is None:
        min_block = max(1, round(16 * gh * gw / 196))
    log_aspect = (math.log(min_aspect), math.log(1.0 / min_aspect))
    out = torch.zeros(n, gh, gw)

    def uniform(lo: float, hi: float) -> float:     # as random.uniform: also for lo > hi
        return lo + (hi - lo) * float(torch.rand((), generator=generator))

    def randint(lo: int, hi: int) -> int:   # inclusive bounds
        return int(torch.randint(lo, hi + 1, (), generator=generator))

    for i in range(n):
        mask, count = out[i], 0
        while count < num_mask:
            budget = num_mask - count
            added = 0
            for _ in range(10):
                area = uniform(min_block, budget)
                aspect = math.exp(uniform(*log_aspect))
                h = int(round(math.sqrt(area * aspect)))
                w = int(round(math.sqrt(area / aspect)))
                if not (h < gh and w < gw):
                    continue
                top, left = randint(0, gh - h), randint(0, gw - w)
                new = h * w - int(mask[top:top + h, left:left + w].sum())
                if 0 < new <= budget:
                    mask[top:top + h, left:left + w] = 1
                    added = new
                    break
            if added == 0:
                break
            count += added
    return out.reshape(n, gh * gw).to(device)


def _border(pattern: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """[N, L] 0/1 -> 1 on the unmasked patches 4-adjacent to a masked one."""
    m = pattern.view(-1, *grid)
    grown = m.clone()
    grown[:, 1:] += m[:, :-1]
    grown[:, :-1] += m[:, 1:]
    grown[:, :, 1:] += m[:, :, :-1]
    grown[:, :, :-1] += m[:, :, 1:]
    return ((grown > 0) & (m == 0)).float().view_as(pattern)


# --------------------------------------------------------------------------------------------
# the one entry point the model calls
# --------------------------------------------------------------------------------------------
def sample(strategy: str, n: int, grid: tuple[int, int], mask_ratio: float, *,
           noise: torch.Tensor | None = None, device=None,
           generator: torch.Generator | None = None):
    """-> ids_keep [N, K], ids_restore [N, L], mask [N, L] (0 keep, 1 remove).

    `noise` [N, L] in [0, 1) fixes the random choice (the official argument). Block masking
    draws its rectangles from `generator`; when only `noise` is given, from a generator seeded
    by the noise's bytes, so the same noise always gives the same mask.
    """
    check(strategy, mask_ratio)
    L = grid[0] * grid[1]
    keep = num_keep(L, mask_ratio)
    given_noise = noise is not None
    if noise is None:
        noise = torch.rand(n, L, device=device, generator=generator)
    elif noise.shape != (n, L):
        raise ValueError(f"noise must have shape [N, L] = [{n}, {L}], got {list(noise.shape)}")
    device = noise.device
    if strategy == "random":
        scores = noise
    elif strategy == "grid":
        scores = noise + grid_pattern(n, grid, device)
    else:
        if generator is None and given_noise:
            digest = hashlib.sha256(noise.detach().cpu().numpy().tobytes()).digest()
            generator = torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") >> 1)
        pattern = block_pattern(n, grid, L - keep, generator=generator, device=device)
        # BEiT's generator may stop a few patches short; take those from the patches bordering
        # the blocks (noise decides among them), so that they grow a block instead of scattering
        scores = noise + 2 * pattern + _border(pattern, grid)

    ids_shuffle = torch.argsort(scores, dim=1)          # ascending: kept patches first
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    ids_keep = ids_shuffle[:, :keep]
    # mask in shuffled order is [0]*keep + [1]*(L-keep); unshuffle it to image order
    mask = torch.ones(n, L, device=device)
    mask[:, :keep] = 0
    mask = torch.gather(mask, 1, ids_restore)
    return ids_keep, ids_restore, mask
