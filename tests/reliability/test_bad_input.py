"""Bad-input matrix: every command, hostile or broken inputs. Each case must exit with its documented
code (docs/exit-codes.md), print exactly one `error: …` line on stderr (no traceback unless
ITICTL_DEBUG=1) and write nothing into the store (objects/ and refs/ unchanged)."""

from __future__ import annotations

import csv
import io
import json
import resource
import subprocess

import pytest

from tests.helpers import run_cli
from tests.reliability.harness import copy_store, finish, objects_listing, one_error_line, refs_listing, run, spawn


@pytest.fixture(scope="module")
def files(tmp_path_factory, base):
    """Broken inputs, written once: data dirs, prompt files, fake GGUFs."""
    d = tmp_path_factory.mktemp("bad")
    src = base.data
    mc = json.loads((src / "mc_task.json").read_text(encoding="utf-8"))
    f = {}

    def data(name: str, csv_bytes: bytes | None, mc_text: str | None) -> str:
        p = d / name
        p.mkdir()
        if csv_bytes is not None:
            (p / "TruthfulQA.csv").write_bytes(csv_bytes)
        if mc_text is not None:
            (p / "mc_task.json").write_text(mc_text, encoding="utf-8")
        return str(p)

    header = (src / "TruthfulQA.csv").read_text(encoding="utf-8").splitlines()[0] + "\n"
    f["garbled_csv"] = data("garbled", bytes(range(256)) * 40, json.dumps(mc[:3]))
    f["latin1_csv"] = data("latin1", header.encode() + "Adversarial,Misc,Caf\xe9 ?,x,y,z,w\n".encode("latin-1"),
                           json.dumps(mc[:3]))
    f["empty_dataset"] = data("empty", header.encode(), "[]")
    f["no_mc"] = data("nomc", (src / "TruthfulQA.csv").read_bytes(), None)
    f["bad_mc"] = data("badmc", (src / "TruthfulQA.csv").read_bytes(), '[{"question": "unterminated')
    f["missing_dir"] = str(d / "does-not-exist")
    rows = list(csv.reader(io.StringIO((src / "TruthfulQA.csv").read_text(encoding="utf-8"))))
    qcol = rows[0].index("Question")
    keep = {m["question"] for m in mc[:3]}
    buf = io.StringIO()
    csv.writer(buf).writerows([rows[0]] + [r for r in rows[1:] if r[qcol] in keep])
    f["mini"] = data("mini", buf.getvalue().encode("utf-8"), json.dumps(mc[:3]))
    (d / "prefix-latin1.txt").write_bytes("Q: caf\xe9 \xff\xfe A:".encode("latin-1"))
    f["latin1_prompt"] = str(d / "prefix-latin1.txt")
    (d / "junk.gguf").write_bytes(b"this is not a gguf file at all" * 10)
    f["junk_gguf"] = str(d / "junk.gguf")
    import gguf
    import numpy as np

    w = gguf.GGUFWriter(str(d / "cv.gguf"), "controlvector")
    w.add_string("controlvector.model_hint", "llama")
    w.add_tensor("direction.1", np.ones(8, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    f["cv_gguf"] = str(d / "cv.gguf")
    (d / "notamodel").mkdir()
    (d / "notamodel" / "config.json").write_text('{"model_type": "no-such-arch-xyz"}')
    f["bad_arch_dir"] = str(d / "notamodel")
    return f


def _cases():
    def acts(k):
        return k["acts"]

    C = []

    def case(id_, code, fn):
        C.append(pytest.param(fn, code, id=id_))

    # models
    case("unknown-alias", 3, lambda k, f, t: ["extract", "-m", "llama99_nope_7B", "--data", k["data"], "--limit", "4"])
    case("gguf-not-gguf", 4, lambda k, f, t: ["extract", "-m", f["junk_gguf"], "--data", k["data"], "--limit", "4"])
    case("gguf-control-vector", 4, lambda k, f, t: ["extract", "-m", f["cv_gguf"], "--data", k["data"], "--limit", "4"])
    case("folder-no-weights", 4, lambda k, f, t: ["extract", "-m", f["bad_arch_dir"], "--data", k["data"], "--limit", "4"])
    # data files
    case("data-missing-dir", 3, lambda k, f, t: ["extract", "-m", k["tiny"], "--data", f["missing_dir"], "--limit", "4"])
    case("data-no-mc-file", 3, lambda k, f, t: ["extract", "-m", k["tiny"], "--data", f["no_mc"], "--limit", "4"])
    case("data-garbled-csv", 4, lambda k, f, t: ["extract", "-m", k["tiny"], "--data", f["garbled_csv"], "--limit", "4"])
    case("data-non-utf8-csv", 4, lambda k, f, t: ["extract", "-m", k["tiny"], "--data", f["latin1_csv"], "--limit", "4"])
    case("data-bad-mc-json", 4, lambda k, f, t: ["extract", "-m", k["tiny"], "--data", f["bad_mc"], "--limit", "4"])
    case("data-empty", 4, lambda k, f, t: ["extract", "-m", k["tiny"], "--data", f["empty_dataset"], "--limit", "4"])
    case("unknown-format", 4, lambda k, f, t: ["extract", "-m", k["tiny"], "--data", k["data"], "-d", "tqa_nope"])
    C.append(pytest.param(lambda k, f, t: ["eval", "--model", k["tiny"], "--data", k["data"], "--many-shot-prefix",
                                           f["latin1_prompt"], "--limit-questions", "4", "--alpha", "0"], 4,
                          id="eval-non-utf8-prefix"))
    case("eval-missing-text", 3, lambda k, f, t: ["eval", "--model", k["tiny"], "--data", k["data"], "--text",
                                                  str(t / "nope.txt"), "--limit-questions", "4", "--alpha", "0"])
    # refs
    case("ref-unknown", 3, lambda k, f, t: ["probe", "-a", "no-such-ref"])
    case("ref-ambiguous", 4, lambda k, f, t: ["probe", "-a", k["acts"][:5]])
    case("ref-slash", 4, lambda k, f, t: ["probe", "-a", "../../etc/passwd"])
    case("ref-dotdot", 4, lambda k, f, t: ["store", "show", ".."])
    case("ref-nul", 4, lambda k, f, t: ["probe", "-a", "good\x00ref"])
    case("ref-wrong-kind", 4, lambda k, f, t: ["probe", "-a", k["probes"]])
    case("tag-slash", 4, lambda k, f, t: ["store", "tag", "a/b", k["acts"]])
    case("tag-dotdot", 4, lambda k, f, t: ["store", "tag", "../evil", k["acts"]])
    case("tag-nul", 4, lambda k, f, t: ["store", "tag", "ev\x00il", k["acts"]])
    case("rm-unknown", 3, lambda k, f, t: ["store", "rm", "ffffffffffff"])
    case("ref-corrupt-file", 5, lambda k, f, t: ["probe", "-a", "broken"])
    case("malformed-manifest", 5, lambda k, f, t: ["export", k["eval"], str(t / "x")])
    # numbers
    for v in ("nan", "inf", "-inf"):
        case(f"alpha-{v}", 4, lambda k, f, t, v=v: ["intervene", "-p", k["probes"], "--tuning", k["tune"], "-K", "2", "-A", v])
    case("eval-alpha-nan", 4, lambda k, f, t: ["eval", "--model", k["tiny"], "--data", k["data"], "--alpha", "nan"])
    case("K-zero", 4, lambda k, f, t: ["intervene", "-p", k["probes"], "--tuning", k["tune"], "-K", "0", "-A", "5"])
    case("K-too-many", 4, lambda k, f, t: ["intervene", "-p", k["probes"], "--tuning", k["tune"], "-K", "13", "-A", "5"])
    case("eval-K-zero", 4, lambda k, f, t: ["eval", "--model", k["tiny"], "--data", k["data"], "--heads", "0"])
    case("folds-one", 4, lambda k, f, t: ["probe", "-a", k["acts"], "--folds", "1"])
    case("folds-more-than-questions", 4, lambda k, f, t: ["probe", "-a", k["acts"], "--folds", "40"])
    case("fold-out-of-range", 4, lambda k, f, t: ["probe", "-a", k["acts"], "--folds", "2", "--fold", "2"])
    case("eval-folds-one", 4, lambda k, f, t: ["eval", "--model", k["tiny"], "--data", k["data"], "--folds", "1"])
    case("eval-folds-gt-questions", 4, lambda k, f, t: ["eval", "--model", k["tiny"], "--data", k["data"], "--folds", "5",
                                                        "--limit-questions", "3"])
    for v in ("0", "1", "-0.5", "1.5", "nan"):
        case(f"val-ratio-{v}", 4, lambda k, f, t, v=v: ["probe", "-a", k["acts"], "--val-ratio", v])
    case("eval-val-ratio-1", 4, lambda k, f, t: ["eval", "--model", k["tiny"], "--data", k["data"], "--val-ratio", "1"])
    case("unknown-direction", 4, lambda k, f, t: ["intervene", "-p", k["probes"], "--tuning", k["tune"], "-K", "2",
                                                  "-A", "5", "--direction", "sideways"])
    case("eval-unknown-metric", 4, lambda k, f, t: ["eval", "--model", k["tiny"], "--data", k["data"], "--metrics", "vibes"])
    # other commands
    case("bake-not-intervention", 4, lambda k, f, t: ["bake", k["acts"]])
    case("export-unknown-format", 4, lambda k, f, t: ["export", k["iv"], str(t / "x"), "--format", "onnx"])
    case("push-bad-repo-id", 4, lambda k, f, t: ["push", k["baked"], "--repo", "../../x", "--dry-run"])
    case("push-no-token", 7, lambda k, f, t: ["push", k["baked"], "--repo", "someone/tiny"])
    case("import-missing-dir", 3, lambda k, f, t: ["import", "pyvene", str(t / "nope")])
    return C


@pytest.fixture
def bad_store(base, tmp_path):
    store = copy_store(base.store, tmp_path / "s")
    keys = {k: v for k, v in base.keys.items()}
    keys["tiny"] = str(base.tiny)
    keys["data"] = str(base.data)
    # a second (empty) object dir sharing 5 hex chars with acts makes that prefix ambiguous
    a = keys["acts"]
    twin = store / "objects" / a[:2] / (a[2:5] + ("0" if a[5] != "0" else "1") * 59)
    twin.mkdir()
    (store / "refs" / "broken").write_text("not-a-key\n")
    # the eval object's manifest is not JSON
    bad = base.keys["eval"]
    m = store / "objects" / bad[:2] / bad[2:] / "manifest.json"
    m.chmod(0o644)
    m.write_text("{ this is not json")
    return store, keys


@pytest.mark.parametrize("args_fn,code", _cases())
def test_bad_input(bad_store, files, tmp_path, monkeypatch, args_fn, code):
    store, keys = bad_store
    for var in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "ITICTL_DEBUG"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))  # no cached Hub token either
    before, refs = objects_listing(store), refs_listing(store)
    r = run_cli("--store", str(store), *args_fn(keys, files, tmp_path))
    assert r.code == code, f"exit {r.code}, expected {code}: {r.stderr[-1500:]}"
    one_error_line(r)
    assert r.stdout == ""
    assert objects_listing(store) == before, "a failed command wrote into objects/"
    assert refs_listing(store) == refs


