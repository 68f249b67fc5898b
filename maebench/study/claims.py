"""The paper's claims about its ablations, each checked against this run's numbers.

A claim is `agrees` only where the numbers show it, `disagrees` where they show otherwise, and
`not measured` where the study has no such table (or a row did not finish). Two numbers closer
than the protocol's tie margin count as equal: twice the standard deviation over seeds, the
study's own where its seeds repeat, else the one measured for the demo's vit-micro on the fashion
world (docs/example-leaderboard/seeds-0-1-2, transfer seeds 0-2 of one pretraining: the MAE
backbones' fine-tuning with 100 labels per class 1.4, their swept linear probe 0.1-0.2), so 2.8
and 0.4 points. Pretraining seeds move the numbers too, so the margins are lower bounds.
"""
from __future__ import annotations

from dataclasses import dataclass

from maebench.study.tables import StudyTables, Table, TableRow

TIE = {"finetune": 2.8, "linprobe": 0.4}       # twice the measured seed std (see above)
PROTOCOLS = ("finetune", "linprobe")


@dataclass
class Verdict:
    claim: str
    verdict: str                           # agrees | disagrees | partly (...) | not shown (a tie) | not measured
    evidence: str


def _table(st: StudyTables, name: str) -> Table | None:
    return next((t for t in st.tables if t.name == name), None)


def _score(row: TableRow | None, p: str) -> float | None:
    cell = row.ours.get(p) if row else None
    return cell.mean if cell else None


def _margin(p: str, *rows: TableRow) -> float:
    """The tie margin of protocol p: twice the larger seed std of these rows, or TIE[p]."""
    stds = [c.std for r in rows if (c := r.ours.get(p)) and c.std is not None]
    return 2 * max(stds) if stds else TIE[p]


def _margins(m: dict[str, float]) -> str:
    return ", ".join(f"{p} {x:.1f}" for p, x in m.items())


def _row(table: Table | None, variant_suffix: str) -> TableRow | None:
    return next((r for r in table.rows if r.variant and r.variant.endswith(variant_suffix)), None) if table else None


def _fmt(rows: list[TableRow], p: str) -> str:
    return ", ".join(f"{r.label} {_score(r, p):.1f}" for r in rows if _score(r, p) is not None)


def combine(per: dict[str, str]) -> str:
    """One verdict from each protocol's (agrees, disagrees, tie, not measured): agrees only where
    every measured protocol agrees; a tie is said as one, never as agreement."""
    said = {p: v for p, v in per.items() if v != "not measured"}
    if not said:
        return "not measured"
    kinds = set(said.values())
    if kinds == {"agrees"}:
        return "agrees" if len(said) == len(per) else f"agrees ({' and '.join(said)} only measured)"
    if kinds == {"disagrees"}:
        return "disagrees"
    if kinds == {"tie"}:
        return "not shown (a tie)"
    return "partly (" + "; ".join(f"{p} {'a tie' if v == 'tie' else v}" for p, v in said.items()) + ")"


def _sign(d: float, m: float) -> str:
    """A difference that should be positive: agrees above the margin, disagrees below minus it."""
    return "agrees" if d > m else "disagrees" if d < -m else "tie"


def mask_ratio(st: StudyTables) -> Verdict:
    claim = "A high masking ratio (75%) is best for both fine-tuning and linear probing."
    t = _table(st, "mask ratio")
    if t is None:
        return Verdict(claim, "not measured", "no mask-ratio table (`maebench study mask-ratio`)")
    per, said = {}, []
    for p in PROTOCOLS:
        done = [r for r in t.rows if _score(r, p) is not None]
        if len(done) < 2 or _score(t.relative_to, p) is None:
            per[p] = "not measured"
            continue
        best, lowest = max(done, key=lambda r: _score(r, p)), done[0]        # rows in ratio order
        default = _score(t.relative_to, p)
        m = _margin(p, *done)
        high = float(best.label.rstrip("%")) >= (60 if best.label.endswith("%") else 0.6)
        above_lowest, below_best = default - _score(lowest, p), _score(best, p) - default
        per[p] = "agrees" if high and below_best <= m and above_lowest > m else \
            "tie" if below_best <= m and abs(above_lowest) <= m else "disagrees"
        said.append(f"{p}: best {best.label} ({_score(best, p):.1f}), 75% {default:.1f}, "
                    f"{lowest.label} {_score(lowest, p):.1f}")
    return Verdict(claim, combine(per), "; ".join(said) + " (rule, per protocol: the best ratio is >= 60%, 75% within the tie margin "
                   f"of it and above the lowest ratio by more than the margin ({_margins(TIE)} without repeated seeds); a flat "
                   "curve is a tie)")


def decoder_depth(st: StudyTables) -> Verdict:
    claim = "A deeper decoder matters for linear probing, not for fine-tuning."
    t = _table(st, "decoder depth")
    rows = [r for r in t.rows if r.variant] if t else []
    if len(rows) < 2 or any(_score(r, p) is None for r in rows for p in PROTOCOLS):
        return Verdict(claim, "not measured", "no complete decoder-depth table")
    shallow, deep = rows[0], rows[-1]                    # the table lists depths in order
    lin_gain = _score(deep, "linprobe") - _score(shallow, "linprobe")
    ft = [_score(r, "finetune") for r in rows]
    spread = max(ft) - min(ft)
    m_lin, m_ft = _margin("linprobe", *rows), _margin("finetune", *rows)
    ok = lin_gain > m_lin and (spread <= m_ft or spread < lin_gain / 2)
    return Verdict(claim, "agrees" if ok else "disagrees",
                   f"linear {shallow.label} -> {deep.label}: {lin_gain:+.1f}; fine-tune range {spread:.1f} "
                   f"({_fmt(rows, 'finetune')}) (rule: agrees when the linear gain exceeds {m_lin:.1f} and the "
                   f"fine-tune range is within {m_ft:.1f} or under half the linear gain)")


