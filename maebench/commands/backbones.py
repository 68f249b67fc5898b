"""`maebench backbones list | show NAME | register NAME --checkpoint PATH | remove NAME`.

`list` and `show` read only catalogue.yaml, registry.json and the results store: no torch, so
they answer at once. `register` converts a checkpoint (backbones/convert.py) and records it.
"""
from __future__ import annotations

import argparse
import sys
import time

from maebench.backbones.catalogue import FAMILIES
from maebench.commands.options import add_results_option

# = backbones.formats.FORMATS (which imports torch); a test keeps them equal
FORMAT_CHOICES = ("auto", "mae", "mae-full", "mocov3", "beit", "timm", "deit", "maebench")
FAMILY_CHOICES = tuple(f for f in FAMILIES if f != "scratch")


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", metavar="ACTION")
    sub.required = True
    ls = sub.add_parser("list", help="every backbone: architecture, parameters, family, weights, tasks run")
    add_results_option(ls)
    show = sub.add_parser("show", help="everything known about one backbone")
    show.add_argument("name", metavar="NAME")
    add_results_option(show)
    reg = sub.add_parser("register", help="convert a checkpoint file and register it as backbone NAME",
                         description="Convert a checkpoint (official MAE, MoCo v3, BEiT, timm/DeiT or "
                                     "maebench) to maebench's canonical ViT weights and register it.")
    reg.add_argument("name", metavar="NAME")
    reg.add_argument("--checkpoint", required=True, metavar="PATH", help="the checkpoint file")
    reg.add_argument("--arch", help="vit-tiny, vit-small, vit-base, vit-large or vit-huge "
                                    "(default: read off the weights)")
    reg.add_argument("--format", default="auto", choices=FORMAT_CHOICES, help="checkpoint layout (default: auto)")
    reg.add_argument("--family", choices=FAMILY_CHOICES, help="how it was pretrained (default: from the format)")
    reg.add_argument("--patch-size", type=int, help="patch size (default: read off the weights)")
    reg.add_argument("--img-size", type=int,
                     help="image size to store position embeddings for (default: the checkpoint's own)")
    reg.add_argument("--timm", metavar="MODEL", help="build timm model MODEL (e.g. vit_small_patch14_reg4_dinov2, "
                     "eva02_base_patch14_224.mim_in22k) and convert the file with timm's own checkpoint filter "
                     "(default: recognised DINOv2 / CLIP / EVA-02 / SigLIP files name their model)")
    reg.add_argument("--timm-arg", action="append", default=[], metavar="KEY=VALUE",
                     help="a timm.create_model option (YAML value), e.g. depth=6; repeatable")
    reg.add_argument("--mean", type=_floats, help="input mean, e.g. 0.5,0.5,0.5 (default: timm's pretrained config)")
    reg.add_argument("--std", type=_floats, help="input std (default: timm's pretrained config)")
    reg.add_argument("--source", help="free text: where the file comes from (default: its path)")
    reg.add_argument("--force", action="store_true", help="replace an existing registration")
    reg.add_argument("--trust-checkpoint", action="store_true",
                     help="allow full unpickling (runs code inside the file): only for files you trust")
    rm = sub.add_parser("remove", help="delete a registration and its weights file")
    rm.add_argument("name", metavar="NAME")


def _floats(text: str) -> tuple[float, ...]:
    try:
        out = tuple(float(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers such as 0.5,0.5,0.5, got '{text}'") from None
    if len(out) != 3:
        raise argparse.ArgumentTypeError(f"expected 3 numbers (R,G,B), got '{text}'")
    return out


def timm_args(items: list[str]) -> dict:
    """['depth=6', 'embed_dim=64'] -> {'depth': 6, 'embed_dim': 64} (values read as YAML)."""
    import yaml

    from maebench.errors import UsageError
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.isidentifier():
            raise UsageError(f"--timm-arg expects KEY=VALUE, got '{item}'")
        out[key] = yaml.safe_load(value)
    return out


def main(args: argparse.Namespace) -> int:
    return {"list": _list, "show": _show, "register": _register, "remove": _remove}[args.action](args)


def tasks_run(results: str | None) -> dict[str, list[str]]:
    """backbone -> distinct tasks with a finished run; an unreadable store is a warning."""
    from maebench.errors import MaebenchError
    from maebench.results import ResultsStore
    try:
        return ResultsStore(results).tasks_done()
    except MaebenchError as e:
        print(f"maebench: warning: {e}", file=sys.stderr)
        return {}


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    line = lambda r: "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip()  # noqa: E731
    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])


