"""`itictl report` of a small real eval on the embedded model (12 questions, 2 folds, K=4, α 0 and 15,
MC + CE/KL; the same options as tests/evaluate/test_eval_integration.py, so a full run evaluates
once and this test only draws): the summary rows match eval.json's means, CIs and paired changes, the figures are
inline PNGs (heatmap included), and the lineage lists exactly the eval's ancestors in the store."""

from __future__ import annotations

from tests.helpers import run_cli
from tests.report import pages


def test_report_of_a_small_embedded_eval(embedded, session_store, tqa_dir, wikitext_path, tmp_path):
    root = str(session_store.root)
    ev = run_cli("--store", root, "eval", "--data", str(tqa_dir), "--limit-questions", "12", "--heads", "4",
                 "--alpha", "0,15", "--metrics", "mc,judge,ce,kl", "--text", str(wikitext_path), "--text-samples", "8",
                 "--device", "cpu", "--dtype", "float32", "--json")
    assert ev.code == 0, ev.stderr
    key = ev.json()["key"]
    out = tmp_path / "report.html"
    r = run_cli("--store", root, "report", key[:16], "-o", str(out), "--json")
    assert r.code == 0, r.stderr
    doc, page = r.json(), pages.parse(out)
    assert doc["key"] == key and doc["focus"] == "K=4, α=15" and doc["path"] == str(out.resolve())

    settings = session_store.get(key).read_json("eval.json")["settings"]
    rows = {(x["setting"], x["metric"]): x for x in pages.summary(page)}
    for s in settings:
        name = "baseline (α = 0)" if s["alpha"] == 0 else "K=4, α=15"
        for m in ("MC1", "MC2", "MC3", "CE Loss", "KL wrt Original"):
            row = rows[(name, m)]
            assert row["mean"] == f"{s['mean'][m]:.4f}" and row["ci"] == pages.ci_text(s["ci95"][m])
            if s["alpha"]:
                assert row["delta"] == f"{s['delta_vs_alpha0'][m]['delta']:+.4f}"
                assert row["delta_ci"] == pages.ci_text(s["delta_vs_alpha0"][m]["ci95"])
    assert len(rows) == 10

    imgs = dict(pages.images(page))
    assert {"MC2 and True×Info against α", "CE loss against α", "KL wrt the unsteered model against α",
            "probe accuracy heatmap", "per-category change"} == set(imgs)
    assert imgs["probe accuracy heatmap"].shape[0] > 300  # 30 layers of SmolLM2

    keys = pages.ancestors(session_store, key)
    listed = {row[1]: row for row in pages.lineage_rows(page)}
    assert set(listed) == keys
    assert {row[0] for row in listed.values()} == {"model", "dataset", "activations", "probes", "intervention", "eval"}
    assert all(row[4] == f"itictl store show {k[:12]}" for k, row in listed.items())
    assert not pages.answer_rows(page)  # no judge configured: nothing generated
    assert "True: no judge configured" in " ".join(page.text_content().split())
