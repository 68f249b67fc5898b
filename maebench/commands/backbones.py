"""`maebench backbones list | show NAME | pull NAME | register NAME --checkpoint PATH|URL | remove NAME`.

`list` and `show` read only catalogue.yaml, registry.json and the results store: no torch, so
they answer at once. `register` converts a checkpoint (backbones/convert.py) and records it;
`pull` downloads a catalogue entry's published file first (backbones/pull.py).
"""
from __future__ import annotations

import argparse
import os
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
    pull = sub.add_parser("pull", help="download a catalogue backbone's published weights, verify and register them",
                          description="Download the published file of catalogue backbone NAME into "
                                      "$MAEBENCH_HOME/weights/downloads/, check its sha256, and register it.")
    pull.add_argument("name", metavar="NAME")
    pull.add_argument("--force", action="store_true", help="register again although NAME is registered")
    reg = sub.add_parser("register", help="convert a checkpoint file and register it as backbone NAME",
                         description="Convert a checkpoint (official MAE, MoCo v3, BEiT, timm/DeiT or "
                                     "maebench) to maebench's canonical ViT weights and register it.")
    reg.add_argument("name", metavar="NAME")
    reg.add_argument("--checkpoint", metavar="PATH|URL",
                     help="the checkpoint file, or an http(s) address to download it from (needed unless "
                          "--timm MODEL names a model whose weights are on the Hugging Face hub)")
    reg.add_argument("--sha256", metavar="HEX", help="the file's sha256 (or a published prefix of it): checked "
                     "before anything is registered")
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
    return {"list": _list, "show": _show, "pull": _pull, "register": _register, "remove": _remove}[args.action](args)


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


def _pull(args) -> int:
    from maebench.backbones.pull import pull
    got = pull(args.name, force=args.force)
    if got.path is None:
        print(f"{args.name} is {got.check}")
        return 0
    _said_registered(got.entry)
    print(f"  downloaded: {got.path}")
    print(f"  sha256: {got.entry.sha256} ({got.check})")
    return 0


def _checkpoint(args) -> tuple[str, str | None, tuple[str, str] | None]:
    """(local checkpoint file, its source text, (URL, how it was checked) when downloaded)."""
    from maebench.download import is_url, verify
    from maebench.errors import UsageError
    if args.checkpoint is None:
        if not args.timm:
            raise UsageError("backbones register needs --checkpoint PATH|URL, or --timm MODEL to take timm's "
                             "published weights from the Hugging Face hub")
        from maebench.backbones.hub_weights import hub_checkpoint
        path, origin = hub_checkpoint(args.timm)
        if args.sha256:
            verify(path, args.sha256, str(path))
        return str(path), args.source or origin, None
    if is_url(args.checkpoint):
        from maebench.backbones.pull import download_for
        path = download_for(args.name, args.checkpoint, sha256=args.sha256, force=args.force, arch=args.arch,
                            patch_size=args.patch_size, family=args.family)
        check = "sha256 given with --sha256" if args.sha256 else "no sha256 given: the one computed is recorded"
        return str(path), args.source or args.checkpoint, (args.checkpoint, check)
    if args.sha256 and os.path.isfile(args.checkpoint):   # a missing file: register names it
        verify(args.checkpoint, args.sha256, args.checkpoint)
    return args.checkpoint, args.source, None


def _register(args) -> int:
    from maebench.backbones.registry import register
    checkpoint, source, downloaded = _checkpoint(args)
    e = register(args.name, checkpoint, arch=args.arch, fmt=args.format, force=args.force,
                 trust=args.trust_checkpoint, family=args.family, source=source,
                 patch_size=args.patch_size, img_size=args.img_size, mean=args.mean, std=args.std,
                 timm_model=args.timm, timm_kwargs=timm_args(args.timm_arg))
    if downloaded:
        from maebench.backbones.pull import record_origin
        record_origin(e.name, *downloaded)
    _said_registered(e)
    if downloaded or args.checkpoint is None:
        print(f"  from: {checkpoint}  (sha256 {e.sha256})")
    return 0


def _said_registered(e) -> None:
    print(f"registered {e.name}: {e.arch}, patch {e.patch_size}, {e.img_size} px, family {e.family}, "
          f"read as {e.format}{', with MAE decoder' if e.has_decoder else ''}"
          + (f", timm {e.timm}, probe feature {e.probe}" if e.timm else ""))
    for note in e.conversion_notes:
        print(f"  note: {note}")
    print(f"  weights: {e.weights}")


def _remove(args) -> int:
    from maebench.backbones.registry import remove
    deleted = remove(args.name)
    print(f"removed {args.name}" + (f" (deleted {deleted})" if deleted else ""))
    return 0
