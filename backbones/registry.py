"""Named backbones: the built-in catalogue plus the user's registrations, and the one loader.

    entry(name) -> BackboneEntry        what a backbone is (arch, family, weights, paper rows)
    names() -> list[str]                catalogue + registered names
    register(name, checkpoint) -> BackboneEntry   convert a checkpoint file and record it
    remove(name)                        forget a registration and delete its weights
    load(name, img_size=...) -> (model, entry)    the encoder, weights fitted to the task's grid
    load_mae_state(name) -> dict        official MAE full keys, for reconstruction figures
    load_meta(name) -> dict             the metadata stored with the weights (incl. a pretraining run's)

Weights live in $MAEBENCH_HOME/weights/NAME.pth (canonical layout: backbones/convert.py); the
registry is $MAEBENCH_HOME/registry.json (backbones/registry_file.py). Nothing here downloads (backbones/pull.py does):
a catalogued backbone without weights raises an error that says where to get the file and the
exact `maebench backbones register` command. Importing this module does not import torch.
"""
from __future__ import annotations

import os
import re
import shlex
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from maebench.backbones import registry_file
from maebench.backbones.catalogue import FAMILIES, catalogue, param_count
from maebench.errors import MaebenchError, UsageError, unknown
from maebench.home import weights_dir

NAME_RE = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
# family assumed for a registration that names none, by checkpoint format
# detected formats accepted for a catalogue entry of each format
CATALOGUE_COMPATIBLE = {"mae": {"mae", "mae-full"}, "deit": {"deit", "timm"}, "timm": {"deit", "timm"}}
FAMILY_BY_FORMAT = {"mae": "mae-norm-pixel", "mae-full": "mae-norm-pixel", "mocov3": "contrastive",
                    "beit": "mae-token", "deit": "supervised", "timm": "supervised"}


@dataclass(frozen=True)
class BackboneEntry:
    name: str
    arch: str                       # vit-tiny ... vit-huge
    patch_size: int
    img_size: int                   # the grid the stored position embeddings are for
    in_chans: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    family: str                     # one of catalogue.FAMILIES
    weights: Path | None            # canonical weights file once registered, else None
    url: str | None                 # public download address of the published file
    sha256: str | None              # of the checkpoint file that was registered
    source: str | None              # where the file / address comes from
    paper: list                     # paper-row keys, e.g. "mae/vit-b"
    has_decoder: bool
    user: bool                      # registered by the user (not in the catalogue)
    file: str | None = None         # published file name
    format: str | None = None       # checkpoint format it was (or is to be) read as
    model: str = "vit"              # "vit" (timm VisionTransformer) or "beit" (timm Beit)
    vit_kwargs: dict = field(default_factory=dict)  # extra model options the weights need
    notes: str = ""
    size: int | None = None         # bytes of the registered checkpoint file
    source_path: str | None = None  # the registered checkpoint file
    registered: float | None = None  # time.time() of registration
    weights_sha256: str | None = None
    conversion_notes: list = field(default_factory=list)  # what registration dropped and why
    timm: str | None = None         # model "timm": the timm model name (backbones/timm_family.py)
    timm_kwargs: dict = field(default_factory=dict)  # its create_model options (sizes, patch)
    model_family: str | None = None  # dinov2, clip, openclip, eva02, siglip, deit3, beit2
    probe: str | None = None        # the probe feature: cls+avg, token, avg, map
    conversion: str | None = None   # the timm filter that converted the release file
    reference: list = field(default_factory=list)  # numbers the release reports, each with its source
    stored_params: int | None = None
    stored_depth: int | None = None

    @property
    def expected_weights(self) -> Path:
        return weights_dir() / f"{self.name}.pth"

    @property
    def present(self) -> bool:
        """True when load() can build it: random init, or a weights file that exists."""
        return self.family == "scratch" or (self.weights is not None and self.weights.is_file())

    @property
    def depth(self) -> int:
        if self.stored_depth is not None:
            return self.stored_depth
        from maebench.backbones.catalogue import arch_dims
        return arch_dims(self.arch)[1]

    @property
    def any_size(self) -> bool:
        """Takes inputs of any multiple of the patch (no relative position tables fixed to a grid)."""
        return self.model == "vit" or (self.model == "timm" and self.model_family != "beit2"
                                       and not (self.timm or "").startswith(("beit", "beitv2")))

    @property
    def params(self) -> int:
        if self.stored_params is not None:
            return self.stored_params
        return param_count(self.arch, patch_size=self.patch_size, img_size=self.img_size,
                           in_chans=self.in_chans, model=self.model, vit_kwargs=self.vit_kwargs)

    def register_command(self, checkpoint: str | None = None) -> str:
        path = shlex.quote(str(checkpoint)) if checkpoint else "PATH/" + (self.file or "CHECKPOINT")
        timm = f" --timm {self.timm}" if self.timm and self.user else ""
        return f"maebench backbones register {self.name} --checkpoint {path}{timm}"


