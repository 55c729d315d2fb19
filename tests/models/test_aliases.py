"""Alias table and resolving specs that need no network and no model weights."""

from __future__ import annotations

import pytest

from itictl.errors import BadInputError, NotFoundError
from itictl.models import resolve_model
from itictl.models.aliases import HONEST_ALIASES, HUB_ALIASES, lookup_alias

REFERENCE_NAMES = ["llama_7B", "alpaca_7B", "vicuna_7B", "llama2_chat_7B", "llama2_chat_13B", "llama2_chat_70B",
                   "llama3_8B", "llama3_8B_instruct", "llama3_70B", "llama3_70B_instruct"]


def test_reference_names_map_to_hub_ids():
    assert sorted(HUB_ALIASES) == sorted(REFERENCE_NAMES)
    assert lookup_alias("llama2_chat_7B").target == "meta-llama/Llama-2-7b-chat-hf"
    assert lookup_alias("llama3_70B_instruct").target == "meta-llama/Meta-Llama-3-70B-Instruct"
    assert lookup_alias("llama_7B").target == "huggyllama/llama-7b"
    for name, repo in HUB_ALIASES.items():
        assert repo.count("/") == 1, name


def test_honest_names_are_the_published_baked_models():
    a = lookup_alias("honest_llama2_chat_7B")
    assert (a.kind, a.target) == ("hub", "jujipotle/honest_llama2_chat_7B")
    assert len(HONEST_ALIASES) == 6 and all(v.startswith("jujipotle/honest_") for v in HONEST_ALIASES.values())


def test_case_insensitive_lookup_and_embedded_names():
    assert lookup_alias("LLAMA2_CHAT_7b").name == "llama2_chat_7B"
    assert lookup_alias("smollm2").kind == "embedded"
    assert lookup_alias("smollm2_135M_instruct").kind == "embedded"
    assert lookup_alias("gpt-17") is None


def test_local_alias_uses_env_root(tmp_path, monkeypatch, store):
    from tests.models.tiny import tiny_folder

    monkeypatch.setenv("ITICTL_LOCAL_MODELS", str(tmp_path / "baked"))
    with pytest.raises(NotFoundError, match="ITICTL_LOCAL_MODELS|local folder"):
        resolve_model("local_llama2_chat_7B", store)
    tiny_folder(tmp_path / "baked" / "llama2_chat_7B_seed_42_top_48_heads_alpha_15")
    ref = resolve_model("local_llama2_chat_7B", store)
    assert ref.source == "folder" and ref.name == "local_llama2_chat_7B"
    assert ref.location.endswith("llama2_chat_7B_seed_42_top_48_heads_alpha_15")
    assert ref.identity["source"] == "folder" and "model.safetensors" in ref.identity["digests"]


def test_unknown_alias_lists_close_matches(store):
    with pytest.raises(NotFoundError) as ei:
        resolve_model("llama2_chat_7b_typo", store)
    assert "llama2_chat_7B" in ei.value.hint
    with pytest.raises(NotFoundError) as ei:
        resolve_model("lama3_8B_instrct", store)
    assert "llama3_8B_instruct" in ei.value.hint
    assert "\n" not in ei.value.one_line()


def test_missing_path_is_not_found(tmp_path, store):
    with pytest.raises(NotFoundError, match="no model file or folder"):
        resolve_model(str(tmp_path / "nope"), store)
    with pytest.raises(NotFoundError):
        resolve_model("./missing.gguf", store)


def test_revision_only_for_hub(tmp_path, store):
    from tests.models.tiny import tiny_folder

    tiny_folder(tmp_path / "m")
    with pytest.raises(BadInputError, match="--revision"):
        resolve_model(str(tmp_path / "m"), store, revision="main")


def test_folder_without_config_or_weights(tmp_path, store):
    (tmp_path / "empty").mkdir()
    with pytest.raises(BadInputError, match="config.json"):
        resolve_model(str(tmp_path / "empty"), store)
    (tmp_path / "empty" / "config.json").write_text("{}")
    with pytest.raises(BadInputError, match="weight"):
        resolve_model(str(tmp_path / "empty"), store)
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(BadInputError, match="not a .gguf"):
        resolve_model(str(tmp_path / "notes.txt"), store)
