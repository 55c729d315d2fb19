"""No pickle: nothing downloaded or stored is loaded with pickle (safetensors, JSON, HDF5, .npy
without objects; torch.load only with weights_only=True), and trust_remote_code is never on by
default. A static scan of src/ plus checks of the real loaders' defaults."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "itictl"
FILES = sorted(SRC.rglob("*.py"))


def calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            yield node


def dotted(func: ast.AST) -> str:
    parts = []
    while isinstance(func, ast.Attribute):
        parts.append(func.attr)
        func = func.value
    if isinstance(func, ast.Name):
        parts.append(func.id)
    return ".".join(reversed(parts))


def kw(call: ast.Call, name: str):
    for k in call.keywords:
        if k.arg == name:
            return k.value
    return None


def is_true(node) -> bool:
    return isinstance(node, ast.Constant) and node.value is True


def test_scanner_sees_the_source_tree():
    assert len(FILES) > 30 and any(p.name == "extract.py" for p in FILES)


def scan(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    problems = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] + ([node.module] if isinstance(node, ast.ImportFrom) else [])
            for n in names:
                if n and n.split(".")[0] in ("pickle", "cPickle", "dill", "joblib", "cloudpickle", "shelve", "marshal"):
                    problems.append(f"line {node.lineno}: imports {n}")
    for c in calls(tree):
        name = dotted(c.func)
        if name.endswith("torch.load"):
            if not is_true(kw(c, "weights_only")):
                problems.append(f"line {c.lineno}: torch.load without weights_only=True")
        if name in ("np.load", "numpy.load") and kw(c, "allow_pickle") is not None and not (
                isinstance(kw(c, "allow_pickle"), ast.Constant) and kw(c, "allow_pickle").value is False):
            problems.append(f"line {c.lineno}: np.load with allow_pickle")
        if name.endswith("read_pickle") or name.endswith("yaml.load") or name.endswith("yaml.unsafe_load"):
            problems.append(f"line {c.lineno}: {name}")
        if is_true(kw(c, "trust_remote_code")):
            problems.append(f"line {c.lineno}: trust_remote_code=True hard-coded")
    for node in ast.walk(tree):  # defaults: def f(..., trust_remote_code=True)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            args = node.args.args + node.args.kwonlyargs
            defaults = [None] * (len(node.args.args) - len(node.args.defaults)) + list(node.args.defaults) \
                + list(node.args.kw_defaults)
            for a, d in zip(args, defaults):
                if a.arg == "trust_remote_code" and is_true(d):
                    problems.append(f"line {node.lineno}: {node.name}(trust_remote_code=True) default")
    return problems


@pytest.mark.parametrize("path", FILES, ids=[p.relative_to(SRC).as_posix() for p in FILES])
def test_no_unsafe_deserialisation(path):
    problems = scan(path)
    assert not problems, f"{path.relative_to(SRC)}: " + "; ".join(problems)


def test_scanner_catches_what_it_forbids(tmp_path):
    """The scan must flag each forbidden pattern (guards against a scanner that finds nothing)."""
    bad = ("import pickle\nimport torch, numpy as np\n"
           "torch.load('x')\nnp.load('y', allow_pickle=True)\n"
           "def f(trust_remote_code=True):\n    pass\nM.from_pretrained('z', trust_remote_code=True)\n")
    p = tmp_path / "bad.py"
    p.write_text(bad)
    msg = "; ".join(scan(p))
    for needle in ("imports pickle", "torch.load without", "allow_pickle", "(trust_remote_code=True) default",
                   "trust_remote_code=True hard-coded"):
        assert needle in msg, needle


def test_loaders_default_to_no_remote_code():
    from itictl.models import ensure_model, load_model

    for fn in (load_model, ensure_model):
        assert inspect.signature(fn).parameters["trust_remote_code"].default is False


def test_stored_numpy_chunks_refuse_pickled_objects(tmp_path):
    """extract's resumable chunks are read with np.load's default allow_pickle=False: an object
    array planted in tmp/KEY.work is rejected (and recomputed), never unpickled."""
    import numpy as np

    from itictl.extract.chunks import load_done

    work = tmp_path / "work"
    work.mkdir()
    plan = {"n": 2}
    (work / "plan.json").write_text('{"layer_wise": false, "n": 2}')
    chunk = work / "chunk_000000"
    chunk.mkdir()
    np.save(chunk / "idx.npy", np.array([object()], dtype=object), allow_pickle=True)
    np.save(chunk / "head.npy", np.zeros((1, 2, 3)))
    state = load_done(work, plan | {"layer_wise": False})
    assert state["done"] == set()
    assert not chunk.exists()
