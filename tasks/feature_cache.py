"""One on-disk cache of frozen-encoder features, shared by the linear probe (single-lr and
sweep), logistic regression and k-NN: an encoder pass over a split happens once, whichever of
them runs first.

An entry is one split's features [N, pooling, blocks, D] and labels [N], stored under
$MAEBENCH_HOME/cache/features/ as `<key>.pt` with a `<key>.json` sidecar. Its key is
(backbone checksum: a SHA-256 of the encoder's weights as built for the task; dataset
fingerprint: the split's files, labels, sizes and modification times; the eval transform;
the number of last blocks; the poolings). A request is served by an entry with the same
backbone, dataset and transform whose blocks and poolings include the requested ones (a
4-block [cls]+avg entry serves a 1-block [cls] request), else the split is encoded and stored.
The sidecar holds the SHA-256 of the .pt file: a corrupt or truncated file fails the check, is
reported in one line, deleted and rebuilt. Only rank 0 writes; writes are atomic (os.replace).
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn

from maebench import distributed as dist
from maebench.home import home_dir

VERSION = 1


def cache_dir() -> Path:
    return home_dir() / "cache" / "features"


@dataclass
class CachedSplit:
    features: torch.Tensor         # [N, len(pooling), blocks, D] float32
    labels: torch.Tensor           # [N] int64
    pooling: tuple[str, ...]
    blocks: int
    status: str                    # "hit", "miss" (encoded now), "rebuilt" (bad file), "off"
    path: Path | None = None
    extract_s: float = 0.0

    def select(self, pooling: str, blocks: int) -> torch.Tensor:
        """[N, blocks * D]: the `pooling` tokens of the last `blocks` blocks, concatenated."""
        p = self.pooling.index(pooling)
        f = self.features[:, p, self.features.shape[2] - blocks:, :]
        return f.reshape(f.shape[0], -1).contiguous()


def backbone_checksum(encoder: nn.Module) -> str:
    """SHA-256 over the encoder's parameter and buffer names, shapes and bytes."""
    h = hashlib.sha256()
    for name, t in encoder.state_dict().items():
        t = t.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def dataset_fingerprint(dataset) -> str:
    """SHA-256 over an ImageFolder split's (relative path, label, size, mtime) records."""
    h = hashlib.sha256(f"{getattr(dataset, 'split', '')}|{len(dataset.samples)}|".encode())
    root = Path(dataset.root)
    for path, label in dataset.samples:
        st = os.stat(path)
        rel = os.path.relpath(path, root)
        h.update(f"{rel}|{label}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def _base(key: dict) -> str:
    core = {k: key[k] for k in ("version", "backbone", "dataset", "transform")}
    return hashlib.sha256(json.dumps(core, sort_keys=True).encode()).hexdigest()[:20]


def _stem(key: dict) -> str:
    return f"{_base(key)}-L{key['blocks']}-{'+'.join(key['pooling'])}"


def _sha256_bytes(blob: bytes) -> str:
    return hashlib.sha256(blob).hexdigest()


def _note(msg: str) -> None:
    if dist.is_main():
        print(f"feature cache: {msg}", file=sys.stderr)


def _read(meta_path: Path) -> tuple[dict, torch.Tensor, torch.Tensor] | None:
    """(sidecar, features, labels), or None after a one-line note when the entry is bad."""
    pt = meta_path.with_suffix(".pt")
    try:
        meta = json.loads(meta_path.read_text())
        blob = pt.read_bytes()
    except (OSError, ValueError) as e:
        _note(f"{meta_path.stem} is unreadable ({type(e).__name__}); encoding again")
        _remove(meta_path)
        return None
    if len(blob) != meta.get("bytes") or _sha256_bytes(blob) != meta.get("sha256"):
        _note(f"{pt} fails its checksum ({len(blob)} of {meta.get('bytes')} bytes: corrupt or truncated); "
              "encoding again")
        _remove(meta_path)
        return None
    payload = torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)
    return meta, payload["features"], payload["labels"]


def _remove(meta_path: Path) -> int:
    freed = 0
    if dist.is_main():
        for p in (meta_path.with_suffix(".pt"), meta_path):
            try:
                freed += p.stat().st_size
                p.unlink()
            except OSError:
                pass
    return freed


