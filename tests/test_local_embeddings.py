"""Local all-MiniLM-L6-v2 embeddings (ai.embedding): equal to sentence-transformers, no silent
truncation, int8 close to fp32, graphs built once and read back from the cache.

tests/data/minilm_expected.json holds embeddings computed by the real sentence-transformers on
torch (versions recorded in the file) from the same weights. No database needed; the graphs are
built once per session into a temporary cache directory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from django.core.exceptions import ImproperlyConfigured
from tokenizers import Tokenizer

from ai.embedding import (
    InputTooLong,
    LocalEmbedder,
    embedding_threads,
    estimate_tokens,
    get_embedder,
)
from ai.embedding import cache as embedding_cache
from ai.embedding.minilm import load_tokenizer

ROOT = Path(__file__).resolve().parent.parent
EXPECTED = json.loads((Path(__file__).parent / "data" / "minilm_expected.json").read_text())
SENTENCES = EXPECTED["sentences"]
TEXTS = [sentence["text"] for sentence in SENTENCES]
IDS = [sentence["id"] for sentence in SENTENCES]
OVERLONG = next(sentence for sentence in SENTENCES if sentence["id"] == "overlong")
FITTING = [sentence["text"] for sentence in SENTENCES if sentence["id"] != "overlong"]


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def fp32(model_cache: Path) -> LocalEmbedder:
    return LocalEmbedder.load(cache_dir=model_cache)


@pytest.fixture(scope="session")
def int8(model_cache: Path, fp32: LocalEmbedder) -> LocalEmbedder:
    return LocalEmbedder.load(quantized=True, cache_dir=model_cache)


def _exactly_max_tokens(embedder: LocalEmbedder, text: str) -> str:
    """A prefix of `text` of exactly max_tokens word pieces, [CLS] and [SEP] included."""
    offsets = load_tokenizer().encode(text, add_special_tokens=False).offsets
    return text[: offsets[embedder.max_tokens - 3][1]]


def test_it_matches_sentence_transformers(fp32):
    expected = np.array([sentence["embedding"] for sentence in SENTENCES], dtype=np.float32)
    vectors = fp32.embed(TEXTS, truncate=True)  # the overlong reference was cut by ST at 256
    diffs = np.abs(vectors - expected).max(axis=1)
    report = {name: f"{diff:.2e}" for name, diff in zip(IDS, diffs, strict=True)}
    assert diffs.max() <= 1e-4, report


def test_it_returns_unit_float32_rows_in_input_order(fp32):
    vectors = fp32.embed(FITTING)
    assert vectors.dtype == np.float32
    assert vectors.shape == (len(FITTING), 384) == (len(FITTING), fp32.dimensions)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert fp32.embed([]).shape == (0, 384)
    assert fp32.embed([""]).shape == (1, 384)


def test_it_gives_the_same_vectors_batched_or_one_by_one(fp32):
    batched = fp32.embed(FITTING)
    small_batches = fp32.embed(FITTING, batch_size=2)
    one_by_one = np.vstack([fp32.embed([text]) for text in FITTING])
    np.testing.assert_allclose(batched, one_by_one, atol=1e-6)
    np.testing.assert_allclose(small_batches, one_by_one, atol=1e-6)


def test_it_refuses_overlong_text_naming_count_and_limit(fp32):
    texts = ["short one", OVERLONG["text"], "another"]
    with pytest.raises(InputTooLong) as caught:
        fp32.embed(texts)
    error = caught.value
    assert (error.index, error.tokens, error.limit, error.count) == (1, OVERLONG["tokens"], 256, 1)
    assert OVERLONG["tokens"] > 256
    assert f"{OVERLONG['tokens']} word pieces" in str(error)
    assert "at most 256" in str(error)
    assert "truncate=True" in str(error)


def test_it_truncates_only_when_asked_like_sentence_transformers(fp32):
    vector = fp32.embed([OVERLONG["text"]], truncate=True)[0]
    np.testing.assert_allclose(vector, OVERLONG["embedding"], atol=1e-4)
    cut = fp32.embed([_exactly_max_tokens(fp32, OVERLONG["text"])])[0]
    np.testing.assert_allclose(cut, vector, atol=1e-6)


def test_it_accepts_exactly_max_tokens_without_truncate(fp32):
    text = _exactly_max_tokens(fp32, OVERLONG["text"])
    assert fp32.count_tokens(text) == fp32.max_tokens == 256
    assert fp32.embed([text]).shape == (1, 384)


def test_it_counts_tokens_like_the_tokenizer(fp32):
    tokenizer = Tokenizer.from_file(str(embedding_cache.model_dir() / "tokenizer.json"))
    tokenizer.no_truncation()  # the shipped tokenizer.json truncates at 128 ...
    tokenizer.no_padding()  # ... and pads to 128
    for sentence in SENTENCES:
        counted = fp32.count_tokens(sentence["text"])
        assert counted == len(tokenizer.encode(sentence["text"]).ids)
        assert counted == sentence["tokens"]  # counted by transformers' tokenizer in the ST venv
        assert estimate_tokens(sentence["text"]) == counted - 2  # no [CLS]/[SEP]
    assert fp32.count_tokens_batch(TEXTS) == [sentence["tokens"] for sentence in SENTENCES]
    assert fp32.count_tokens("") == 2


def test_it_keeps_int8_close_to_fp32(fp32, int8):
    cosines = np.sum(fp32.embed(TEXTS, truncate=True) * int8.embed(TEXTS, truncate=True), axis=1)
    assert cosines.min() >= 0.98, dict(zip(IDS, cosines.round(4), strict=True))
    np.testing.assert_allclose(np.linalg.norm(int8.embed(FITTING), axis=1), 1.0, atol=1e-5)
    assert int8.graph_file != fp32.graph_file
    assert int8.graph_file.parent == fp32.graph_file.parent


def test_it_builds_get_embedder_once_per_process(settings, model_cache, fp32, int8):
    settings.LOCAL_MODEL_CACHE_DIR = str(model_cache)
    results: list[LocalEmbedder] = []
    threads = [
        threading.Thread(target=lambda: results.append(get_embedder(quantized=True)))
        for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({id(embedder) for embedder in results}) == 1
    assert get_embedder(quantized=True) is results[0]
    assert results[0].quantized
    assert get_embedder() is get_embedder() is not results[0]
    assert not get_embedder().quantized


def test_it_loads_the_cached_graph_in_a_fresh_process(model_cache, fp32):
    before = fp32.graph_file.stat()
    script = (
        "import sys; from pathlib import Path; from ai.embedding.cache import ensure_graph; "
        "path, built = ensure_graph('fp32', cache_dir=Path(sys.argv[1])); print(built, path)"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    done = subprocess.run(
        [sys.executable, "-c", script, str(model_cache)],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        env=env,
        timeout=120,
    )
    assert done.stdout.split() == ["False", str(fp32.graph_file)]
    after = fp32.graph_file.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    reloaded = LocalEmbedder.load(cache_dir=model_cache)
    assert not reloaded.built_graph
    np.testing.assert_array_equal(reloaded.embed(FITTING), fp32.embed(FITTING))


def test_it_keys_the_cache_by_weights_size_mtime_and_variant(tmp_path):
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"x" * 10)
    os.utime(weights, ns=(1_700_000_000_000_000_000, 1_700_000_000_000_000_000))
    key = embedding_cache.cache_key(weights, "fp32")
    assert key == embedding_cache.cache_key(weights, "fp32")
    assert key != embedding_cache.cache_key(weights, "int8")
    os.utime(weights, ns=(1_700_000_000_000_000_000, 1_700_000_000_000_000_001))
    touched = embedding_cache.cache_key(weights, "fp32")
    assert touched != key
    weights.write_bytes(b"x" * 11)
    os.utime(weights, ns=(1_700_000_000_000_000_000, 1_700_000_000_000_000_001))
    assert embedding_cache.cache_key(weights, "fp32") not in {key, touched}
    with pytest.raises(ValueError, match="unknown variant"):
        embedding_cache.cache_key(weights, "fp16")


def test_it_rebuilds_a_stale_graph_and_removes_it(tmp_path, fp32):
    stale = tmp_path / "all-MiniLM-L6-v2.fp32.0123456789abcdef.onnx"
    stale.write_bytes(b"graph of older weights")
    path, built = embedding_cache.ensure_graph("fp32", cache_dir=tmp_path)
    assert built
    assert path.name == fp32.graph_file.name
    assert sorted(tmp_path.iterdir()) == [path]  # stale file and temporary file gone
    assert path.read_bytes() == fp32.graph_file.read_bytes()
    assert embedding_cache.ensure_graph("fp32", cache_dir=tmp_path) == (path, False)


def test_it_reads_the_cache_dir_from_settings_then_env(settings, monkeypatch, tmp_path):
    monkeypatch.setenv("ATRIUM_MODEL_CACHE", str(tmp_path / "from-env"))
    settings.LOCAL_MODEL_CACHE_DIR = str(tmp_path / "from-settings")
    assert embedding_cache.model_cache_dir() == tmp_path / "from-settings"
    del settings.LOCAL_MODEL_CACHE_DIR
    assert embedding_cache.model_cache_dir() == tmp_path / "from-env"
    monkeypatch.delenv("ATRIUM_MODEL_CACHE")
    assert embedding_cache.model_cache_dir() == ROOT / ".devdata" / "models"


def test_it_reads_threads_from_settings_and_refuses_bad_values(settings, monkeypatch):
    monkeypatch.delenv("ATRIUM_EMBEDDING_THREADS", raising=False)
    if hasattr(settings, "LOCAL_EMBEDDING_THREADS"):
        del settings.LOCAL_EMBEDDING_THREADS
    assert embedding_threads() == 2
    monkeypatch.setenv("ATRIUM_EMBEDDING_THREADS", "3")
    assert embedding_threads() == 3
    settings.LOCAL_EMBEDDING_THREADS = "zero"
    with pytest.raises(ImproperlyConfigured, match="positive integer"):
        embedding_threads()


def test_it_refuses_a_bare_string(fp32):
    with pytest.raises(TypeError, match="list of texts"):
        fp32.embed("not a list")  # type: ignore[arg-type]
