"""The two markdown helpers every section of benchmarks/REPORT.md uses (report.py and
report_stages.py import them from here, so neither imports the other's sections back)."""
from __future__ import annotations


def table(head: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def pct(x: float) -> str:
    return f"{100 * x:.0f}%" if abs(x) >= 0.095 else f"{100 * x:.1f}%"


def write_section(path, heading: str, body: str) -> None:
    """Markdown file `path` with the section `heading` replaced (up to the next `## ` heading) by
    heading + body, or appended when absent (REPORT.md's sections, one per benchmark)."""
    from pathlib import Path
    path = Path(path)
    text = path.read_text() if path.exists() else ""
    section = f"{heading}\n\n{body}"
    if heading in text:
        start = text.index(heading)
        nxt = text.find("\n## ", start + len(heading))
        text = text[:start] + section + (text[nxt + 1:] if nxt >= 0 else "")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text)