def _write(key: dict, names: dict, features: torch.Tensor, labels: torch.Tensor) -> Path:
    d = cache_dir()
    d.mkdir(parents=True, exist_ok=True)
    stem = _stem(key)
    buf = io.BytesIO()
    torch.save({"features": features, "labels": labels}, buf)
    blob = buf.getvalue()
    pt, meta_path = d / f"{stem}.pt", d / f"{stem}.json"
    tmp = d / f".{stem}.{os.getpid()}.tmp"
    tmp.write_bytes(blob)
    os.replace(tmp, pt)
    meta = {"key": key, **names, "sha256": _sha256_bytes(blob), "bytes": len(blob),
            "shape": list(features.shape), "created": time.time()}
    tmp.write_text(json.dumps(meta, indent=1))
    os.replace(tmp, meta_path)
    return pt


def _candidates(key: dict) -> list[Path]:
    """Sidecars of entries that can serve `key`: the exact one first, then the smallest superset."""
    d = cache_dir()
    exact = d / f"{_stem(key)}.json"
    found = [exact] if exact.is_file() else []
    others = []
    for p in d.glob(f"{_base(key)}-L*.json") if d.is_dir() else ():
        if p == exact:
            continue
        try:
            k = json.loads(p.read_text())["key"]
        except (OSError, ValueError, KeyError):
            continue
        if k["blocks"] >= key["blocks"] and set(key["pooling"]) <= set(k["pooling"]):
            others.append((k["blocks"] * len(k["pooling"]), p))
    return found + [p for _, p in sorted(others)]


def get(encoder: nn.Module, dataset, *, transform: str, blocks: int, pooling: tuple[str, ...],
        batch_size: int, device: torch.device, num_workers: int = 0, use_cache: bool = True,
        names: dict | None = None, encode: bool = True) -> CachedSplit | None:
    """The features of every item of `dataset` (an ImageFolder split with its eval transform),
    from the cache when an entry serves the key, else encoded (and stored when use_cache);
    encode=False: None instead of encoding."""
    from maebench.tasks import features as feats
    pooling = tuple(pooling)
    key = None
    status = "off"
    if use_cache:
        key = {"version": VERSION, "backbone": backbone_checksum(encoder),
               "dataset": dataset_fingerprint(dataset), "transform": transform,
               "blocks": int(blocks), "pooling": list(pooling)}
        status = "miss"
        for meta_path in _candidates(key):
            got = _read(meta_path)
            if got is None:
                status = "rebuilt"
                continue
            meta, f, y = got
            k = meta["key"]
            idx = [k["pooling"].index(p) for p in pooling]
            f = f[:, idx, f.shape[2] - blocks:, :].contiguous()
            return CachedSplit(f, y, pooling, blocks, "hit", meta_path.with_suffix(".pt"))
    if not encode:
        return None
    t0 = time.perf_counter()
    was = next(encoder.parameters()).device
    encoder.to(device)
    f, y = feats.extract(encoder, dataset, batch_size=batch_size, device=device, num_workers=num_workers,
                         fn=lambda enc, x: feats.token_features(enc, x, blocks, pooling))
    encoder.to(was)
    extract_s = time.perf_counter() - t0
    path = None
    if use_cache and dist.is_main():
        path = _write(key, dict(names or {}), f, y)
    return CachedSplit(f, y, pooling, blocks, status, path, extract_s)


# ---- `maebench cache list | clear` ----------------------------------------------------------
def entries() -> list[dict]:
    """Sidecars of every entry (plus 'path' and 'size' of its .pt file), oldest first."""
    d = cache_dir()
    out = []
    for p in sorted(d.glob("*.json")) if d.is_dir() else ():
        try:
            meta = json.loads(p.read_text())
        except (OSError, ValueError):
            meta = {"key": {}, "broken": True}
        pt = p.with_suffix(".pt")
        meta["path"] = str(pt)
        meta["size"] = pt.stat().st_size if pt.is_file() else 0
        out.append(meta)
    return sorted(out, key=lambda m: m.get("created", 0))


def clear(backbone: str | None = None) -> tuple[int, int]:
    """Delete every entry (or those of one backbone name); (entries removed, bytes freed)."""
    d = cache_dir()
    n = freed = 0
    for meta in entries():
        if backbone is not None and meta.get("backbone_name") != backbone:
            continue
        freed += _remove(Path(meta["path"]).with_suffix(".json"))
        n += 1
    if backbone is None and d.is_dir():
        for tmp in d.glob(".*.tmp"):
            freed += tmp.stat().st_size
            tmp.unlink()
    return n, freed
