"""The PCA target (Table 1d): the basis is the patches' principal directions, as numpy's SVD finds
them, and the target is each patch's coefficients on them; a PCA-target MAE trains on them."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from maebench.backbones.mae import create_mae, pca_basis
from maebench.errors import MaebenchError, UsageError


def images(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(n, 1, 16, 16, generator=g)
    return torch.cat([base, 0.5 * base + 0.1 * torch.rand(n, 1, 16, 16, generator=g), 1 - base], 1)   # correlated channels


def test_the_basis_spans_numpys_leading_principal_directions():
    model = create_mae("vit-micro", img_size=16, patch_size=4, decoder_embed_dim=32, decoder_depth=1,
                       decoder_num_heads=1, target="pca", pca_components=5)
    x = images()
    mean, basis = pca_basis(model, x)
    patches = model.patchify(x).flatten(0, 1).numpy().astype(np.float64)
    _, _, vt = np.linalg.svd(patches - patches.mean(0), full_matrices=False)
    assert np.allclose(mean.numpy(), patches.mean(0), atol=1e-5)
    # the same directions up to sign: |cos| = 1 for each of the 5
    assert np.allclose(np.abs(np.sum(basis.numpy().T * vt[:5], axis=1)), 1.0, atol=1e-4)


def test_all_components_give_back_the_patch_and_fewer_give_its_coefficients():
    full = create_mae("vit-micro", img_size=16, patch_size=4, decoder_embed_dim=32, decoder_depth=1,
                      decoder_num_heads=1, target="pca", pca_components=48)
    x = images()
    mean, basis = pca_basis(full, x)
    full.attach_pca(mean, basis)
    coeffs = full.patch_targets(x)
    assert torch.allclose(coeffs @ basis.T + mean, full.patchify(x), atol=1e-4)


def test_a_pca_target_mae_predicts_k_coefficients_and_needs_its_basis():
    model = create_mae("vit-micro", img_size=16, patch_size=4, decoder_embed_dim=32, decoder_depth=1,
                       decoder_num_heads=1, target="pca", pca_components=6)
    assert model.decoder_pred.out_features == 6
    with pytest.raises(MaebenchError, match="needs its basis"):
        model(images(4))
    model.attach_pca(*pca_basis(model, images()))
    loss, pred, mask = model(images(4))
    assert pred.shape == (4, 16, 6) and torch.isfinite(loss)
    assert not any("pca" in k for k in model.state_dict())          # the basis is not part of the checkpoint
    with pytest.raises(UsageError, match="pca_components between 1 and the patch's 48"):
        create_mae("vit-micro", img_size=16, patch_size=4, target="pca", pca_components=49)
