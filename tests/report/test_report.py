"""`itictl report` on a synthetic eval (known numbers, no model): the summary rows carry the eval's
CIs and paired changes, the figures are inline PNGs, the lineage lists every ancestor key, answers
pair α = 0 with the steered setting, nothing on the page needs the network; bad refs write nothing."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.helpers import run_cli
from tests.report import pages
from tests.report.conftest import FOLDS, HEADS, MC2_BASE, MC2_STEER


def _report(syn, path, *args):
    r = run_cli("--store", str(syn.store.root), "report", *args, "-o", str(path), "--json")
    assert r.code == 0, r.stderr
    return r.json()


def _fold_mean(values):
    return float(np.mean([np.mean([values[q] for q in qs]) for qs in FOLDS]))


def test_summary_rows_carry_cis_and_paired_changes(synthetic, rendered):
    doc, path = rendered
    assert doc["key"] == synthetic.eval_key and doc["focus"] == "K=2, α=5"  # no REF: last-eval
    rows = {(r["setting"], r["metric"]): r for r in pages.summary(pages.parse(path))}
    for s in synthetic.doc["settings"]:
        name = "baseline (α = 0)" if s["alpha"] == 0 else "K=2, α=5"
        for m, v in s["mean"].items():
            r = rows.pop((name, m))
            assert r["mean"] == f"{v:.4f}" and r["ci"] == pages.ci_text(s["ci95"][m])
            if s["alpha"] == 0:
                assert r["delta"] == "–" and r["base"]
            else:
                d = s["delta_vs_alpha0"][m]
                assert r["delta"] == f"{d['delta']:+.4f}" and r["delta_ci"] == pages.ci_text(d["ci95"])
                assert r["sig"] == d["excludes_zero"] and not r["base"]
    assert not rows  # no row the eval does not have
    steered = {(r["metric"]): r for r in pages.summary(pages.parse(path)) if r["setting"] == "K=2, α=5"}
    assert steered["MC2"]["delta"] == f"{_fold_mean(MC2_STEER) - _fold_mean(MC2_BASE):+.4f}"
    assert steered["KL wrt Original"]["sig"]  # every sample's KL rose


def test_figures_are_inline_pngs_and_the_heatmap_marks_the_heads(rendered):
    doc, path = rendered
    imgs = dict(pages.images(pages.parse(path)))
    assert doc["images"] == len(imgs) == 5
    assert set(imgs) == {"MC2 and True×Info against α", "CE loss against α", "KL wrt the unsteered model against α",
                         "probe accuracy heatmap", "per-category change"}
    for alt, px in imgs.items():
        assert px.shape[0] > 100 and px.shape[1] > 100, alt
        assert len(np.unique(px.reshape(-1, px.shape[2])[::7], axis=0)) > 10, alt  # drawn, not blank
    red = lambda px: (px[..., 0] > 0.85) & (px[..., 1] < 0.2) & (px[..., 2] < 0.2)  # noqa: E731
    assert red(imgs["probe accuracy heatmap"]).sum() > 4 * len(HEADS) * 10  # the boxes around the chosen heads
    assert red(imgs["CE loss against α"]).sum() == 0


def test_lineage_lists_every_ancestor_with_store_show_hints(synthetic, rendered):
    doc, path = rendered
    page = pages.parse(path)
    keys = pages.ancestors(synthetic.store, synthetic.eval_key)
    rows = pages.lineage_rows(page)
    assert {r[1] for r in rows} == keys == set(doc["lineage"]) and len(keys) == 9
    for kind, key, _roles, _what, hint in rows:
        assert hint == f"itictl store show {key[:12]}" and synthetic.store.get(key).kind == kind
    by_key = {r[1]: r for r in rows}
    assert "intervention.fold0.k2.a5" in by_key[synthetic.intervention_key][2]
    assert by_key[synthetic.eval_key][3] == "6 questions, ce,judge,kl,mc"
    svg = page.xpath("//svg")[0]
    assert len(svg.xpath(".//rect")) == 9
    n_edges = sum(len(synthetic.store.get(k).parents) for k in keys)
    assert len(svg.xpath(".//line")) == n_edges == 17  # eval 7, activations 2 × 2, probes 2 × 1, interventions 2 × 2


def test_answers_pair_baseline_and_steered_with_verdicts(synthetic, rendered, tmp_path):
    rows = pages.answer_rows(pages.parse(rendered[1]))
    assert [r[0][0] for r in rows] == [str(q) for q in range(6)]
    (idx, question, base, steered), cls = rows[0]
    assert question == "Question number 0? Health"
    assert base == "answer 0 at alpha 0 true: no (0.20); info: yes (0.90)"
    assert steered == "answer 0 at alpha 5 true: yes (0.80); info: yes (0.90)" and cls == "changed"
    assert rows[1][1] == ""  # the same answer both ways is not highlighted
    two = _report(synthetic, tmp_path / "s.html", "--samples", "2")
    assert two["answers"] == 2
    picked = [int(r[0][0]) for r in pages.answer_rows(pages.parse(tmp_path / "s.html"))]
    from itictl.report import load_source
    from itictl.report.sections import answer_samples

    again = [a["question_index"] for a in answer_samples(load_source(synthetic.store, None), 2)]
    assert len(picked) == 2 and picked == sorted(picked) and picked == again  # seeded: the same sample each time


def test_category_changes(synthetic):
    from itictl.report import load_source
    from itictl.report.sections import category_rows

    metric, rows = category_rows(load_source(synthetic.store, None))
    assert metric == "MC2"
    assert [(r["category"], r["n"]) for r in rows] == [("Law", 3), ("Health", 2), ("Misconceptions", 1)]
    assert [r["delta"] for r in rows] == pytest.approx([-0.1 / 3, 0.1, 0.6])


def test_page_needs_no_network(rendered):
    page = pages.parse(rendered[1])
    assert not page.xpath("//script | //link | //iframe | //object")
    for el in page.xpath("//*[@src or @href]"):
        ref = el.get("src") or el.get("href")
        assert ref.startswith(("data:", "#")), ref
        if ref.startswith("#"):
            assert page.xpath(f"//*[@id='{ref[1:]}']"), ref  # every in-page link has its target
    assert "url(" not in rendered[1].read_text(encoding="utf-8")


@pytest.mark.parametrize("args, code, says", [
    (["nosuchref"], 3, "unknown ref 'nosuchref'"),
    (["PROBES"], 4, "is a probes object; a report is made from: eval"),
    (["--setting", "2,7"], 4, "has no setting K=2, α=7"),
    (["--setting", "two"], 4, "invalid --setting 'two'"),
    (["--samples", "-1"], 4, "--samples must be ≥ 0"),
])
def test_bad_input_is_one_line_and_writes_nothing(synthetic, tmp_path, args, code, says):
    args = [synthetic.probes_key[:10] if a == "PROBES" else a for a in args]
    r = run_cli("--store", str(synthetic.store.root), "report", *args, "-o", str(tmp_path / "r.html"))
    assert r.code == code and says in r.stderr
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("error: ")
    assert not (tmp_path / "r.html").exists()


def test_output_must_be_a_file_in_an_existing_folder(synthetic, tmp_path):
    for target, says in ((tmp_path / "missing" / "r.html", "does not exist"), (tmp_path, "is a directory")):
        r = run_cli("--store", str(synthetic.store.root), "report", "-o", str(target))
        assert r.code == 4 and says in r.stderr
    assert not (tmp_path / "missing").exists()


def test_an_alpha0_only_eval_without_per_question_rows(store, tmp_path):
    from tests.report.conftest import _put

    setting = {"heads": 0, "alpha": 0.0, "folds": [{"MC2": 0.4}], "mean": {"MC2": 0.4, "MC1": None}}
    key = _put(store, "eval", {"alphas": [0.0]}, {}, {"eval.json": {"settings": [setting], "skipped": {"True": "no judge"}}})
    r = run_cli("--store", str(store.root), "report", key[:8], "-o", str(tmp_path / "r.html"), "--json")
    assert r.code == 0, r.stderr
    doc, page = json.loads(r.stdout), pages.parse(tmp_path / "r.html")
    assert doc["focus"] is None and doc["answers"] == 0 and doc["images"] == 1  # MC2 at α = 0 only
    assert [(x["metric"], x["mean"], x["ci"], x["delta"]) for x in pages.summary(page)] == [("MC2", "0.4000", "–", "–")]
    text = " ".join(page.text_content().split())
    assert "No probes behind this report" in text and "True: no judge" in text and "No generated answers" in text


def test_a_long_column_of_the_lineage_graph_is_cut_to_one_more_box(store):
    from itictl.report.lineage import MAX_BOXES, walk
    from tests.report.conftest import _put

    model = _put(store, "model", {"source": "gguf", "sha256": "ef" * 32}, {}, {"model.json": "{}"})
    kids = {f"trial.{i}": _put(store, "tune-trial", {"i": i}, {"model": model}, {"t.json": "{}"}) for i in range(MAX_BOXES + 6)}
    top = _put(store, "tune", {"objective": "mc2"}, kids, {"tune.json": "{}"})
    lin = walk(store, top)
    assert len(lin.nodes) == MAX_BOXES + 8 and sum(n.hidden for n in lin.nodes) == 6
    assert [t for _, _, t in lin.more] == ["+6 more tune-trial"]
    assert lin.height < (MAX_BOXES + 2) * 60 + 20  # the graph stays short; the table lists all