def _weights_state(e) -> str:
    if e.family == "scratch":
        return "random init"
    return "yes" if e.present else "missing"


def _list(args) -> int:
    from maebench.backbones.catalogue import human_count
    from maebench.backbones.registry import entries
    runs = tasks_run(args.results)
    rows = [[e.name + ("" if not e.user else " *"), f"{e.arch}/{e.patch_size}", human_count(e.params),
             _family(e), _weights_state(e), ", ".join(runs.get(e.name, [])) or "-"] for e in entries()]
    print(_table(["name", "architecture", "params", "family", "weights", "tasks run"], rows))
    print("\n* registered by you.  Missing weights: `maebench backbones show NAME` says where to get them.")
    return 0


def _family(e) -> str:
    if not e.model_family:
        return e.family
    from maebench.backbones.timm_family import FAMILIES
    fam = FAMILIES.get(e.model_family)
    return f"{e.family} ({fam.label if fam else e.model_family})"


def _show(args) -> int:
    from maebench.backbones.catalogue import human_count
    from maebench.backbones.registry import entry, missing_weights_error
    e = entry(args.name)
    kind = {"beit": "timm Beit", "timm": f"timm {e.timm}"}.get(e.model, "timm VisionTransformer")
    lines = [
        ("name", f"{e.name} ({'registered by you' if e.user else 'catalogue'})"),
        ("architecture", f"{e.arch}, patch {e.patch_size}, {e.img_size} px, {e.in_chans} channels, "
                         f"{human_count(e.params)} parameters ({kind})"),
        ("model options", ", ".join(f"{k}={v}" for k, v in {**e.vit_kwargs, **e.timm_kwargs}.items()) or None),
        ("family", _family(e)),
        ("probe feature", e.probe),
        ("converted by", e.conversion),
        ("normalisation", f"mean {list(e.mean)}, std {list(e.std)}"),
        ("paper rows", ", ".join(map(str, e.paper)) or "-"),
        ("MAE decoder", "yes" if e.has_decoder else "no"),
        ("weights", "random initialisation" if e.family == "scratch" else
         f"{e.weights or e.expected_weights} ({'present' if e.present else 'missing'})"),
        ("published file", e.file),
        ("download", e.url),
        ("source", e.source),
    ]
    if e.registered:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(e.registered))
        lines += [("registered", f"{when} from {e.source_path} (format {e.format}, {e.size / 1e6:.1f} MB)"),
                  ("sha256", e.sha256)]
    lines += [("release reports", f"{r['metric']} {r['value']} ({r['source']})") for r in e.reference]
    lines += [("notes", e.notes or None)]
    lines += [("conversion", n) for n in e.conversion_notes]
    lines += [("tasks run", ", ".join(tasks_run(args.results).get(e.name, [])) or "-")]
    if not e.present:
        lines.append(("to install", str(missing_weights_error(e))))
    width = max(len(k) for k, _ in lines)
    for k, v in lines:
        if v is not None:
            print(f"{k + ':':<{width + 1}} {v}")
    return 0


def _register(args) -> int:
    from maebench.backbones.registry import register
    e = register(args.name, args.checkpoint, arch=args.arch, fmt=args.format, force=args.force,
                 trust=args.trust_checkpoint, family=args.family, source=args.source,
                 patch_size=args.patch_size, img_size=args.img_size, mean=args.mean, std=args.std,
                 timm_model=args.timm, timm_kwargs=timm_args(args.timm_arg))
    print(f"registered {e.name}: {e.arch}, patch {e.patch_size}, {e.img_size} px, family {e.family}, "
          f"read as {e.format}{', with MAE decoder' if e.has_decoder else ''}"
          + (f", timm {e.timm}, probe feature {e.probe}" if e.timm else ""))
    for note in e.conversion_notes:
        print(f"  note: {note}")
    print(f"  weights: {e.weights}")
    return 0


def _remove(args) -> int:
    from maebench.backbones.registry import remove
    deleted = remove(args.name)
    print(f"removed {args.name}" + (f" (deleted {deleted})" if deleted else ""))
    return 0
