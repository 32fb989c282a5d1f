"""The editable price table (`<data dir>/prices.toml`) and cost arithmetic.

Prices are US dollars per million tokens, keyed by who serves the model, then the kind
of model ("chat" or "image"), then its name:

    [openai.chat."gpt-5.4-mini"]                         # OpenAI's API
    [azure.chat."my-deployment"]                         # any provider id in lib.providers
    [server."http://gpu-box:8000/v1".chat."llama-70b"]   # one server, by its base URL
    [chat."gpt-5.4-mini"]                                # older tables: means OpenAI

A reply is priced only from its own server's section or its own provider's, never from
another's: "gpt-5.4-mini" on a custom server is not charged OpenAI's price unless the
table says so for that server. A server's section wins over its provider's. With no
entry, OpenAI and Azure models have an unknown cost (None, shown as such rather than as
zero); models on local and custom servers cost 0.
"""

from __future__ import annotations

import re
import shutil
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lib.errors import ConfigError
from lib.providers import PROVIDERS, server_key

DEFAULT_TABLE = Path(__file__).resolve().parent / "prices.default.toml"
_SNAPSHOT = re.compile(r"^(.+?)-\d{4}-\d{2}-\d{2}$")
KINDS = ("chat", "image")
BILLED_PROVIDERS = {"openai", "azure"}  # an unpriced model here costs "unknown", not 0
FREE_PROVIDERS = set(PROVIDERS) - BILLED_PROVIDERS  # cost 0 unless the table prices it
_LEGACY_OWNER = "openai"  # whose prices an old table's top-level [chat] and [image] are


@dataclass(frozen=True)
class Price:
    input: float
    output: float


@dataclass
class PriceTable:
    # owner ("openai", "azure", ..., or "server:<base URL>") -> kind -> model -> price
    entries: dict[str, dict[str, dict[str, Price]]] = field(default_factory=dict)

    @classmethod
    def load(cls, data_dir: Path) -> PriceTable:
        """Read `prices.toml` from the data directory, creating it from the default."""
        path = data_dir / "prices.toml"
        if not path.exists():
            data_dir.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(DEFAULT_TABLE, path)
        try:
            return cls(parse(tomllib.loads(path.read_text(encoding="utf-8"))))
        except (tomllib.TOMLDecodeError, KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"{path} is not a valid price table: {exc}") from exc

    def price(
        self,
        model: str,
        kind: str = "chat",
        *,
        provider: str = "openai",
        base_url: str | None = None,
    ) -> Price | None:
        """The price of `model` where it runs: its server's entry, else its provider's."""
        owners = [f"server:{server_key(base_url)}"] if base_url else []
        for owner in [*owners, provider]:
            found = _match(self.entries.get(owner, {}).get(kind, {}), model)
            if found is not None:
                return found
        return None

    def cost(
        self,
        model: str,
        input_tokens: int,
        output_tokens: int,
        *,
        provider: str = "openai",
        base_url: str | None = None,
        kind: str = "chat",
    ) -> float | None:
        """What a request cost in US dollars; None when an OpenAI or Azure model has no
        price in the table, 0 for an unpriced model on any other server."""
        price = self.price(model, kind, provider=provider, base_url=base_url)
        if price is None:
            return None if provider in BILLED_PROVIDERS else 0.0
        return (input_tokens * price.input + output_tokens * price.output) / 1_000_000


def _match(models: dict[str, Price], model: str) -> Price | None:
    if model in models:
        return models[model]
    # Dated snapshots share their family's price; other prefixes are different models
    # ("gpt-5.4-mini" is not "gpt-5"), and guessing would show a wrong cost as fact.
    snapshot = _SNAPSHOT.match(model)
    return models.get(snapshot.group(1)) if snapshot else None


def parse(raw: dict[str, Any]) -> dict[str, dict[str, dict[str, Price]]]:
    """The table's entries by owner, kind and model; raises ValueError for a section that
    names no provider, server or kind, so a typo is reported instead of ignored."""
    entries: dict[str, dict[str, dict[str, Price]]] = {}
    for key, value in raw.items():
        if key == "server":
            for url, kinds in _table(value, "[server]").items():
                _add(entries, f"server:{server_key(url)}", kinds, f'[server."{url}"]')
        elif key in PROVIDERS:
            _add(entries, key, value, f"[{key}]")
        elif key not in KINDS:
            names = ", ".join(PROVIDERS)
            raise ValueError(f"[{key}] is not a provider ({names}), [server] or a kind")
    # Older tables' [chat] and [image] mean OpenAI's, unless [openai.*] prices the model.
    legacy = {kind: raw[kind] for kind in KINDS if kind in raw}
    for kind, models in _parse_kinds(legacy, "").items():
        for name, price in models.items():
            entries.setdefault(_LEGACY_OWNER, {}).setdefault(kind, {}).setdefault(name, price)
    return entries


def _add(entries: dict[str, Any], owner: str, kinds: Any, where: str) -> None:
    for kind, models in _parse_kinds(_table(kinds, where), where).items():
        entries.setdefault(owner, {}).setdefault(kind, {}).update(models)


def _parse_kinds(kinds: dict[str, Any], where: str) -> dict[str, dict[str, Price]]:
    parsed = {}
    for kind, models in kinds.items():
        if kind not in KINDS:
            raise ValueError(f"{where}[{kind}]: the kind must be one of {', '.join(KINDS)}")
        parsed[kind] = {
            name: _price(entry, f"{where}.{kind}.{name}")
            for name, entry in _table(models, kind).items()
        }
    return parsed


def _price(entry: Any, where: str) -> Price:
    entry = _table(entry, where)
    price = Price(float(entry["input"]), float(entry["output"]))
    if price.input < 0 or price.output < 0:
        raise ValueError(f"{where}: a price cannot be negative")
    return price


def _table(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise TypeError(f"{where} must be a table")
    return value
