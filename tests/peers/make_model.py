"""Write a tiny random llama-architecture GGUF model for the peer run: no download.

    .venv-peers/bin/python tests/peers/make_model.py OUT.gguf [mean|none]

Two layers, hidden size 64, a 2,048-token context and a 397-token SentencePiece-style
("llama") vocabulary stored in the file, so llama.cpp tokenizes with it. The weights are
random (seeded), so the text is garbage, but it streams at hundreds of tokens a second on
one CPU core. One hidden dimension carries a large constant in every token embedding; the
output rows of the control and byte tokens point against it, so the model never ends a
reply by itself (replies run to max_tokens or the context's end) and never samples a lone
UTF-8 byte.

The second argument is the pooling the file names for embeddings: "mean" (the default),
as an embedding model's GGUF does, or "none", as a chat model's does (no key at all), in
which case llama-cpp-python's /v1/embeddings returns one vector per token (QUIRKS.md).
"""

from __future__ import annotations

import sys

import gguf
import numpy as np

N_EMBD, N_FF, N_LAYERS, N_HEAD, N_CTX = 64, 128, 2, 4, 2048
WORDS = "the a of and to in is it you that was for on are with as be at this have from".split()
CHAT_TEMPLATE = (  # ChatML; llama-cpp-python's server formats chats with the file's template
    "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n"
    "{% endfor %}<|im_start|>assistant\n"
)


def vocabulary() -> tuple[list[str], list[float], list[int]]:
    """Tokens, their merge scores (higher merges first) and their types."""
    T = gguf.TokenType
    tokens = ["<unk>", "<s>", "</s>"]
    types = [T.UNKNOWN, T.CONTROL, T.CONTROL]
    # Byte fallback: SPM spells any character it has no piece for as <0xNN> bytes.
    tokens += [f"<0x{b:02X}>" for b in range(256)]
    types += [T.BYTE] * 256
    # Every printable ASCII character; "▁" stands for a space, as in SentencePiece.
    pieces = ["▁"] + [chr(c) for c in range(33, 127)]
    # A few words, with every prefix so the bigram merges can reach them.
    for word in WORDS:
        w = "▁" + word
        pieces += [w[:i] for i in range(2, len(w) + 1) if w[:i] not in pieces]
    tokens += pieces
    types += [T.NORMAL] * len(pieces)
    scores = [0.0] * (3 + 256) + [float(len(p)) for p in pieces]
    return tokens, scores, [int(t) for t in types]


def weights(n_vocab: int, n_special: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Tensors by llama.cpp's names; numpy shapes are ggml's dimensions reversed."""

    def rand(*shape: int, scale: float = 0.02) -> np.ndarray:
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    ones = np.ones(N_EMBD, dtype=np.float32)
    embd = rand(n_vocab, N_EMBD, scale=1.0)
    embd[:, 0] = 8.0  # the constant dimension (see the module docstring)
    out = rand(n_vocab, N_EMBD, scale=0.5)
    out[:, 0] = 0.0
    out[:n_special, 0] = -10.0  # control and byte tokens: never sampled
    tensors = {"token_embd.weight": embd, "output_norm.weight": ones, "output.weight": out}
    for i in range(N_LAYERS):
        tensors |= {
            f"blk.{i}.attn_norm.weight": ones,
            f"blk.{i}.attn_q.weight": rand(N_EMBD, N_EMBD),
            f"blk.{i}.attn_k.weight": rand(N_EMBD, N_EMBD),
            f"blk.{i}.attn_v.weight": rand(N_EMBD, N_EMBD),
            f"blk.{i}.attn_output.weight": rand(N_EMBD, N_EMBD),
            f"blk.{i}.ffn_norm.weight": ones,
            f"blk.{i}.ffn_gate.weight": rand(N_FF, N_EMBD),
            f"blk.{i}.ffn_up.weight": rand(N_FF, N_EMBD),
            f"blk.{i}.ffn_down.weight": rand(N_EMBD, N_FF),
        }
    return tensors


def write(path: str, pooling: str = "mean", seed: int = 0) -> None:
    tokens, scores, types = vocabulary()
    w = gguf.GGUFWriter(path, arch="llama")  # general.architecture = "llama"
    w.add_name("parley-peer-tiny")  # general.name: what /v1/models may show
    w.add_context_length(N_CTX)  # llama.context_length: the trained window
    w.add_embedding_length(N_EMBD)  # llama.embedding_length: hidden size
    w.add_block_count(N_LAYERS)  # llama.block_count: number of layers
    w.add_feed_forward_length(N_FF)  # llama.feed_forward_length: MLP width
    w.add_head_count(N_HEAD)  # llama.attention.head_count
    w.add_head_count_kv(N_HEAD)  # llama.attention.head_count_kv: no grouped-query
    w.add_rope_dimension_count(N_EMBD // N_HEAD)  # llama.rope.dimension_count: per head
    w.add_layer_norm_rms_eps(1e-5)  # llama.attention.layer_norm_rms_epsilon
    w.add_file_type(gguf.LlamaFileType.ALL_F32)  # general.file_type: every tensor F32
    w.add_tokenizer_model("llama")  # tokenizer.ggml.model: SentencePiece-style BPE
    w.add_token_list(tokens)  # tokenizer.ggml.tokens: the pieces, by id
    w.add_token_scores(scores)  # tokenizer.ggml.scores: merge priority of each piece
    w.add_token_types(types)  # tokenizer.ggml.token_type: normal, control, byte...
    w.add_unk_token_id(0)  # tokenizer.ggml.unknown_token_id
    w.add_bos_token_id(1)  # tokenizer.ggml.bos_token_id: put before every prompt
    w.add_eos_token_id(2)  # tokenizer.ggml.eos_token_id: ends a reply
    w.add_add_bos_token(True)  # tokenizer.ggml.add_bos_token
    w.add_add_space_prefix(True)  # tokenizer.ggml.add_space_prefix: "hi" is "▁hi"
    w.add_chat_template(CHAT_TEMPLATE)  # tokenizer.chat_template
    if pooling == "mean":  # llama.pooling_type: how /v1/embeddings pools the tokens' vectors
        w.add_pooling_type(gguf.PoolingType.MEAN)
    for name, tensor in weights(len(tokens), 3 + 256, np.random.default_rng(seed)).items():
        w.add_tensor(name, tensor)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


if __name__ == "__main__":
    write(sys.argv[1], *sys.argv[2:3])
