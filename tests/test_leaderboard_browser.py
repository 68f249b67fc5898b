"""The HTML leaderboard in a real browser: headless Chromium (Debian package `chromium`, which
.ci/run installs) loads the page of the widest board at 1400 x 1000 px, and a script added to a
copy of the page writes what the browser laid out into the DOM, which --dump-dom returns: no
horizontal overflow (document scroll width <= window width), every table header on one or two
lines, and sorting by a column keeps the paper rows in their own group after the measured ones."""
from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest
from leaderboard_helpers import paper_scale_store

from maebench.leaderboards.render import write_board
from maebench.leaderboards.board import build_leaderboard

BROWSER = next((shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)
pytestmark = pytest.mark.skipif(BROWSER is None, reason="no headless browser: install Debian's `chromium` "
                                                       "(apt-get install chromium; .ci/run does)")

MEASURE = """
<script>
window.addEventListener("load", function () {
  var out = {innerWidth: window.innerWidth, scrollWidth: document.documentElement.scrollWidth, heads: []};
  document.querySelectorAll("table.lb thead th").forEach(function (th) {
    var cs = getComputedStyle(th);
    var inner = th.clientHeight - parseFloat(cs.paddingTop) - parseFloat(cs.paddingBottom);
    out.heads.push([th.textContent, inner / parseFloat(cs.lineHeight)]);
  });
  var table = document.querySelector("section[id^='finetune'] table.lb");
  table.querySelectorAll("thead th")[0].click();               // sort by backbone, A to Z
  out.sorted = Array.prototype.map.call(table.querySelectorAll("tbody tr"), function (tr) {
    return (tr.classList.contains("group") ? "group:" : "") + tr.cells[0].textContent;
  });
  var pre = document.createElement("pre");
  pre.id = "measured";
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>
"""


@pytest.fixture(scope="module")
def layout(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("browser")
    board = build_leaderboard(paper_scale_store(tmp / "results.sqlite"))
    page = write_board(board, tmp / "board.html", "html", tmp / "figures")
    probe = tmp / "probe.html"
    probe.write_text(page.replace("</body>", MEASURE + "</body>"))
    proc = subprocess.run([BROWSER, "--headless", "--disable-gpu", "--no-sandbox", "--hide-scrollbars",
                           "--window-size=1400,1000", "--virtual-time-budget=5000", "--dump-dom",
                           probe.as_uri()], capture_output=True, text=True, timeout=120)
    found = re.search(r'<pre id="measured">(.*?)</pre>', proc.stdout, re.S)
    assert found, f"the page reported nothing (exit {proc.returncode}): {proc.stderr[-2000:]}"
    return json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))


def test_no_horizontal_overflow_at_1400_px(layout):
    assert layout["innerWidth"] == 1400
    assert layout["scrollWidth"] <= layout["innerWidth"]


def test_every_table_header_is_on_one_or_two_lines(layout):
    assert len(layout["heads"]) > 40
    too_tall = [(text, round(lines, 2)) for text, lines in layout["heads"] if lines > 2.2]
    assert too_tall == []


def test_sorting_keeps_paper_rows_in_their_own_group(layout):
    rows = layout["sorted"]
    group = rows.index("group:the MAE paper")
    measured, paper = rows[:group], rows[group + 1:]
    assert measured == sorted(measured) and len(measured) == 5
    assert paper and all(r.endswith("(paper)") for r in paper)
