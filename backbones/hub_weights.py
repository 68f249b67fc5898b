"""A timm model's published weights through huggingface_hub and its cache, for
`maebench backbones register NAME --timm MODEL` without --checkpoint.

The file is the one timm's own `pretrained=True` would load: the model's pretrained config names
the hub repository (`hf_hub_id`, e.g. timm/vit_small_patch14_dinov2.lvd142m) and the file
(`hf_hub_filename`, else model.safetensors, then pytorch_model.bin). In offline mode
(MAEBENCH_OFFLINE=1 or HF_HUB_OFFLINE=1) only the local cache is read (HF_HUB_CACHE / HF_HOME).
"""
from __future__ import annotations

from pathlib import Path

from maebench.download import offline
from maebench.errors import MaebenchError, UsageError, first_line

FILES = ("model.safetensors", "pytorch_model.bin")


def hub_checkpoint(model: str) -> tuple[Path, str]:
    """(the local file in the Hugging Face cache, 'hf-hub:REPO/FILE') for timm model `model`."""
    from huggingface_hub import constants, hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, LocalEntryNotFoundError
    repo, revision, files = _source(model)
    switch = offline()
    for filename in files:
        try:
            path = hf_hub_download(repo, filename, revision=revision, local_files_only=switch is not None,
                                   library_name="maebench")
            return Path(path), f"hf-hub:{repo}/{filename}"
        except EntryNotFoundError:
            continue
        except LocalEntryNotFoundError:
            if switch is not None:
                continue
            raise MaebenchError(f"cannot reach the Hugging Face hub for {repo}/{filename} and it is not in the "
                                f"cache {constants.HF_HUB_CACHE}") from None
        except HfHubHTTPError as e:
            raise MaebenchError(f"Hugging Face hub, {repo}/{filename}: {first_line(e, 200)}") from None
    if switch is not None:
        raise MaebenchError(f"offline ({switch}): timm model {model}'s weights ({repo}: {' or '.join(files)}) are not "
                            f"in the Hugging Face cache {constants.HF_HUB_CACHE}")
    raise MaebenchError(f"the Hugging Face repository {repo} has none of {', '.join(files)}")


def _source(model: str) -> tuple[str, str | None, tuple[str, ...]]:
    import timm
    from timm.models import get_pretrained_cfg
    base = model.partition(".")[0]
    if not timm.models.is_model(base):
        from maebench.errors import unknown
        raise unknown("timm model", base, timm.list_models(f"{base.split('_')[0]}*"))
    cfg = get_pretrained_cfg(model)
    if cfg is None:
        tags = sorted(timm.list_pretrained(f"{base}.*"))
        raise UsageError(f"timm model '{model}' has no published weights" +
                         (f" (tags: {', '.join(tags)})" if tags else "; pass --checkpoint FILE"))
    if not cfg.hf_hub_id:
        where = cfg.url or cfg.file
        raise UsageError(f"timm model '{model}' publishes its weights outside the Hugging Face hub"
                         + (f": pass --checkpoint {where}" if where else "; pass --checkpoint FILE"))
    repo, _, revision = cfg.hf_hub_id.partition("@")
    return repo, revision or None, (cfg.hf_hub_filename,) if cfg.hf_hub_filename else FILES