def _entry_from(name: str, cat: dict[str, Any] | None, rec: dict[str, Any] | None) -> BackboneEntry:
    d = {**(cat or {}), **(rec or {})}
    weights = None
    if rec is not None:
        weights = weights_dir() / Path(rec.get("weights", f"{name}.pth")).name
    return BackboneEntry(
        name=name, arch=d["arch"], patch_size=int(d["patch_size"]), img_size=int(d["img_size"]),
        in_chans=int(d.get("in_chans", 3)), mean=tuple(d.get("mean", IMAGENET_MEAN)),
        std=tuple(d.get("std", IMAGENET_STD)), family=d["family"], weights=weights, url=d.get("url"),
        sha256=d.get("sha256"), source=d.get("source"), paper=list(d.get("paper") or []),
        has_decoder=bool(d.get("has_decoder", False)), user=cat is None, file=d.get("file"),
        format=d.get("format"), model=d.get("model", "vit"), vit_kwargs=dict(d.get("vit_kwargs") or {}),
        notes=d.get("notes") or "", size=d.get("size"), source_path=d.get("source_path"),
        registered=d.get("registered"), weights_sha256=d.get("weights_sha256"),
        conversion_notes=list(d.get("conversion_notes") or []), timm=d.get("timm"),
        timm_kwargs=dict(d.get("timm_kwargs") or {}), model_family=d.get("model_family"), probe=d.get("probe"),
        conversion=d.get("conversion"), reference=list(d.get("reference") or []), stored_params=d.get("params"), stored_depth=d.get("depth"))


def names() -> list[str]:
    return sorted(set(catalogue()) | set(registry_file.read()["backbones"]))


def entry(name: str) -> BackboneEntry:
    cat = catalogue().get(name)
    rec = registry_file.read()["backbones"].get(name)
    if cat is None and rec is None:
        raise unknown("backbone", name, names())
    return _entry_from(name, cat, rec)


def entries() -> list[BackboneEntry]:
    """Every backbone, catalogue first, reading the registry once."""
    cat, reg = catalogue(), registry_file.read()["backbones"]
    order = list(cat) + sorted(n for n in reg if n not in cat)
    return [_entry_from(n, cat.get(n), reg.get(n)) for n in order]


def missing_weights_error(e: BackboneEntry) -> MaebenchError:
    """Which file is expected, where to download it, and the exact command that installs it."""
    parts = [f"backbone '{e.name}' has no weights: expected {e.expected_weights}"]
    if e.user or e.weights is not None:
        parts.append(f"its registered file is gone; register it again: "
                     f"{e.register_command(e.source_path)} --force")
        return MaebenchError("; ".join(parts))
    if e.url:
        parts.append(f"run: maebench backbones pull {e.name} (or download {e.file} from {e.url})")
    else:
        parts.append(f"no public download ({e.source})")
    found = weights_dir() / e.file if e.file else None
    if found is not None and found.is_file():
        parts.append(f"found {found}, so run: {e.register_command(str(found))}")
    else:
        parts.append(f"then run: {e.register_command()}")
    return MaebenchError("; ".join(parts))