def mask_token(st: StudyTables) -> Verdict:
    claim = "Mask tokens in the encoder hurt and cost about 3x the pretraining compute."
    t = _table(st, "mask token")
    with_m, base = _row(t, "-with-m"), t.relative_to if t else None
    if with_m is None or base is None or any(_score(r, p) is None for r in (with_m, base) for p in PROTOCOLS):
        return Verdict(claim, "not measured", "no complete mask-token table")
    d = {p: _score(with_m, p) - _score(base, p) for p in PROTOCOLS}
    flops = with_m.gflops / base.gflops if with_m.gflops and base.gflops else None
    seconds = with_m.seconds / base.seconds if with_m.seconds and base.seconds else None
    m_lin, m_ft = _margin("linprobe", with_m, base), _margin("finetune", with_m, base)
    ok = d["linprobe"] < -m_lin and d["finetune"] <= m_ft and flops is not None and flops >= 2.0
    return Verdict(claim, "agrees" if ok else "disagrees",
                   f"with [M] minus without: fine-tune {d['finetune']:+.1f}, linear {d['linprobe']:+.1f}; "
                   f"pretraining GFLOPs {flops:.1f}x" + (f", wall time {seconds:.1f}x" if seconds else "")
                   + f" (rule: agrees when linear is lower by more than {m_lin:.1f}, fine-tune not higher by more than "
                   f"{m_ft:.1f}, and >= 2x the GFLOPs)")


def targets(st: StudyTables) -> Verdict:
    claim = "Normalised pixels beat unnormalised pixels as the target."
    t = _table(st, "reconstruction target")
    norm = _row(t, "-norm-pixel")
    pixel = t.relative_to if t else None
    if norm is None or pixel is None or any(_score(r, p) is None for r in (norm, pixel) for p in PROTOCOLS):
        return Verdict(claim, "not measured", "no complete target table")
    d = {p: _score(norm, p) - _score(pixel, p) for p in PROTOCOLS}
    m = {p: _margin(p, norm, pixel) for p in PROTOCOLS}
    verdict = combine({p: _sign(x, m[p]) for p, x in d.items()})
    return Verdict(claim, verdict, f"norm pixel minus pixel: fine-tune {d['finetune']:+.1f}, linear "
                   f"{d['linprobe']:+.1f} (rule, per protocol: agrees when above the tie margin, {_margins(m)}, disagrees when below minus it)")


def augmentation(st: StudyTables) -> Verdict:
    claim = "MAE works with cropping alone: colour jitter does not help."
    t = _table(st, "data augmentation")
    crop, color = (t.relative_to if t else None), _row(t, "-crop-rand-color")
    if crop is None or color is None or any(_score(r, p) is None for r in (crop, color) for p in PROTOCOLS):
        return Verdict(claim, "not measured", "no complete augmentation table")
    d = {p: _score(crop, p) - _score(color, p) for p in PROTOCOLS}
    m = {p: _margin(p, crop, color) for p in PROTOCOLS}
    return Verdict(claim, combine({p: "agrees" if x >= -m[p] else "disagrees" for p, x in d.items()}),
                   f"crop only minus crop + colour jitter: fine-tune {d['finetune']:+.1f}, linear {d['linprobe']:+.1f} "
                   f"({_fmt(t.rows, 'linprobe')} linear) (rule, per protocol: agrees when not below minus the tie margin, {_margins(m)})")


def masking(st: StudyTables) -> Verdict:
    claim = "Random masking beats block-wise and grid masking."
    t = _table(st, "mask sampling")
    rows = [r for r in t.rows if r.variant] if t else []
    random_ = t.relative_to if t else None
    others = [r for r in rows if r is not random_]
    if random_ is None or not others or any(_score(r, p) is None for r in rows for p in PROTOCOLS):
        return Verdict(claim, "not measured", "no complete mask-sampling table")
    m = {p: _margin(p, *rows) for p in PROTOCOLS}
    lead = {p: min(_score(random_, p) - _score(r, p) for r in others) for p in PROTOCOLS}   # over the best other
    per = {p: _sign(lead[p], m[p]) for p in PROTOCOLS}
    return Verdict(claim, combine(per),
                   f"fine-tune {_fmt(rows, 'finetune')}; linear {_fmt(rows, 'linprobe')} "
                   f"(rule, per protocol: agrees when random is above every other row by more than the tie margin, {_margins(m)}; "
                   "disagrees when another row is above it by more)")


CLAIMS = (mask_ratio, decoder_depth, mask_token, targets, augmentation, masking)


def check(st: StudyTables) -> list[Verdict]:
    return [c(st) for c in CLAIMS]


def markdown(verdicts: list[Verdict]) -> str:
    lines = ["| the paper's claim | this run | the numbers |", "|---|---|---|"]
    lines += [f"| {v.claim} | **{v.verdict}** | {v.evidence} |" for v in verdicts]
    return "\n".join(lines)
