"""Where models run: ``auto``, explicit devices, lists for workers, and clear errors for missing devices.

These run on a CPU-only machine; where a GPU is present the "missing device" cases use one past its count.
"""

from __future__ import annotations

import pytest
import torch

from hybrid_search.device import (
    ENV_VAR,
    PRECISION_ENV_VAR,
    DeviceError,
    autocast_documents,
    document_precision,
    is_cpu,
    requested_device,
    resolve_device,
    resolve_devices,
    worker_devices,
)
from pipelines.cli import main

CUDA = torch.cuda.is_available()
MPS = bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())


@pytest.fixture(autouse=True)
def _no_device_env(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    monkeypatch.delenv(PRECISION_ENV_VAR, raising=False)


def missing_cuda() -> str:
    """A CUDA device this machine does not have."""
    return f"cuda:{torch.cuda.device_count()}" if CUDA else "cuda"


def test_auto_is_cuda_then_mps_then_cpu():
    expected = "cuda:0" if CUDA else "mps" if MPS else "cpu"
    assert resolve_device("auto") == expected
    assert resolve_device(None) == expected  # no flag, no variable: auto
    assert resolve_device("") == expected


def test_explicit_cpu_in_any_case_and_spacing():
    assert resolve_device("cpu") == "cpu"
    assert resolve_device(" CPU ") == "cpu"
    assert is_cpu(resolve_device("cpu"))


def test_the_environment_variable_is_the_default_and_a_flag_overrides_it(monkeypatch):
    monkeypatch.setenv(ENV_VAR, "cpu")
    assert resolve_device(None) == "cpu"
    monkeypatch.setenv(ENV_VAR, missing_cuda())
    assert resolve_device("cpu") == "cpu"  # the flag wins; the variable is not even looked at
    with pytest.raises(DeviceError):
        resolve_device(None)


@pytest.mark.parametrize("spec", ["gpu", "cuda:x", "cuda:-1", "cuda0", "tpu", "cpu:0"])
def test_malformed_devices_are_refused_with_the_choices(spec):
    with pytest.raises(DeviceError, match="unknown device .*auto, cpu, cuda, cuda:N or mps"):
        resolve_device(spec)


def test_an_unavailable_cuda_device_is_a_clear_error():
    with pytest.raises(DeviceError) as caught:
        resolve_device(missing_cuda())
    message = str(caught.value)
    assert missing_cuda() in message
    assert ("no CUDA GPU" in message and "--device cpu or auto" in message) or "CUDA GPU(s): cuda:0.." in message


@pytest.mark.skipif(MPS, reason="this machine has an Apple GPU")
def test_an_unavailable_mps_device_is_a_clear_error():
    with pytest.raises(DeviceError, match="no Apple GPU"):
        resolve_device("mps")


def test_a_device_list_is_for_workers_only():
    with pytest.raises(DeviceError, match="index --workers"):
        requested_device("cpu,cpu")
    assert resolve_devices("cpu") == ["cpu"]
    with pytest.raises(DeviceError, match="twice"):
        resolve_devices("cpu,cpu")
    with pytest.raises(DeviceError, match="empty item"):
        resolve_devices("cpu,")
    with pytest.raises(DeviceError):
        resolve_devices(f"cpu,{missing_cuda()}")


def test_worker_devices_one_per_listed_device_or_round_robin():
    assert worker_devices(["cuda:0", "cuda:1"], None) == ["cuda:0", "cuda:1"]
    assert worker_devices(["cuda:0", "cuda:1"], 4) == ["cuda:0", "cuda:1", "cuda:0", "cuda:1"]
    assert worker_devices(["cpu"], None) == ["cpu"]
    assert worker_devices(["cpu"], 2) == ["cpu", "cpu"]
    with pytest.raises(DeviceError, match="at least 1"):
        worker_devices(["cpu"], 0)
    with pytest.raises(DeviceError, match="give --workers 2"):
        worker_devices(["cuda:0", "cuda:1"], 1)


def test_document_precision_is_float32_off_cuda_and_fp16_by_default_on_it(monkeypatch):
    assert document_precision("cpu") == "fp32"
    assert document_precision("mps") == "fp32"
    assert document_precision("cuda:0") == "fp16"
    monkeypatch.setenv(PRECISION_ENV_VAR, "bf16")
    assert document_precision("cuda:1") == "bf16"
    assert document_precision("cpu") == "fp32"
    monkeypatch.setenv(PRECISION_ENV_VAR, "fp8")
    with pytest.raises(DeviceError, match="fp16, bf16, fp32"):
        document_precision("cuda:0")


def test_encoders_load_on_the_cpu_with_their_fast_paths(splade, minilm):
    assert splade.device == "cpu" and splade.precision == "fp32" and splade.vector_precision == "float32"
    assert splade._fast_documents is not None  # the exact fast SPLADE pass is the CPU path
    assert minilm.device == "cpu" and minilm.vector_precision == "float32"


def test_loading_on_a_missing_device_fails_before_loading_anything():
    from hybrid_search.encoders import DenseEncoder, SparseEncoder
    from hybrid_search.rerank import Reranker

    for load in (SparseEncoder.load, DenseEncoder.load, Reranker.load):
        with pytest.raises(DeviceError):
            load("splade-tiny", device=missing_cuda())


def test_the_gpu_document_path_under_autocast_runs_and_stays_close(demo_docs, minilm, splade):
    """The GPU path (sentence-transformers' batched encode under autocast) exercised on the CPU in bfloat16:
    the same code a GPU runs in fp16, here checked for running and for staying near the float32 vectors."""
    from hybrid_search.encoders import DenseEncoder, SparseEncoder

    texts = [d.full_text for d in demo_docs[:12]]
    reference = minilm.encode_document(texts)
    reduced = DenseEncoder(minilm.model, "minilm", backend="torch")
    reduced.precision = "bf16"
    cosines = (reduced.encode_document(texts) * reference).sum(axis=1)
    assert cosines.min() > 0.999

    sparse = SparseEncoder(splade.model, "splade-tiny", fast=False)
    exact = sparse.encode_document(texts)
    sparse.precision = "bf16"
    with autocast_documents("cpu", "bf16"):
        assert torch.get_autocast_dtype("cpu") == torch.bfloat16
    reduced_vectors = sparse.encode_document(texts)
    overlap = [
        len(set(a.indices) & set(b.indices)) / len(set(a.indices) | set(b.indices))
        for a, b in zip(exact, reduced_vectors)
    ]
    assert min(overlap) > 0.9, overlap  # measured here: 0.96-1.0 (Jaccard of the active dimensions)


def _index_args(tmp_path, *extra: str) -> list[str]:
    corpus = tmp_path / "c.jsonl"
    corpus.write_text('{"_id": "a", "text": "paris is the capital of france"}\n')
    return ["index", str(corpus), "--index", str(tmp_path / "idx"), "--no-progress", *extra]


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (["--device", missing_cuda()], missing_cuda()),
        (["--device", "gpu"], "unknown device 'gpu'"),
        (["--device", "cpu,cpu"], "twice"),
        (["--workers", "0"], "at least 1"),
        (["--shard", "2/2"], "bad --shard '2/2'"),
        (["--shard", "half"], "bad --shard 'half'"),
    ],
)
def test_index_refuses_bad_devices_workers_and_shards_in_one_line(tmp_path, capsys, extra, expected):
    assert main(_index_args(tmp_path, *extra)) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and expected in err and err.count("\n") == 1
    assert not (tmp_path / "idx").exists()  # refused before anything was created


@pytest.mark.parametrize(
    "command",
    [["search", "paris", "--index", "nowhere"], ["bench", "--dataset", "nowhere"], ["ui", "--index", "nowhere"]],
)
def test_search_bench_and_ui_refuse_a_missing_device(capsys, command):
    assert main([*command, "--device", missing_cuda()]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: device ") and err.count("\n") == 1


def test_index_help_documents_device_workers_and_shard(capsys):
    with pytest.raises(SystemExit):
        main(["index", "--help"])
    out = capsys.readouterr().out
    for flag in ("--device", "--workers", "--shard I/N", "cuda:0,cuda:1", "HYBRID_SEARCH_DEVICE"):
        assert flag in out
