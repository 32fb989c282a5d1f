"""The settings resolver, provider presets, the price table, and which model a new chat
starts with (the per-server preferences it comes from: tests/test_preferences.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from lib.errors import ConfigError, MissingKeyError
from lib.models import choose_models
from lib.pricing import PriceTable
from lib.providers import PLACEHOLDER_KEY, guess_provider
from lib.settings import resolve, resolve_settings


@pytest.mark.parametrize(
    ("explicit", "secrets", "environ", "expected"),
    [
        (
            {"api_key": "sk-side"},
            {"OPENAI_API_KEY": "sk-sec"},
            {"OPENAI_API_KEY": "sk-env"},
            ("sk-side", "explicit"),
        ),
        ({}, {"OPENAI_API_KEY": "sk-sec"}, {"OPENAI_API_KEY": "sk-env"}, ("sk-sec", "secrets")),
        ({}, {}, {"OPENAI_API_KEY": "sk-env"}, ("sk-env", "env")),
        ({"api_key": ""}, {"OPENAI_API_KEY": ""}, {"OPENAI_API_KEY": "sk-env"}, ("sk-env", "env")),
        ({}, {}, {}, (None, None)),
    ],
)
def test_resolution_order(explicit: dict, secrets: dict, environ: dict, expected: tuple) -> None:
    assert resolve("api_key", explicit, secrets, environ) == expected


def test_secrets_that_raise_count_as_absent() -> None:
    class NoSecrets(dict):
        def get(self, key, default=None):  # noqa: ANN001, ANN202 - mimics st.secrets
            raise FileNotFoundError("no secrets.toml")

    assert resolve("api_key", {}, NoSecrets(), {"OPENAI_API_KEY": "sk-env"}) == ("sk-env", "env")


def test_defaults_and_data_dir(tmp_path: Path) -> None:
    s = resolve_settings({}, {}, {"PARLEY_DATA_DIR": str(tmp_path)})
    assert s.provider == "openai" and s.base_url == "https://api.openai.com/v1"
    assert s.chat_model not in {"gpt-3.5-turbo", "text-davinci-003"}
    assert s.data_dir == tmp_path
    with pytest.raises(MissingKeyError, match="OPENAI_API_KEY"):
        s.require_key()


def test_key_is_never_in_repr() -> None:
    s = resolve_settings(visitor={"api_key": "sk-very-secret"}, secrets={}, environ={})
    assert "sk-very-secret" not in repr(s)
    assert s.key_source == "sidebar" and not s.key_is_shared


def test_local_server_needs_no_key() -> None:
    s = resolve_settings({}, {}, {"OPENAI_BASE_URL": "http://localhost:11434/v1/"})
    assert s.provider == "ollama" and s.base_url == "http://localhost:11434/v1"
    assert s.require_key() == PLACEHOLDER_KEY
    assert s.chat_model == "llama3.2"


@pytest.mark.parametrize(
    ("url", "provider"),
    [
        (None, "openai"),
        ("http://localhost:1234/v1", "lmstudio"),
        ("http://localhost:8000/v1", "vllm"),
        ("http://localhost:8080/v1", "llamacpp"),
        ("https://acme.openai.azure.com/openai/v1", "azure"),
        ("http://10.0.0.5:9999/v1", "custom"),
    ],
)
def test_guess_provider(url: str | None, provider: str) -> None:
    assert guess_provider(url) == provider


def test_explicit_provider_overrides_and_sets_models() -> None:
    s = resolve_settings({"provider": "ollama"}, {"PARLEY_CHAT_MODEL": "qwen2.5"}, {})
    assert s.base_url == "http://localhost:11434/v1" and s.chat_model == "qwen2.5"


def test_price_table_is_created_and_editable(tmp_path: Path) -> None:
    table = PriceTable.load(tmp_path)
    assert (tmp_path / "prices.toml").exists()
    assert table.cost("gpt-5", 1_000_000, 1_000_000) == pytest.approx(11.25)
    assert table.cost("gpt-5-2025-08-07", 1_000_000, 0) == pytest.approx(1.25)  # snapshot
    assert table.cost("gpt-5.4-mini", 10**6, 0) == pytest.approx(0.75)  # the default model
    assert table.cost("gpt-5.3-mini", 1000, 1000) is None  # unknown: never a guess
    assert table.cost("llama3.2", 10**6, 10**6, provider="ollama") == 0.0
    (tmp_path / "prices.toml").write_text('[chat."my-model"]\ninput = 1\noutput = 2\n')
    assert PriceTable.load(tmp_path).cost("my-model", 10**6, 10**6) == pytest.approx(3.0)


def test_broken_price_table_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "prices.toml").write_text("[chat.broken\n")
    with pytest.raises(ConfigError, match="prices.toml"):
        PriceTable.load(tmp_path)


# Prices are per provider or server: no reply is charged at another provider's price.

PRICED = """
[openai.chat."gpt-5.4-mini"]
input = 0.75
output = 4.5

[azure.chat."my-deployment"]
input = 1
output = 2

[server."http://gpu-box:8000/v1".chat."gpt-5.4-mini"]
input = 0.1
output = 0.2

[server."http://gpu-box:8000/v1".image."flux"]
input = 3
output = 4