def test_traceback_only_with_debug(base, tmp_path):
    store = copy_store(base.store, tmp_path / "s")
    r = run(store, "probe", "-a", base.keys["acts"], "--val-ratio", "2")
    assert r.code == 4 and "Traceback" not in r.stderr
    one_error_line(r)
    r = run(store, "probe", "-a", base.keys["acts"], "--val-ratio", "2", env={"ITICTL_DEBUG": "1"})
    assert r.code == 4 and "Traceback" in r.stderr and r.stderr.rstrip().splitlines()[-1].startswith("error: ")


def test_read_only_store(base, tmp_path):
    """An immutable store (chattr +i: root ignores mode bits) fails with exit 5 and one line."""
    store = copy_store(base.store, tmp_path / "s", drop=(base.keys["probes"],))
    if subprocess.run(["chattr", "-R", "+i", str(store)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not available here")
    try:
        before = objects_listing(store)
        r = run_cli("--store", str(store), "probe", "-a", base.keys["acts"], "--json", "-q")
        assert r.code == 5, r.stderr
        assert "not writable" in one_error_line(r)
        assert objects_listing(store) == before
    finally:
        subprocess.run(["chattr", "-R", "-i", str(store)], check=True)


def test_disk_full_is_a_store_error(base, tmp_path):
    """RLIMIT_FSIZE makes every write past 4 KiB fail with EFBIG (CPython ignores SIGXFSZ): the
    probe's heatmap cannot be written -> exit 5, one line, nothing committed, tmp cleaned."""
    key = base.keys["probes"]
    store = copy_store(base.store, tmp_path / "s", drop=(key,))
    before = objects_listing(store)

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))

    r = finish(spawn(store, *base.args("probes"), preexec_fn=limit))
    assert r.code == 5, r.stderr[-1500:]
    one_error_line(r)
    assert objects_listing(store) == before
    assert not [p for p in (store / "tmp").iterdir() if p.name.startswith(key[:16])]


