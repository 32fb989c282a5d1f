"""Token counting offline, and trimming history to the memory window and context budget."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from unittest import mock

import pytest
import tiktoken
from tiktoken_ext import openai_public

from lib import tokens
from lib.conversations import Message
from lib.errors import ContextTooLong
from lib.memory import output_reserve, trim_to_budget


def test_shipped_vocabularies_match_tiktokens_own_pinned_hashes() -> None:
    source = Path(openai_public.__file__).read_text()
    for name, digest in tokens.SHIPPED.items():
        assert digest in source, f"{name}'s hash is not the one tiktoken pins"


@pytest.mark.parametrize(
    ("model", "encoding", "exact"),
    [
        ("gpt-4o", "o200k_base", True),
        ("gpt-4.1-mini", "o200k_base", True),
        ("gpt-4", "cl100k_base", True),
        ("llama3.2", "o200k_base", False),
        ("some-future-model", "o200k_base", False),
    ],
)
def test_counter_choice(model: str, encoding: str, exact: bool) -> None:
    counter = tokens.counter_for(model)
    assert (counter.name, counter.exact) == (encoding, exact)


def test_counts_match_known_values_offline() -> None:
    # Reference counts from OpenAI's tokenizer for these encodings.
    assert tokens.counter_for("gpt-4").count("hello world") == 2
    assert tokens.counter_for("gpt-4o").count("tiktoken is great!") == 6
    assert tokens.counter_for("gpt-4o").count("<|endoftext|>") > 1  # special text is just text


def test_corrupt_vocabulary_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "o200k_base.tiktoken").write_bytes(b"aGVsbG8= 0\n")
    monkeypatch.setattr(tokens, "DATA", tmp_path)
    with pytest.raises(tokens.VocabularyError, match="SHA-256"):
        tokens._load_ranks("o200k_base")
    (tmp_path / "o200k_base.tiktoken").unlink()
    with pytest.raises(tokens.VocabularyError, match="Cannot read"):
        tokens._load_ranks("o200k_base")


@pytest.mark.parametrize("name", sorted(tokens.SHIPPED))
def test_encodings_match_tiktokens_own_constructors(name: str) -> None:
    """The copied patterns and special tokens are the ones tiktoken's constructor uses
    (its vocabulary download is replaced by the shipped ranks, in this test only)."""
    ranks = tokens._load_ranks(name)
    with mock.patch.object(openai_public, "load_tiktoken_bpe", lambda *a, **k: ranks):
        spec = openai_public.ENCODING_CONSTRUCTORS[name]()
    ours = tokens.get_encoding(name)
    assert ours._pat_str == spec["pat_str"]
    assert ours._special_tokens == spec["special_tokens"]
    assert ours._mergeable_ranks == spec["mergeable_ranks"]


def test_counting_from_many_threads_at_once() -> None:
    tokens.get_encoding.cache_clear()
    tokens.counter_for.cache_clear()
    text = "Parley counts tokens for every session at the same time. " * 50
    with ThreadPoolExecutor(8) as pool:
        counts = list(pool.map(lambda m: tokens.counter_for(m).count(text), ["gpt-4o"] * 16))
    assert len(set(counts)) == 1 and counts[0] > 500


def test_encoding_is_a_real_tiktoken_encoding() -> None:
    enc = tokens.get_encoding("o200k_base")
    assert isinstance(enc, tiktoken.Encoding)
    assert enc.decode(enc.encode("round trip ✓")) == "round trip ✓"


def history(rounds: int, tokens_each: int = 10) -> list[Message]:
    out = []
    for i in range(rounds):
        out.append(Message(role="user", content=f"q{i}", tokens=tokens_each, id=2 * i))
        out.append(Message(role="assistant", content=f"a{i}", tokens=tokens_each, id=2 * i + 1))
    return out


def test_memory_window_keeps_the_last_rounds() -> None:
    result = trim_to_budget(
        history(10),
        system_tokens=5,
        new_tokens=5,
        max_rounds=3,
        context_window=100_000,
        output_budget=1000,
    )
    assert [m.content for m in result.kept] == ["q7", "a7", "q8", "a8", "q9", "a9"]
    assert result.dropped == 14 and result.history_tokens == 60


def test_context_budget_drops_whole_rounds_oldest_first() -> None:
    # room = 200 - 50 - 3 - 10 - 10 = 127 tokens: six 20-token rounds fit, not seven.
    result = trim_to_budget(
        history(10),
        system_tokens=10,
        new_tokens=10,
        max_rounds=100,
        context_window=200,
        output_budget=50,
    )
    assert len(result.kept) == 12 and result.kept[0].role == "user"
    assert result.kept[0].content == "q4"
    assert result.prompt_tokens <= result.budget + 3


def test_zero_rounds_sends_no_history() -> None:
    result = trim_to_budget(
        history(3),
        system_tokens=0,
        new_tokens=1,
        max_rounds=0,
        context_window=1000,
        output_budget=10,
    )
    assert result.kept == [] and result.dropped == 6


def test_a_message_too_long_for_the_model_is_a_clear_error() -> None:
    with pytest.raises(ContextTooLong, match="only"):
        trim_to_budget(
            [],
            system_tokens=100,
            new_tokens=9000,
            max_rounds=5,
            context_window=8192,
            output_budget=1000,
        )


def test_trimming_never_recounts() -> None:
    # Messages with no cached count would count as zero here: trimming only reads `tokens`.
    msgs = history(2)
    for m in msgs:
        m.content = "x" * 100_000
    result = trim_to_budget(
        msgs, system_tokens=0, new_tokens=0, max_rounds=5, context_window=1000, output_budget=10
    )
    assert result.history_tokens == 40


def test_output_reserve() -> None:
    assert output_reserve(8192, None) == 2048
    assert output_reserve(400_000, None) == 4096
    assert output_reserve(400_000, 123) == 123