[ollama.chat."llama3.2"]
input = 0.01
output = 0.02
"""


@pytest.mark.parametrize(
    ("model", "provider", "base_url", "kind", "expected"),
    [
        ("gpt-5.4-mini", "openai", None, "chat", 5.25),
        ("gpt-5.4-mini", "openai", "https://api.openai.com/v1", "chat", 5.25),
        ("gpt-5.4-mini", "custom", "http://gpu-box:8000/v1", "chat", 0.3),  # its server's
        ("gpt-5.4-mini", "custom", "http://gpu-box:8000/v1/", "chat", 0.3),  # same server
        ("gpt-5.4-mini", "custom", "http://other:8000/v1", "chat", 0.0),  # never OpenAI's
        ("gpt-5.4-mini", "llamacpp", "http://localhost:8080/v1", "chat", 0.0),
        ("gpt-5.4-mini", "azure", "https://x.openai.azure.com/openai/v1", "chat", None),
        ("my-deployment", "azure", "https://x.openai.azure.com/openai/v1", "chat", 3.0),
        ("my-deployment", "openai", None, "chat", None),  # Azure's price is Azure's only
        ("llama3.2", "ollama", "http://localhost:11434/v1", "chat", 0.03),
        ("llama3.2", "lmstudio", "http://localhost:1234/v1", "chat", 0.0),
        ("flux", "custom", "http://gpu-box:8000/v1", "image", 7.0),
        ("flux", "custom", "http://gpu-box:8000/v1", "chat", 0.0),  # kinds are apart too
        ("gpt-5.3-mini", "openai", None, "chat", None),  # unknown on OpenAI: never a guess
    ],
)
def test_prices_are_keyed_by_provider_or_server(
    tmp_path: Path, model: str, provider: str, base_url: str | None, kind: str, expected: Any
) -> None:
    (tmp_path / "prices.toml").write_text(PRICED)
    table = PriceTable.load(tmp_path)
    cost = table.cost(model, 10**6, 10**6, provider=provider, base_url=base_url, kind=kind)
    assert cost == (None if expected is None else pytest.approx(expected))


def test_old_tables_mean_openai_and_the_new_section_wins(tmp_path: Path) -> None:
    (tmp_path / "prices.toml").write_text(
        '[chat."gpt-5"]\ninput = 1\noutput = 1\n[chat."old-only"]\ninput = 2\noutput = 2\n'
        '[openai.chat."gpt-5"]\ninput = 3\noutput = 3\n[image."img"]\ninput = 4\noutput = 4\n'
    )
    table = PriceTable.load(tmp_path)
    assert table.cost("gpt-5", 10**6, 0) == pytest.approx(3.0)
    assert table.cost("old-only", 10**6, 0) == pytest.approx(2.0)
    assert table.cost("img", 10**6, 0, kind="image") == pytest.approx(4.0)
    assert table.cost("old-only", 10**6, 0, provider="custom", base_url="http://h/v1") == 0.0


def test_the_shipped_table_is_in_the_new_format(tmp_path: Path) -> None:
    PriceTable.load(tmp_path)
    text = (tmp_path / "prices.toml").read_text()
    sections = [line for line in text.splitlines() if line.startswith("[")]
    assert sections and all(s.startswith(("[openai.chat.", "[openai.image.")) for s in sections)


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ('[opneai.chat."gpt-5"]\ninput = 1\noutput = 1\n', "opneai"),
        ('[openai.text."gpt-5"]\ninput = 1\noutput = 1\n', "kind"),
        ('[openai.chat."gpt-5"]\ninput = -1\noutput = 1\n', "negative"),
        ('[openai.chat."gpt-5"]\ninput = 1\n', "output"),
        ('[server."http://h/v1".chat."m"]\ninput = "free"\noutput = 1\n', "free"),
        ("server = 3\n", "table"),
    ],
)
def test_a_wrong_price_table_says_where(tmp_path: Path, toml: str, message: str) -> None:
    (tmp_path / "prices.toml").write_text(toml)
    with pytest.raises(ConfigError, match=message):
        PriceTable.load(tmp_path)


# Which model a new chat starts with


@pytest.mark.parametrize(
    ("server", "default", "last_used", "first", "note"),
    [
        (["gpt-5-mini", "gpt-5.4-mini"], "gpt-5.4-mini", None, "gpt-5.4-mini", None),
        (["tiny-llama"], "gpt-5.4-mini", None, "tiny-llama", "gpt-5.4-mini is not on this server"),
        (["b-model", "a-embedding", "c-model"], "gpt-5.4-mini", None, "b-model", "using b-model"),
        (["llama3.2:latest"], "llama3.2", None, "llama3.2:latest", None),  # Ollama's tag
        (["x", "y"], "gpt-5.4-mini", "y", "y", None),  # the user's last choice here
        (["x", "y"], "x", "gone", "x", None),  # last choice no longer served: the default
        (["nomic-embed-text"], "gpt-5.4-mini", None, "gpt-5.4-mini", "no chat models"),
        (None, "gpt-5.4-mini", "my-model", "my-model", "Could not read"),
    ],
)
def test_new_chats_start_with_a_model_the_server_has(
    server: list[str] | None, default: str, last_used: str | None, first: str, note: str | None
) -> None:
    names, said = choose_models(server, default, last_used)
    assert names[0] == first and len(names) == len(set(names))
    assert (said is None) if note is None else (note in said)
