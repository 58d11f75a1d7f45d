from __future__ import annotations

import pytest

from hybrid_search import models
from hybrid_search.models import ModelNotAvailableError, resolve


def test_builtin_names_resolve_to_real_weights():
    minilm = resolve("minilm")
    assert minilm.source == "package"
    assert (models.Path(minilm.path) / "model.safetensors").exists()
    splade = resolve("splade-tiny")
    assert splade.source == "cache"
    for name in ("config.json", "model.safetensors", "tokenizer.json"):
        assert (models.Path(splade.path) / name).exists()
    assert not (models.Path(splade.path) / "heads.pt").exists()


def test_local_folder_wins(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    assert resolve(str(tmp_path)).source == "local"


def test_hub_id_with_pip_copy_needs_no_network():
    resolved = resolve("sentence-transformers/all-MiniLM-L6-v2")
    assert resolved.source == "package"


def test_other_hub_ids_are_left_to_the_hub():
    assert resolve("naver/splade-v3") == models.ResolvedModel("naver/splade-v3", "naver/splade-v3", "hub")


def test_missing_folder_is_a_clear_error():
    with pytest.raises(ModelNotAvailableError, match="not found"):
        resolve("./no/such/model")


def test_offline_hub_model_names_offline_alternatives(monkeypatch):
    from hybrid_search.encoders import SparseEncoder

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotAvailableError) as info:
        SparseEncoder.load("naver/splade-v3")
    message = str(info.value)
    assert "not reachable" in message and "splade-tiny" in message and "minilm" in message


def test_list_models_reports_availability():
    rows = {row["name"]: row for row in models.list_models()}
    assert rows["splade-tiny"]["available"] == "yes"
    assert rows["minilm"]["kind"] == "dense"


def test_pull_uses_cache_and_rejects_unknown(monkeypatch):
    assert models.pull("splade-tiny") == models.splade_tiny_dir()
    with pytest.raises(ModelNotAvailableError, match="unknown built-in"):
        models.pull("bert-huge")
