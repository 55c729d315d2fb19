"""`itictl report last-tune` on a real tune of a tiny random Llama (synthetic TruthfulQA): the
summary shows the outer test scores of α = 0 and the tuned choice with tune.json's CIs and paired
changes, tune's own pareto.png is inlined byte for byte, the lineage lists every trial, and the
heatmap marks fold 0's chosen intervention."""

from __future__ import annotations

import base64

from tests.helpers import run_cli
from tests.report import pages
from tests.tune.conftest import synthetic_questions, text_file, tiny_dir, write_tqa  # noqa: F401 (fixtures)


def _tune(store, tmp_path, model_dir, text):
    from itictl.evaluate.options import EvalOptions
    from itictl.tune.options import TuneOptions
    from itictl.tune.run import run_tune

    data = write_tqa(tmp_path / "tqa", synthetic_questions(24))
    ev = EvalOptions(model=str(model_dir), data_dir=str(data), text=str(text), text_samples=2, val_ratio=0.4,
                     device="cpu", dtype="float32", preset="null", instruction="none")
    return run_tune(store, TuneOptions(eval=ev, heads="2,4", alpha="0,5,40", max_kl=0.002))


def test_report_of_a_tune(store, tmp_path, tiny_dir, text_file):  # noqa: F811 (fixtures)
    art, _, tdoc = _tune(store, tmp_path, tiny_dir, text_file)
    out = tmp_path / "tune.html"
    r = run_cli("--store", str(store.root), "report", "last-tune", "-o", str(out), "--json")
    assert r.code == 0, r.stderr
    doc, page = r.json(), pages.parse(out)
    assert doc["kind"] == "tune" and doc["key"] == art.key and doc["focus"].startswith("tuned (")

    rows = pages.summary(page)
    outer = art.read_json("tune.json")["outer"]
    for group, name in (("alpha0", "baseline (α = 0)"), ("tuned", doc["focus"])):
        mine = {x["metric"]: x for x in rows if x["setting"] == name}
        for m, v in outer[group]["mean"].items():
            assert mine[m]["mean"] == f"{v:.4f}" and mine[m]["ci"] == pages.ci_text(outer[group]["ci95"][m])
            if group == "tuned":
                assert mine[m]["delta"] == f"{outer[group]['delta_vs_alpha0'][m]['delta']:+.4f}"

    imgs = {alt: None for alt, _ in pages.images(page)}
    assert {"probe accuracy heatmap", "per-category change", "MC2 and True×Info against α"} <= set(imgs)
    pareto = page.xpath("//img[starts-with(@alt, 'objective against KL')]")
    assert len(pareto) == 1 and base64.b64decode(pareto[0].get("src").split(",", 1)[1]) == art.file("pareto.png").read_bytes()

    listed = {row[1]: row for row in pages.lineage_rows(page)}
    assert set(listed) == pages.ancestors(store, art.key)
    assert {t["key"] for t in tdoc["trials"]} <= set(listed)
    chosen0 = next(t for t in tdoc["trials"] if t["fold"] == 0 and t["part"] == "test" and t["chosen"])
    iv = store.get(chosen0["key"]).parents["intervention"]
    assert f"the intervention {iv[:12]} shifts" in " ".join(page.text_content().split())

    bad = run_cli("--store", str(store.root), "report", "last-tune", "--setting", "2,5", "-o", str(tmp_path / "x.html"))
    assert bad.code == 4 and "--setting is for eval reports" in bad.stderr and not (tmp_path / "x.html").exists()