def test_huge_limit_is_clamped(base, files, tmp_path):
    """--limit is an upper bound: past the end of the dataset (a 3-question copy here) it means the
    whole set, i.e. the very artifact that no --limit gives (params limit null), computed once and
    not duplicated under a key of its own."""
    store = copy_store(base.store, tmp_path / "s")
    common = ["extract", "-m", str(base.tiny), "--data", files["mini"], "--json", "-q"]
    before = objects_listing(store)
    r = run_cli("--store", str(store), *common, "--limit", str(10 ** 12))
    assert r.code == 0 and r.stderr == "", r.stderr[-1000:]
    doc = r.json()
    assert doc["cached"] is False
    full = run_cli("--store", str(store), *common)
    assert full.code == 0 and full.json()["key"] == doc["key"] and full.json()["cached"] is True
    manifest = json.loads((store / "objects" / doc["key"][:2] / doc["key"][2:] / "manifest.json").read_text())
    assert manifest["params"]["limit"] is None
    new = {p.split("/")[0] + p.split("/")[1] for p in objects_listing(store) if p not in before and p.count("/") == 1}
    kinds = sorted(json.loads((store / "objects" / k[:2] / k[2:] / "manifest.json").read_text())["kind"] for k in new)
    assert kinds == ["activations", "dataset"]  # the 3-question dataset and one activations object


