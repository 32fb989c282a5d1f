"""The editable price table (`<data dir>/prices.toml`) and cost arithmetic.

Prices are US dollars per million tokens. A model with no entry has an unknown cost
(`None`), shown as such rather than as zero; models on local servers cost nothing.
"""

from __future__ import annotations

import re
import shutil
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from lib.errors import ConfigError

DEFAULT_TABLE = Path(__file__).resolve().parent / "prices.default.toml"
_SNAPSHOT = re.compile(r"^(.+?)-\d{4}-\d{2}-\d{2}$")
FREE_PROVIDERS = {"ollama", "lmstudio", "vllm", "llamacpp"}


@dataclass(frozen=True)
class Price:
    input: float
    output: float


@dataclass
class PriceTable:
    sections: dict[str, dict[str, Price]] = field(default_factory=dict)

    @classmethod
    def load(cls, data_dir: Path) -> PriceTable:
        """Read `prices.toml` from the data directory, creating it from the default."""
        path = data_dir / "prices.toml"
        if not path.exists():
            data_dir.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(DEFAULT_TABLE, path)
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
            sections = {
                kind: {
                    name: Price(float(p["input"]), float(p["output"])) for name, p in models.items()
                }
                for kind, models in raw.items()
            }
        except (tomllib.TOMLDecodeError, KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"{path} is not a valid price table: {exc}") from exc
        return cls(sections)

    def price(self, model: str, kind: str = "chat") -> Price | None:
        models = self.sections.get(kind, {})
        if model in models:
            return models[model]
        # Dated snapshots share their family's price; other prefixes are different models
        # ("gpt-5.4-mini" is not "gpt-5"), and guessing would show a wrong cost as fact.
        snapshot = _SNAPSHOT.match(model)
        return models.get(snapshot.group(1)) if snapshot else None

    def cost(
        self,
        model: str,
        input_tokens: int,
        output_tokens: int,
        *,
        provider: str = "openai",
        kind: str = "chat",
    ) -> float | None:
        if provider in FREE_PROVIDERS:
            return 0.0
        price = self.price(model, kind)
        if price is None:
            return None
        return (input_tokens * price.input + output_tokens * price.output) / 1_000_000
