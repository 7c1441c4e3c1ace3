"""Build the all-MiniLM-L6-v2 sentence encoder as an ONNX graph straight from its safetensors.

No torch and no transformers: the BERT encoder (embeddings, N post-LayerNorm layers of
self-attention and an erf-GELU feed-forward) is written node by node with the `onnx` helper API,
followed by sentence-transformers' pipeline for this model: mean pooling over the attention mask
and L2 normalisation (modules.json: Transformer -> Pooling(mean) -> Normalize).

Graph contract:
- inputs  `input_ids` int64 [batch, seq] and `attention_mask` int64 [batch, seq] (1 = real token,
  0 = padding); every row must contain at least one real token; seq <= max_position_embeddings.
- output  `sentence_embedding` float32 [batch, hidden], each row L2-normalised.
Token type ids are always 0 (single sentences), so segment embedding 0 is folded into the
position table.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

# Bump when the graph built from the same weights changes: it is part of the cache key.
BUILDER_VERSION = "1"
OPSET = 17  # LayerNormalization is a standard op from 17 on
INPUT_IDS = "input_ids"
ATTENTION_MASK = "attention_mask"
OUTPUT = "sentence_embedding"


@dataclass(frozen=True)
class BertConfig:
    """The few fields of a Hugging Face BertConfig the graph needs."""

    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    layer_norm_eps: float
    max_positions: int

    @classmethod
    def from_file(cls, path: Path) -> BertConfig:
        raw = json.loads(path.read_text())
        if raw.get("hidden_act") != "gelu":
            raise ValueError(f"{path}: hidden_act {raw.get('hidden_act')!r} is not supported")
        if raw.get("position_embedding_type", "absolute") != "absolute":
            raise ValueError(f"{path}: only absolute position embeddings are supported")
        config = cls(
            hidden_size=raw["hidden_size"],
            num_layers=raw["num_hidden_layers"],
            num_heads=raw["num_attention_heads"],
            intermediate_size=raw["intermediate_size"],
            layer_norm_eps=float(raw["layer_norm_eps"]),
            max_positions=raw["max_position_embeddings"],
        )
        if config.hidden_size % config.num_heads:
            raise ValueError(f"{path}: hidden_size is not a multiple of num_attention_heads")
        return config

    @property
    def head_size(self) -> int:
        return self.hidden_size // self.num_heads


def read_pooling_mode(path: Path) -> None:
    """Refuse a pooling config other than plain mean pooling, the only one the graph implements."""
    raw = json.loads(path.read_text())
    enabled = sorted(key for key, value in raw.items() if key.startswith("pooling_mode") and value)
    if enabled != ["pooling_mode_mean_tokens"]:
        raise ValueError(f"{path}: pooling {enabled} is not supported, only mean pooling")


class _GraphBuilder:
    """Collects nodes and initializers; each helper returns the name of its output."""

    def __init__(self, weights: dict[str, np.ndarray]) -> None:
        self.weights = weights
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._names: set[str] = set()

    def const(self, name: str, value: np.ndarray) -> str:
        if name in self._names:
            raise ValueError(f"duplicate initializer {name}")
        self._names.add(name)
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def weight(self, key: str, name: str | None = None, *, transpose: bool = False) -> str:
        value = self.weights[key].astype(np.float32)
        # torch Linear stores [out, in]; ONNX MatMul wants x[.., in] @ W[in, out]
        return self.const(name or key, value.T if transpose else value)

    def op(self, op_type: str, inputs: list[str], name: str, **attrs) -> str:
        self.nodes.append(helper.make_node(op_type, inputs, [name], name=name, **attrs))
        return name

    def multi(self, op_type: str, inputs: list[str], outputs: list[str], **attrs) -> list[str]:
        self.nodes.append(helper.make_node(op_type, inputs, outputs, name=outputs[0], **attrs))
        return outputs

    def linear(self, x: str, prefix: str, out: str) -> str:
        w = self.weight(f"{prefix}.weight", f"{prefix}.weight_t", transpose=True)
        b = self.weight(f"{prefix}.bias")
        return self.op("Add", [self.op("MatMul", [x, w], f"{out}/matmul"), b], out)

    def layer_norm(self, x: str, prefix: str, eps: float, out: str) -> str:
        scale = self.weight(f"{prefix}.weight")
        bias = self.weight(f"{prefix}.bias")
        return self.op("LayerNormalization", [x, scale, bias], out, axis=-1, epsilon=eps)


def _attention(g: _GraphBuilder, x: str, mask_bias: str, cfg: BertConfig, i: int) -> str:
    p = f"encoder.layer.{i}.attention"
    heads = g.const(f"l{i}/heads_shape", np.array([0, 0, cfg.num_heads, cfg.head_size], np.int64))
    merged = g.const(f"l{i}/merged_shape", np.array([0, 0, cfg.hidden_size], np.int64))

    # One [hidden, 3 * hidden] projection instead of three: a single larger GEMM, and the int8
    # variant quantises the input once per layer instead of three times.
    kinds = ("query", "key", "value")
    qkv_w = np.concatenate([g.weights[f"{p}.self.{kind}.weight"].T for kind in kinds], axis=1)
    qkv_b = np.concatenate([g.weights[f"{p}.self.{kind}.bias"] for kind in kinds])
    w = g.const(f"{p}.self.qkv.weight_t", qkv_w.astype(np.float32))
    b = g.const(f"{p}.self.qkv.bias", qkv_b.astype(np.float32))
    qkv = g.op("Add", [g.op("MatMul", [x, w], f"l{i}/qkv/matmul"), b], f"l{i}/qkv")
    sizes = g.const(f"l{i}/qkv_sizes", np.array([cfg.hidden_size] * 3, np.int64))
    parts = g.multi("Split", [qkv, sizes], [f"l{i}/{kind}" for kind in kinds], axis=-1)

    def split_heads(name: str, perm: list[int]) -> str:
        reshaped = g.op("Reshape", [name, heads], f"{name}/heads")
        return g.op("Transpose", [reshaped], f"{name}/t", perm=perm)

    q = split_heads(parts[0], [0, 2, 1, 3])  # [B, H, S, D]
    k = split_heads(parts[1], [0, 2, 3, 1])  # [B, H, D, S]
    v = split_heads(parts[2], [0, 2, 1, 3])  # [B, H, S, D]
    scale = g.const(f"l{i}/scale", np.array(1.0 / math.sqrt(cfg.head_size), np.float32))
    scores = g.op("Mul", [g.op("MatMul", [q, k], f"l{i}/qk"), scale], f"l{i}/scores")
    probs = g.op("Softmax", [g.op("Add", [scores, mask_bias], f"l{i}/masked")], f"l{i}/probs")
    context = g.op("MatMul", [probs, v], f"l{i}/context")
    context = g.op("Transpose", [context], f"l{i}/context/t", perm=[0, 2, 1, 3])
    context = g.op("Reshape", [context, merged], f"l{i}/context/merged")
    attn_out = g.linear(context, f"{p}.output.dense", f"l{i}/attn_out")
    residual = g.op("Add", [attn_out, x], f"l{i}/attn_residual")
    return g.layer_norm(residual, f"{p}.output.LayerNorm", cfg.layer_norm_eps, f"l{i}/attn_ln")


def _feed_forward(g: _GraphBuilder, x: str, cfg: BertConfig, i: int) -> str:
    p = f"encoder.layer.{i}"
    h = g.linear(x, f"{p}.intermediate.dense", f"l{i}/ffn_in")
    # Hugging Face "gelu" is the exact erf form: 0.5 * h * (1 + erf(h / sqrt(2)))
    sqrt2 = g.const(f"l{i}/sqrt2", np.array(math.sqrt(2.0), np.float32))
    one = g.const(f"l{i}/one", np.array(1.0, np.float32))
    half = g.const(f"l{i}/half", np.array(0.5, np.float32))
    erf = g.op("Erf", [g.op("Div", [h, sqrt2], f"l{i}/gelu/div")], f"l{i}/gelu/erf")
    gate = g.op("Mul", [h, g.op("Add", [erf, one], f"l{i}/gelu/add")], f"l{i}/gelu/mul")
    gelu = g.op("Mul", [gate, half], f"l{i}/gelu")
    out = g.linear(gelu, f"{p}.output.dense", f"l{i}/ffn_out")
    residual = g.op("Add", [out, x], f"l{i}/ffn_residual")
    return g.layer_norm(residual, f"{p}.output.LayerNorm", cfg.layer_norm_eps, f"l{i}/out")


def build_graph(weights: dict[str, np.ndarray], cfg: BertConfig) -> onnx.ModelProto:
    """Return the checked ONNX model (encoder + mean pooling + L2 norm) for these BERT weights."""
    g = _GraphBuilder(weights)
    dims = ["batch", "seq"]
    inputs = [
        helper.make_tensor_value_info(INPUT_IDS, TensorProto.INT64, dims),
        helper.make_tensor_value_info(ATTENTION_MASK, TensorProto.INT64, dims),
    ]
    output = helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, ["batch", cfg.hidden_size])

    # Embeddings: word[ids] + position[0:seq] + token_type[0], then LayerNorm.
    word = g.weight("embeddings.word_embeddings.weight")
    positions = (
        weights["embeddings.position_embeddings.weight"]
        + weights["embeddings.token_type_embeddings.weight"][0]
    ).astype(np.float32)
    positions = g.const("embeddings.position_and_type0", positions)
    zero = g.const("zero_1d", np.array([0], np.int64))
    one_1d = g.const("one_1d", np.array([1], np.int64))
    two_1d = g.const("two_1d", np.array([2], np.int64))
    seq_len = g.op("Slice", [g.op("Shape", [INPUT_IDS], "ids_shape"), one_1d, two_1d], "seq_len")
    pos = g.op("Slice", [positions, zero, seq_len, zero], "emb/positions")  # [S, hidden]
    tokens = g.op("Gather", [word, INPUT_IDS], "emb/words", axis=0)  # [B, S, hidden]
    summed = g.op("Add", [tokens, pos], "emb/sum")
    x = g.layer_norm(summed, "embeddings.LayerNorm", cfg.layer_norm_eps, "emb/ln")

    # Additive attention mask [B, 1, 1, S]: 0 for tokens, float32 lowest for padding, as in
    # transformers' extended attention mask (padding gets exactly zero probability).
    mask = g.op("Cast", [ATTENTION_MASK], "mask/float", to=TensorProto.FLOAT)
    lowest = g.const("mask/lowest", np.array(np.finfo(np.float32).min, np.float32))
    one = g.const("mask/one", np.array(1.0, np.float32))
    inverted = g.op("Sub", [one, mask], "mask/inverted")
    bias = g.op("Mul", [inverted, lowest], "mask/bias2d")
    axes_12 = g.const("axes_1_2", np.array([1, 2], np.int64))
    mask_bias = g.op("Unsqueeze", [bias, axes_12], "mask/bias")

    for i in range(cfg.num_layers):
        x = _attention(g, x, mask_bias, cfg, i)
        x = _feed_forward(g, x, cfg, i)

    # Mean pooling over real tokens (sentence-transformers clamps the count at 1e-9).
    axis_1 = g.const("axis_1", np.array([1], np.int64))
    axis_2 = g.const("axis_2", np.array([2], np.int64))
    mask3 = g.op("Unsqueeze", [mask, axis_2], "pool/mask")  # [B, S, 1]
    masked = g.op("Mul", [x, mask3], "pool/masked")
    total = g.op("ReduceSum", [masked, axis_1], "pool/sum", keepdims=0)  # [B, hidden]
    count = g.op("ReduceSum", [mask3, axis_1], "pool/count", keepdims=0)  # [B, 1]
    min_count = g.const("pool/min_count", np.array(1e-9, np.float32))
    count = g.op("Max", [count, min_count], "pool/count_clamped")
    mean = g.op("Div", [total, count], "pool/mean")

    # L2 normalisation, as torch.nn.functional.normalize(p=2, eps=1e-12).
    norm = g.op("ReduceL2", [mean], "norm/l2", axes=[1], keepdims=1)  # axes input only from 18
    min_norm = g.const("norm/eps", np.array(1e-12, np.float32))
    norm = g.op("Max", [norm, min_norm], "norm/clamped")
    g.op("Div", [mean, norm], OUTPUT)

    graph = helper.make_graph(g.nodes, "all-MiniLM-L6-v2", inputs, [output], g.initializers)
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="atrium.ai.embedding",
        producer_version=BUILDER_VERSION,
    )
    # onnxruntime reads IR versions up to what it was built with; pin a widely supported one.
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model


def build_from_directory(model_dir: Path) -> onnx.ModelProto:
    """Build the graph from a sentence-transformers folder (config.json, model.safetensors,
    1_Pooling/config.json)."""
    from safetensors.numpy import load_file

    cfg = BertConfig.from_file(model_dir / "config.json")
    read_pooling_mode(model_dir / "1_Pooling" / "config.json")
    return build_graph(load_file(str(model_dir / "model.safetensors")), cfg)