# ---- checked before any model work: on a fresh store nothing is written, no model converted ----------
def _before_model_cases():
    def case(id_, code, text, fn):
        return pytest.param(fn, code, text, id=id_)

    return [
        case("extract-data-missing-dir", 3, "does not exist", lambda d, t: ["extract", "--data", str(t / "nope"), "-n", "2"]),
        case("eval-data-missing-dir", 3, "does not exist",
             lambda d, t: ["eval", "--data", str(t / "nope"), "--limit-questions", "4"]),
        case("eval-judge-no-model", 4, "invalid judge spec", lambda d, t: [
            "eval", "--data", d, "--limit-questions", "4", "--metrics", "mc,judge", "--judge", "openai:"]),
        case("eval-info-judge-bad-scheme", 4, "invalid judge spec", lambda d, t: [
            "eval", "--data", d, "--limit-questions", "4", "--metrics", "info", "--info-judge", "gpt4"]),
        case("eval-openai-judge-no-key", 7, "OPENAI_API_KEY", lambda d, t: [
            "eval", "--data", d, "--limit-questions", "4", "--metrics", "judge", "--judge", "openai:ft-x"]),
        case("eval-folds-leave-empty-train", 4, "train part empty", lambda d, t: [
            "eval", "--data", d, "--limit-questions", "2", "--folds", "2", "--alpha", "5"]),
        case("eval-limit-questions-zero", 4, "--limit-questions", lambda d, t: [
            "eval", "--data", d, "--limit-questions", "0"]),
        case("intervene-too-few-questions", 4, "cannot make 2 folds", lambda d, t: [
            "intervene", "-K", "2", "-A", "5", "--data", d, "--limit", "2"]),
        case("intervene-bad-positions", 4, "--positions", lambda d, t: [
            "intervene", "-K", "2", "-A", "5", "--data", d, "--prompt", "Hi", "--positions", "middle"]),
        case("intervene-bad-fold", 4, "--fold", lambda d, t: ["intervene", "-K", "2", "-A", "5", "--data", d, "--fold", "2"]),
        case("probe-too-few-questions", 4, "cannot make 2 folds", lambda d, t: ["probe", "--data", d, "--limit", "2"]),
        case("bake-bad-tag", 4, "invalid ref name", lambda d, t: ["bake", "--tag", "a/b"]),
    ]


@pytest.mark.parametrize("args_fn,code,text", _before_model_cases())
def test_inputs_checked_before_any_model_work(tqa_dir, tmp_path, monkeypatch, args_fn, code, text):
    """Bad options, data folders, judge specs and fold sizes fail with one line and their code on a
    fresh store that stays empty: no `model` object, so the embedded GGUF was never converted."""
    for var in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "ITICTL_DEBUG", "OPENAI_API_KEY", "ITICTL_OPENAI_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    store = tmp_path / "fresh"
    r = run_cli("--store", str(store), *args_fn(str(tqa_dir), tmp_path))
    assert r.code == code, f"exit {r.code}, expected {code}: {r.stderr[-1500:]}"
    assert text in one_error_line(r)
    assert r.stdout == ""
    assert objects_listing(store) == [] and refs_listing(store) == {}
