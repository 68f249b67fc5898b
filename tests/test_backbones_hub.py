"""`maebench backbones register NAME --timm MODEL` without --checkpoint: timm's published weights
through huggingface_hub's cache. The cache is built here in the documented layout
(models--ORG--NAME/refs/main + snapshots/REV/FILE) and read offline, with the hub endpoint
pointing nowhere, in a fresh process (huggingface_hub reads its variables at import)."""
from __future__ import annotations

import json
import os
import subprocess
import sys


MODEL = "vit_small_patch14_dinov2.lvd142m"          # its pretrained config: hf_hub_id timm/<MODEL>
TINY = ["--timm-arg", "embed_dim=48", "--timm-arg", "depth=2", "--timm-arg", "num_heads=3", "--img-size", "56"]
SCRIPT = """
import json, sys
import torch
from safetensors.torch import load_file
from maebench.cli import main
rc = main(sys.argv[2:])
out = {"rc": rc}
if rc == 0:
    from maebench.backbones.registry import load
    model, e = load("tinydino", img_size=56)
    cached = load_file(sys.argv[1])
    own = model.state_dict()
    out["same"] = all(torch.equal(own[k], v) for k, v in cached.items() if k in own)
    out["keys"] = len(set(cached) & set(own))
    out["source"] = e.source
print("RESULT " + json.dumps(out))
"""


def _fill_cache(cache, seed: int = 0):
    import timm
    import torch
    from safetensors.torch import save_file
    torch.manual_seed(seed)
    model = timm.create_model(MODEL.split(".")[0], pretrained=False, embed_dim=48, depth=2, num_heads=3, img_size=56)
    repo = cache / f"models--timm--{MODEL}"
    rev = "0123456789abcdef0123456789abcdef01234567"
    (repo / "snapshots" / rev).mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(rev)
    path = repo / "snapshots" / rev / "model.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path


def _register(tmp_path, cache, cached):
    env = {**os.environ, "MAEBENCH_HOME": str(tmp_path / "home"), "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1",
           "HF_ENDPOINT": "http://127.0.0.1:9"}              # were anything to go online, it would fail
    env.pop("MAEBENCH_RESULTS", None)
    env.pop("HF_HOME", None)
    r = subprocess.run([sys.executable, "-c", SCRIPT, str(cached), "backbones", "register", "tinydino",
                        "--timm", MODEL, *TINY], capture_output=True, text=True, env=env, timeout=300)
    return r, json.loads(r.stdout.split("RESULT ", 1)[1])


def test_register_timm_model_loads_its_weights_from_the_hugging_face_cache_offline(tmp_path):
    cache = tmp_path / "hf-cache"
    cached = _fill_cache(cache)
    r, result = _register(tmp_path, cache, cached)
    assert result["rc"] == 0, r.stderr
    assert f"from: {cached}" in r.stdout and "registered tinydino: vit-d48x2, patch 14, 56 px" in r.stdout
    assert result["source"] == f"hf-hub:timm/{MODEL}/model.safetensors"
    assert result["same"] and result["keys"] > 20              # the model carries the cached weights


def test_register_timm_model_offline_without_the_cache_is_one_line(tmp_path):
    cache = tmp_path / "hf-cache"
    cache.mkdir()
    r, result = _register(tmp_path, cache, cache / "none")
    assert result == {"rc": 1}
    assert r.stderr.strip() == (f"maebench: error: offline (HF_HUB_OFFLINE=1): timm model {MODEL}'s weights "
                                f"(timm/{MODEL}: model.safetensors or pytorch_model.bin) are not in the "
                                f"Hugging Face cache {cache}")
    assert not (tmp_path / "home" / "registry.json").exists()


def test_a_catalogue_entry_takes_its_timm_model_with_a_pretrained_tag_from_the_cache(tmp_path):
    """`register dinov2-vit-s14 --timm vit_small_patch14_dinov2.lvd142m`: the catalogue names the
    untagged model; the tag only picks the published weights, so the two agree."""
    import timm
    import torch
    from safetensors.torch import save_file
    cache = tmp_path / "hf-cache"
    repo, rev = cache / f"models--timm--{MODEL}", "0123456789abcdef0123456789abcdef01234567"
    (repo / "snapshots" / rev).mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(rev)
    torch.manual_seed(0)
    model = timm.create_model(MODEL.split(".")[0], pretrained=False, img_size=518)
    cached = repo / "snapshots" / rev / "model.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(cached))
    env = {**os.environ, "MAEBENCH_HOME": str(tmp_path / "home"), "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1",
           "HF_ENDPOINT": "http://127.0.0.1:9"}
    env.pop("MAEBENCH_RESULTS", None)
    env.pop("HF_HOME", None)
    r = subprocess.run([sys.executable, "-m", "maebench", "backbones", "register", "dinov2-vit-s14", "--timm", MODEL],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "registered dinov2-vit-s14" in r.stdout
