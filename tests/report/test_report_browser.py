"""The report in a real headless Chromium: after load, the summary table is laid out with its rows,
every inline image decoded to its natural size, the lineage SVG has a box per artifact, and a
screenshot of the page is drawn (not blank). Skips only when no chromium binary exists."""

from __future__ import annotations

import json
import re
import subprocess

import numpy as np

# Appended to a copy of the report (the report itself has no script): writes what the browser laid
# out into the DOM, which --dump-dom then prints.
PROBE = """<script>
window.addEventListener("load", () => {
  const box = (el) => el ? el.getBoundingClientRect() : {width: 0, height: 0};
  const table = document.querySelector("table.summary");
  const out = {
    images: [...document.images].map((i) => [i.alt, i.complete, i.naturalWidth, i.naturalHeight, box(i).width]),
    summaryRows: table ? table.querySelectorAll("tr").length : 0,
    summarySize: [box(table).width, box(table).height],
    lineageBoxes: document.querySelectorAll("svg.lineage rect").length,
    lineageSize: [box(document.querySelector("svg.lineage")).width, box(document.querySelector("svg.lineage")).height],
  };
  const pre = document.createElement("pre");
  pre.id = "itictl-browser-check";
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>"""

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run", "--disable-extensions",
         "--allow-file-access-from-files", "--virtual-time-budget=10000"]


def _chromium(binary, tmp_path, *args, timeout=120):
    profile = tmp_path / "profile"
    return subprocess.run([binary, *FLAGS, f"--user-data-dir={profile}", *args], capture_output=True, text=True,
                          timeout=timeout, check=False)


def test_page_renders_in_headless_chromium(chromium, synthetic, rendered, tmp_path):
    doc, path = rendered
    page = tmp_path / "checked.html"
    page.write_text(path.read_text(encoding="utf-8").replace("</body>", PROBE + "</body>"), encoding="utf-8")
    r = _chromium(chromium, tmp_path, "--dump-dom", page.as_uri())
    m = re.search(r'<pre id="itictl-browser-check">(.*?)</pre>', r.stdout, re.S)
    assert m, f"no check output from chromium (rc {r.returncode}): {r.stderr[-2000:]}"
    got = json.loads(m.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    assert len(got["images"]) == doc["images"] == 5
    for alt, complete, w, h, shown in got["images"]:
        assert complete and w > 100 and h > 100 and shown > 50, alt  # decoded and laid out
    assert got["summaryRows"] == len(synthetic.doc["settings"]) + 1 and min(got["summarySize"]) > 100
    assert got["lineageBoxes"] == len(doc["lineage"]) and min(got["lineageSize"]) > 50


def test_screenshot_is_drawn(chromium, rendered, tmp_path):
    from matplotlib.image import imread

    shot = tmp_path / "shot.png"
    r = _chromium(chromium, tmp_path, "--hide-scrollbars", "--window-size=1280,2400", f"--screenshot={shot}",
                  rendered[1].as_uri())
    assert shot.is_file(), f"no screenshot (rc {r.returncode}): {r.stderr[-2000:]}"
    px = imread(shot)
    assert px.shape[:2] == (2400, 1280)
    rgb = px[..., :3].reshape(-1, 3)
    assert (rgb.min(axis=1) < 0.5).mean() > 0.01  # text and figures, not an empty white page
    assert len(np.unique((rgb[::11] * 255).astype(np.uint8), axis=0)) > 200  # the figures' colours
