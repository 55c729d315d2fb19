"""Reading a written report back with an HTML parser (lxml): the summary rows, the inline images
(decoded), the lineage keys and the answer rows."""

from __future__ import annotations

import base64
import io
from pathlib import Path

PNG_URI = "data:image/png;base64,"


def parse(path: Path):
    import lxml.html

    return lxml.html.fromstring(Path(path).read_bytes())


def _cells(tr) -> list[str]:
    return [" ".join(" ".join(td.itertext()).split()) for td in tr.xpath("./td")]  # <br> as a space


def summary(doc) -> list[dict]:
    """One dict per (setting, metric) cell with a value: setting, metric, mean, ci, delta, delta_ci
    ('–' where absent), sig (the change is shown bold), base (the α = 0 row)."""
    table = doc.xpath("//table[@class='summary']")[0]
    metrics = [" ".join(th.text_content().split()) for th in table.xpath("./tr[1]/th")][1:]
    out = []
    for tr in table.xpath("./tr[td]"):
        setting = " ".join(tr.xpath("./th")[0].text_content().split())
        for metric, td in zip(metrics, tr.xpath("./td")):
            def span(cls, td=td):
                got = td.xpath(f"./span[contains(concat(' ', @class, ' '), ' {cls} ')]")
                return " ".join(got[0].text_content().split()) if got else "–"

            if span("mean") == "–":
                continue
            cis = td.xpath("./span[contains(concat(' ', @class, ' '), ' ci ')]")
            delta = span("delta")
            out.append({"setting": setting, "metric": metric, "mean": span("mean"),
                        "ci": " ".join(cis[0].text_content().split()),
                        "delta": delta[2:] if delta.startswith("Δ ") else delta,
                        "delta_ci": " ".join(cis[1].text_content().split()) if len(cis) > 1 else "–",
                        "sig": bool(td.xpath("./span[contains(@class, 'sig')]")), "base": "base" in tr.get("class", "")})
    return out


def images(doc) -> list[tuple[str, "object"]]:
    """(alt, pixels [h, w, channels] as floats) of every <img>; each must be an inline PNG."""
    from matplotlib.image import imread

    out = []
    for img in doc.xpath("//img"):
        src = img.get("src")
        assert src.startswith(PNG_URI), src[:40]
        raw = base64.b64decode(src[len(PNG_URI):], validate=True)
        assert raw[:8] == b"\x89PNG\r\n\x1a\n"
        out.append((img.get("alt"), imread(io.BytesIO(raw), format="png")))
    return out


def lineage_rows(doc) -> list[list[str]]:
    return [_cells(tr) for tr in doc.xpath("//table[@class='lineage']/tr[td]")]


def answer_rows(doc) -> list[tuple[list[str], str]]:
    return [(_cells(tr), tr.get("class", "")) for tr in doc.xpath("//table[@class='answers']/tr[td]")]


def ancestors(store, key: str) -> set[str]:
    """The key and every ancestor, read from the manifests (independently of itictl.report)."""
    seen, todo = set(), [key]
    while todo:
        k = todo.pop()
        if k not in seen:
            seen.add(k)
            todo.extend(store.get(k).parents.values())
    return seen


def ci_text(ci) -> str:
    return f"[{ci[0]:.4f}, {ci[1]:.4f}]"