def register(name: str, checkpoint_path: str | os.PathLike, *, arch: str | None = None, fmt: str = "auto",
             force: bool = False, trust: bool = False, family: str | None = None, source: str | None = None,
             patch_size: int | None = None, img_size: int | None = None, mean=None, std=None,
             timm_model: str | None = None, timm_kwargs: dict | None = None) -> BackboneEntry:
    """Convert `checkpoint_path` to canonical weights and record it as backbone `name`.

    Every check (name, file, format, shapes) runs before anything is written; then the weights
    and the registry are each replaced atomically, under the registry lock. `timm_model` (or a
    file recognised as DINOv2 / CLIP / OpenCLIP / EVA-02 / SigLIP) goes through
    backbones/timm_register.py: timm builds the model and its own filter converts the file."""
    from maebench.backbones import convert

    cat = catalogue().get(name)
    _check_request(name, cat, force=force, arch=arch, patch_size=patch_size, family=family)
    path = Path(checkpoint_path).expanduser().resolve()
    top = convert.read_checkpoint(path, trust=trust)
    from maebench.backbones import timm_register
    if cat is not None and timm_model and (cat.get("timm") or "").split(".")[0] != timm_model.split(".")[0]:  # tags aside
        raise UsageError(f"'{name}' is catalogued as {cat.get('timm') or cat.get('format')}, not timm {timm_model}; "
                         "register the checkpoint under another name")
    found = timm_register.recognised_model(top, path) if fmt == "auto" and not (timm_model or timm_kwargs) else None
    timm_model = timm_model or (cat or {}).get("timm") or (found[0] if found else None)
    if timm_model:
        kwargs = {**((cat or {}).get("timm_kwargs") or {}), **(found[1] if found else {}), **(timm_kwargs or {})}
        record, payload = timm_register.prepare(
            name, path, top, timm_model, kwargs,
            cat=cat, family=family, source=source, patch_size=patch_size, img_size=img_size, mean=mean, std=std)
        _install(name, payload, record, force=force)
        return entry(name)
    from maebench.backbones.formats import evidence
    if fmt != "auto":                # a --format the keys contradict is refused, naming both
        evidence.check_format(top, fmt, path)
    if cat is not None and fmt == "auto":
        fmt = _catalogue_format(name, cat, convert.detect(top, path), path)
    conv = convert.convert(top, fmt, path)
    if fmt == "auto":
        conv.notes.extend(timm_register.suggestion(top, path))
    defaults = {k: cat[k] for k in ("arch", "patch_size", "img_size")} if cat else {}
    spec = convert.resolve_spec(conv, explicit={"arch": arch, "patch_size": patch_size, "img_size": img_size},
                                defaults=defaults, path=path)
    conv = convert.check_and_fit(conv, spec, path)
    said = evidence.family(top, path, conv.fmt)          # the file's own word wins; a contradiction is refused
    claims = [(family, "--family"), (conv.meta.get("family"), "its maebench metadata"),
              ((cat or {}).get("family"), f"the catalogue entry '{name}'")]
    fam = evidence.resolve_family(said, claims, FAMILY_BY_FORMAT.get(conv.fmt), path)
    if said.family is None and not any(c for c, _ in claims) and fam == "mae-norm-pixel":
        conv.notes.append("family mae-norm-pixel assumed (the released default): the file does not say whether its "
                          "loss normalised pixels; pass --family mae-pixel if it did not")
    if fam is None:
        raise UsageError(f"{path}: the checkpoint does not say how it was pretrained; pass --family "
                         f"({', '.join(FAMILIES)})")
    if fam not in FAMILIES:
        raise unknown("family", fam, FAMILIES)
    default_norm = (0.5,) * 3 if conv.fmt == "beit" else None
    mean = tuple(mean or conv.meta.get("mean") or (cat or {}).get("mean") or default_norm or IMAGENET_MEAN)
    std = tuple(std or conv.meta.get("std") or (cat or {}).get("std") or default_norm or IMAGENET_STD)
    sha, size = convert.file_digest(path)
    record = {"arch": spec.arch, "patch_size": spec.patch_size, "img_size": spec.img_size,
              "in_chans": spec.in_chans, "mean": list(mean), "std": list(std), "family": fam,
              "model": conv.model, "vit_kwargs": conv.vit_kwargs, "format": conv.fmt,
              "has_decoder": bool(conv.decoder), "sha256": sha, "size": size, "source_path": str(path),
              "source": source or (cat or {}).get("source") or str(path), "registered": time.time(),
              "weights": f"weights/{name}.pth", "conversion_notes": conv.notes}
    if cat is None:
        record["paper"] = list(conv.meta.get("paper") or [])
        record["notes"] = str(conv.meta.get("notes") or "")
    payload = convert.canonical_payload(conv, spec, {"family": fam, "mean": list(mean), "std": list(std),
                                                     "source_format": conv.fmt, "source_sha256": sha})
    _install(name, payload, record, force=force)
    return entry(name)


