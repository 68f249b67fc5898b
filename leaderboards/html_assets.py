"""The style sheet and the sorting script of the HTML leaderboard page (inline, so the page is
one self-contained file). Tables fit a 1400 px window: no table is wider than the page, headers
stay on one or two lines, the header row stays visible while scrolling (sticky)."""

STYLE = """
:root { --line: #d6d6d6; --head: #eef1f5; }
* { box-sizing: border-box; }
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 1.2em auto; padding: 0 1.2em;
       max-width: 1360px; color: #222; line-height: 1.35; overflow-wrap: anywhere; }
h1 { font-size: 1.5em; margin: 0.2em 0; }
h2 { font-size: 1.15em; margin: 1.4em 0 0.4em; }
h3 { font-size: 1em; margin: 1em 0 0.3em; }
nav a { margin-right: 0.8em; white-space: nowrap; }
section.table { margin-bottom: 1.2em; }
table.lb { border-collapse: separate; border-spacing: 0; font-size: 13px; max-width: 100%; }
table.lb th, table.lb td { border-bottom: 1px solid var(--line); padding: 3px 10px; vertical-align: top; }
table.lb th { position: sticky; top: 0; z-index: 1; background: var(--head); text-align: left;
              font-weight: 600; cursor: pointer; user-select: none; max-width: 12em; }
table.lb th.num, table.lb td.num { text-align: right; font-variant-numeric: tabular-nums; }
table.lb th::after { content: " \\2195"; color: #999; font-weight: normal; }
table.lb th[data-dir="desc"]::after { content: " \\2193"; color: #333; }
table.lb th[data-dir="asc"]::after { content: " \\2191"; color: #333; }
table.lb td.label { text-align: left; white-space: nowrap; }
table.lb td.num { white-space: nowrap; }
table.lb td a { color: inherit; text-decoration: none; border-bottom: 1px dotted #888; }
table.lb td a:hover { color: #0645ad; border-bottom-color: #0645ad; }
table.lb td.best { font-weight: 700; background: #eaf6ea; }
table.lb strong { font-weight: 700; }
tbody.paper td { color: #555; font-style: italic; background: #fafafa; }
tbody.paper tr.group td { font-style: normal; font-weight: 600; color: #444; background: #f2f2f2;
                          border-top: 2px solid #999; }
p.caption { font-size: 12px; color: #555; margin: 0.3em 0 0; max-width: 90em; }
div.runs { border-left: 3px solid #ddd; padding: 0.1em 0 0.1em 0.8em; margin: 0.5em 0; }
div.runs:target { border-left-color: #0645ad; background: #f4f8ff; }
details summary { cursor: pointer; }
details pre { font-size: 11px; max-height: 28em; overflow: auto; background: #f7f7f7; padding: 6px;
              white-space: pre-wrap; word-break: break-all; }
figure { display: inline-block; margin: 0.5em; max-width: 100%; vertical-align: top; }
figure img { max-width: 100%; height: auto; border: 1px solid #ddd; }
figcaption { font-size: 12px; color: #555; }
ul.notes { font-size: 13px; }
"""

SCRIPT = """
(function () {
  function key(td) {
    if (!td) return null;
    var v = td.getAttribute("data-v");
    if (v !== null) return v === "" ? null : parseFloat(v);
    var t = td.textContent.trim();
    return t === "" ? null : t.toLowerCase();
  }
  function compare(a, b, sign) {
    if (a === null && b === null) return 0;
    if (a === null) return 1;            // empty cells last, whatever the direction
    if (b === null) return -1;
    if (typeof a === "number" && typeof b === "number") return sign * (a - b);
    return sign * String(a).localeCompare(String(b));
  }
  document.querySelectorAll("table.lb").forEach(function (table) {
    var heads = table.querySelectorAll("thead th");
    heads.forEach(function (th, j) {
      th.title = "sort by this column";
      th.addEventListener("click", function () {
        var numeric = th.classList.contains("num");
        var dir = th.getAttribute("data-dir") === (numeric ? "desc" : "asc") ? (numeric ? "asc" : "desc")
                                                                               : (numeric ? "desc" : "asc");
        heads.forEach(function (h) { h.removeAttribute("data-dir"); });
        th.setAttribute("data-dir", dir);
        var sign = dir === "asc" ? 1 : -1;
        table.querySelectorAll("tbody").forEach(function (tbody) {
          var rows = Array.prototype.filter.call(tbody.rows, function (r) { return !r.classList.contains("group"); });
          rows.sort(function (a, b) { return compare(key(a.cells[j]), key(b.cells[j]), sign); });
          rows.forEach(function (r) { tbody.appendChild(r); });
        });
      });
    });
  });
})();
"""
