"""The settings resolver, provider presets and the price table."""

from __future__ import annotations

from pathlib import Path

import pytest

from lib.errors import ConfigError, MissingKeyError
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