def _catalogue_format(name: str, cat: dict[str, Any], found: str, path) -> str:
    """The catalogued format, when the file's detected one agrees with it (a maebench file, e.g.
    weights copied from another MAEBENCH_HOME, always does): a wrong download is caught here
    instead of being registered under the catalogue's family."""
    expected = cat.get("format")
    if expected is None or found == "maebench":
        return found
    if found not in CATALOGUE_COMPATIBLE.get(expected, {expected}):
        raise MaebenchError(f"{path}: reads as a {found} checkpoint, but '{name}' is catalogued as {expected} "
                            f"({cat.get('file') or 'no public file'}); pass --format {expected} to insist, "
                            "or register it under another name")
    return expected


def check_name(name: str, *, arch: str | None = None, patch_size: int | None = None,
               family: str | None = None) -> str:
    """The name rule and the catalogue's claim on a name, in one place: `register` checks them,
    and every pretraining program checks them before training, so a refused name costs no run."""
    if not NAME_RE.fullmatch(name):
        raise UsageError(f"invalid backbone name '{name}': use lower-case letters, digits, '.', '_' and '-' "
                         "(pass another --name)")
    cat = catalogue().get(name)
    if cat is not None and cat["family"] == "scratch":
        raise UsageError(f"'{name}' is a random initialisation: it has no weights to register")
    if cat is not None:
        for key, val in (("arch", arch), ("patch_size", patch_size), ("family", family)):
            if val is not None and val != cat[key]:
                raise UsageError(f"'{name}' is catalogued with {key} {cat[key]}, not {val}; "
                                 "register it under another --name")
    return name


def _check_request(name, cat, *, force, arch, patch_size, family) -> None:
    check_name(name, arch=arch, patch_size=patch_size, family=family)
    existing = registry_file.read()["backbones"].get(name)
    if existing is not None and not force:
        raise MaebenchError(f"backbone '{name}' is already registered (from {existing.get('source_path')}); "
                            "pass --force to replace it")


def _install(name: str, payload: dict, record: dict, *, force: bool) -> None:
    import torch

    from maebench.backbones.convert import file_digest
    wdir = weights_dir()
    wdir.mkdir(parents=True, exist_ok=True)
    with registry_file.locked():
        reg = registry_file.read()
        if name in reg["backbones"] and not force:  # registered meanwhile by another process
            raise MaebenchError(f"backbone '{name}' was registered meanwhile; pass --force to replace it")
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".pth.tmp", dir=wdir)
        try:
            with os.fdopen(fd, "wb") as f:
                torch.save(payload, f)
                f.flush()
                os.fsync(f.fileno())
            record["weights_sha256"] = file_digest(tmp)[0]
            os.replace(tmp, wdir / f"{name}.pth")
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        reg["backbones"][name] = record
        registry_file.write(reg)


def remove(name: str) -> Path | None:
    """Forget a registration and delete its weights file; returns the deleted file, if any.
    Catalogue entries stay listed (only what the user registered for them goes)."""
    with registry_file.locked():
        reg = registry_file.read()
        rec = reg["backbones"].get(name)
        if rec is None:
            if name in catalogue():
                raise UsageError(f"'{name}' is a catalogue entry with nothing registered: nothing to remove")
            raise unknown("backbone", name, names())
        del reg["backbones"][name]
        registry_file.write(reg)
    weights = weights_dir() / Path(rec.get("weights", f"{name}.pth")).name
    if weights.is_file():
        weights.unlink()
        return weights
    return None


def _read_weights(e: BackboneEntry, *, mmap: bool = False) -> dict[str, Any]:
    if not e.present or e.weights is None:
        raise missing_weights_error(e)
    from maebench.backbones.build import read_weights
    return read_weights(e.weights, name=e.name, mmap=mmap)


