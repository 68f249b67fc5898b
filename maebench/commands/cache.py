"""`maebench cache list | clear`: the frozen-feature cache under $MAEBENCH_HOME/cache (see
tasks/feature_cache.py), shared by linprobe (single-lr, sweep, logreg) and knn."""
from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=["list", "clear"], help="list the cached features, or delete them")
    p.add_argument("--backbone", metavar="NAME", help="clear: only the entries of this backbone")


def _mb(n: int) -> str:
    return f"{n / 2 ** 20:.1f} MB"


def main(args: argparse.Namespace) -> int:
    from maebench.tasks import feature_cache
    if args.action == "clear":
        n, freed = feature_cache.clear(args.backbone)
        print(f"removed {n} feature-cache entr{'y' if n == 1 else 'ies'} ({_mb(freed)}) from {feature_cache.cache_dir()}")
        return 0
    if args.backbone:
        from maebench.errors import UsageError
        raise UsageError("--backbone applies to `maebench cache clear`")
    entries = feature_cache.entries()
    if not entries:
        print(f"no cached features in {feature_cache.cache_dir()}")
        return 0
    import time
    from tabulate import tabulate
    rows = []
    for e in entries:
        k = e.get("key", {})
        rows.append([e.get("backbone_name", "?"), e.get("dataset_name", "?"), e.get("split", "?"),
                     "x".join(map(str, e.get("shape", []))), f"{k.get('blocks', '?')} / {'+'.join(k.get('pooling', []))}",
                     _mb(e["size"]), time.strftime("%Y-%m-%d %H:%M", time.localtime(e.get("created", 0))),
                     str(k.get("backbone", ""))[:12], e["path"].rsplit("/", 1)[-1]])
    print(tabulate(rows, headers=["backbone", "dataset", "split", "features", "blocks / pooling", "size",
                                  "created", "weights sha256", "file"]))
    print(f"{len(entries)} entries, {_mb(sum(e['size'] for e in entries))} in {feature_cache.cache_dir()}")
    return 0