def load(name: str, *, img_size: int | None = None, num_classes: int = 0, global_pool: str = "token",
         drop_path_rate: float = 0.0, in_chans: int | None = None, patch_size: int | None = None,
         resample_patch: int | None = None, **vit_kwargs):
    """(model, entry): the backbone built for the task's image size, with its weights.

    resample_patch: run the model with this patch instead of its own (the dense tasks' patch 14
    -> 16, tasks/pyramid.py `pyramid_patch`): built for the grid img_size / resample_patch, then
    its patch kernel resampled (build.resample_patch_embed); the entry keeps its own patch.

    Encoder keys load strictly; the head and fc_norm start fresh when the weights lack them (or
    have another class count); global_pool="avg" drops the release's `norm` and starts `fc_norm`,
    as MAE fine-tuning does; "probe" builds the pool of the backbone's documented probe feature
    (timm families: backbones/timm_family.py). Position embeddings are resized to the task's grid. `scratch-*`
    entries are randomly initialised (any patch size)."""
    from maebench.backbones.build import build_entry_model
    from maebench.backbones.timm_family import build as build_timm

    e = entry(name)
    if resample_patch is not None and resample_patch != e.patch_size:
        side = img_size or e.img_size
        if side % resample_patch:
            raise MaebenchError(f"image size {side} is not a multiple of the resampled patch {resample_patch}")
        from maebench.backbones.build import resample_patch_embed
        model, e = load(name, img_size=side // resample_patch * e.patch_size, num_classes=num_classes,
                        global_pool=global_pool, drop_path_rate=drop_path_rate, in_chans=in_chans,
                        patch_size=patch_size, **vit_kwargs)
        resample_patch_embed(model, resample_patch)
        return model, e
    if patch_size is not None and patch_size != e.patch_size and e.family != "scratch":
        raise UsageError(f"backbone '{name}' was pretrained with patch size {e.patch_size}, not {patch_size}")
    if global_pool == "probe" and e.model != "timm":
        global_pool = "token"       # the [cls] output after the final norm (paper's linear probe, k-NN)
    state = None if e.family == "scratch" else _read_weights(e)["model"]
    kw = dict(img_size=img_size or e.img_size, in_chans=in_chans or e.in_chans, num_classes=num_classes,
              global_pool=global_pool, drop_path_rate=drop_path_rate)
    if e.model == "timm":           # DINOv2, CLIP, EVA-02, ...: timm builds them
        return build_timm(e, state, **kw, extra=vit_kwargs), e
    return build_entry_model(e, state, **kw, patch_size=patch_size or e.patch_size, vit_kwargs=vit_kwargs), e


def load_mae_state(name: str) -> dict:
    """Encoder + decoder state dict with the official MAE keys (patch_embed..., decoder_embed...,
    mask_token), at the registered grid; for reconstruction figures."""
    e = entry(name)
    if not e.has_decoder:
        raise MaebenchError(f"backbone '{name}' has no MAE decoder (only full MAE checkpoints do, e.g. "
                            "mae-vit-l-full or a `maebench pretrain --method mae` result)")
    payload = _read_weights(e)
    enc = {k: v for k, v in payload["model"].items() if not k.startswith(("head.", "fc_norm."))}
    return {**enc, **payload.get("decoder", {})}


def rel_pos_tables(name: str) -> dict:
    """The decomposed relative position tables a ViTDet / SAM-style checkpoint brought
    (blocks.N.attn.rel_pos_h / _w), kept apart at registration; {} for every other backbone."""
    e = entry(name)
    if e.family == "scratch":
        return {}
    tables = _read_weights(e).get("rel_pos")
    return dict(tables) if isinstance(tables, dict) else {}


def load_meta(name: str) -> dict:
    """The "maebench" metadata stored with the registered weights: arch, family, model options,
    and, for `maebench pretrain` outputs, everything the run recorded (target, mask ratio,
    decoder heads...). Memory-maps the file, so tensors are not read."""
    meta = _read_weights(entry(name), mmap=True).get("maebench")
    return dict(meta) if isinstance(meta, dict) else {}
