"""Prices and the cost meter: tokens and dollars per role and per step, and the remote-only bill.

Where a price comes from, first match wins:
1. your rows: files passed to `PriceTable.load`, then $MINIONS_PRICES, then the bundled
   `minions/prices.toml` (local engines at 0, and anything the catalog lacks);
2. local providers in the registry (Ollama, llama.cpp, Lemonade, vLLM, ...): free per token;
3. the catalog: `genai-prices` (pydantic's maintained price data), read from the data bundled in
   the installed package — never fetched at runtime — for providers whose registry entry names
   their genai-prices id (see `minions.clients.spec`).
Each `Price` says which in `source`. Dollars are `None` when neither knows the model — unknown,
not free: price it with `--remote-price-as` or a row in your MINIONS_PRICES file.
Reasoning tokens are part of completion tokens, so they are priced as output.
"""

from __future__ import annotations

import functools
import os
import re
import sys
from collections.abc import Iterable
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from minions import errors
from minions.clients.base import Usage

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

_DATE_SUFFIX = re.compile(r"(-\d{4}-\d{2}-\d{2}|-\d{8}|-latest)$")


class Price(BaseModel):
    """Dollars per 1M tokens: finite and not negative (a negative or NaN price would disable every cap)."""

    model_config = ConfigDict(allow_inf_nan=False)

    input: float = Field(ge=0)
    output: float = Field(ge=0)
    cached_input: float | None = Field(None, ge=0)
    source: str = ""
    date: str = ""

    def cost(self, usage: Usage) -> float:
        cached_rate = self.input if self.cached_input is None else self.cached_input
        return (usage.evaluated_prompt_tokens * self.input + usage.cached_prompt_tokens * cached_rate
                + usage.completion_tokens * self.output) / 1e6


class PriceTable:
    """`rows` (overrides, which win) and, with `catalog=True`, genai-prices for cloud models."""

    def __init__(self, rows: dict[str, Price], *, catalog: bool = False):
        self.rows = rows
        self.catalog = catalog

    @classmethod
    def load(cls, *extra: str | Path) -> PriceTable:
        """The bundled rows, then $MINIONS_PRICES, then `extra` files (later rows win); then the catalog."""
        text = resources.files("minions").joinpath("prices.toml").read_text()
        rows = _parse(tomllib.loads(text), "minions/prices.toml")
        paths = [p for p in (os.environ.get("MINIONS_PRICES"), *extra) if p]
        for p in paths:
            from minions.config_files import read_toml

            data, text = read_toml(p, what="MINIONS_PRICES names" if p == os.environ.get("MINIONS_PRICES")
                                   else "The price file")
            rows.update(_parse(data, str(p), text))
        return cls(rows, catalog=True)

    def get(self, key: str) -> Price | None:
        """Exact spec, then without a date suffix ("gpt-4o-2024-08-06"), then glob rows ("ollama/*"),
        then the catalog."""
        for k in (key, _DATE_SUFFIX.sub("", key)):
            if k in self.rows:
                return self.rows[k]
        globs = [(k[:-1], p) for k, p in self.rows.items() if k.endswith("*") and key.startswith(k[:-1])]
        if globs:
            return max(globs, key=lambda kp: len(kp[0]))[1]
        return catalog_price(key) if self.catalog else None

    def cost(self, key: str, usage: Usage) -> float | None:
        price = self.get(key)
        return None if price is None else price.cost(usage)


def _parse(data: dict, where: str, text: str | None = None) -> dict[str, Price]:
    """`[models."provider/model"]` rows -> Prices; a bad row is a ConfigError naming file and line."""
    from minions.config_files import where as at

    def fail(key: tuple[str, ...], problem: str) -> errors.ConfigError:
        place = at(where, text, *key) if text is not None else where
        return errors.ConfigError(f"{place}: {problem}. A row is [models.\"provider/model\"] with input = and "
                                  "output = (finite dollars per 1M tokens, at least 0) and optionally cached_input.")

    models = data.get("models", {})
    if not isinstance(models, dict):
        raise fail(("models",), "'models' must be a table of price rows")
    rows = {}
    for k, v in models.items():
        if not isinstance(v, dict):
            raise fail(("models", k), f"price row {k!r} must be a table")
        try:
            rows[k] = Price.model_validate(v)
        except ValidationError as e:
            problems = "; ".join(f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors())
            raise fail(("models", k), f"price row {k!r}: {problems}") from None
    return {k: p if p.source else p.model_copy(update={"source": where}) for k, p in rows.items()}


@functools.lru_cache(maxsize=1024)  # the catalog is immutable package data: looking a model up twice is waste
def catalog_price(key: str) -> Price | None:
    """The genai-prices price of "provider/model" from its bundled data, or None if it has none."""
    from minions.clients.spec import provider

    name, _, model = key.partition("/")
    spec = provider(name)
    if spec is not None and spec.local and model:
        return Price(input=0.0, output=0.0, source=f"runs on your machine ({spec.description or name})")
    if spec is None or spec.prices is None or not model:
        return None
    try:
        import genai_prices
        from genai_prices import data_snapshot
    except ImportError:  # pragma: no cover - a core dependency; without it only your rows price models
        return None
    # The bundled snapshot, not get_snapshot(): that one may hold data a caller fetched with UpdatePrices.
    snapshot = data_snapshot._bundled_snapshot()
    try:
        found, info = snapshot.find_provider_model(model, None, spec.prices, None)
    except LookupError:
        return None
    mp = info.get_prices(datetime.now(tz=timezone.utc))

    def rate(value: object) -> float | None:  # tiered prices: the base tier (prompts under the threshold)
        value = getattr(value, "base", value)
        return None if value is None else float(value)  # type: ignore[arg-type]

    inp, out = rate(mp.input_mtok), rate(mp.output_mtok)
    if inp is None or out is None:
        return None
    tiered = " (base tier)" if hasattr(mp.input_mtok, "tiers") else ""
    return Price(input=inp, output=out, cached_input=rate(mp.cache_read_mtok),
                 source=f"genai-prices {genai_prices.__version__}: {found.name} {info.id}{tiered}")


def add_costs(costs: Iterable[float | None]) -> float | None:
    """Sum of dollars; unknown if any part is unknown."""
    total = 0.0
    for c in costs:
        if c is None:
            return None
        total += c
    return total


class MeterEntry(BaseModel):
    role: str            # "local", "remote", "judge", ...
    step: str            # "decompose", "job", "synthesize", "ask", ...
    model: str           # the price key the dollars came from
    usage: Usage
    cost_usd: float | None
    round: int | None = None


class RoleTotals(BaseModel):
    usage: Usage = Usage()
    cost_usd: float | None = 0.0


class CostReport(BaseModel):
    """What a run spent. Same shape in results, logs, the CLI's --json and the app."""

    roles: dict[str, RoleTotals]
    #: price key -> where its price came from (genai-prices, prices.toml, your file)
    price_sources: dict[str, str] = {}
    remote_only_estimate_usd: float | None = None
    remote_model: str | None = None
    remote_stand_in: bool = False  # the remote was the embedded model priced as `remote_model`

    def role(self, name: str) -> RoleTotals:
        return self.roles.get(name, RoleTotals())

    @property
    def savings_ratio(self) -> float | None:
        """How many times cheaper than remote-only (None when either side is unknown or zero)."""
        spent, est = self.role("remote").cost_usd, self.remote_only_estimate_usd
        if spent is None or est is None or spent <= 0:
            return None
        return est / spent


class CostMeter:
    """Collects one entry per model call of a run. Not shared between runs."""

    def __init__(self, prices: PriceTable | None = None):
        self.prices = prices or PriceTable.load()
        self.entries: list[MeterEntry] = []
        self.remote_only_estimate_usd: float | None = None
        self.remote_model: str | None = None
        self.remote_stand_in = False

    def record(self, role: str, price_key: str, usage: Usage, *, step: str = "", round: int | None = None
               ) -> MeterEntry:
        entry = MeterEntry(role=role, step=step, model=price_key, usage=usage,
                           cost_usd=self.prices.cost(price_key, usage), round=round)
        self.entries.append(entry)
        return entry

    def totals(self, role: str | None = None, *, step: str | None = None, round: int | None = None) -> RoleTotals:
        picked = [e for e in self.entries if (role is None or e.role == role)
                  and (step is None or e.step == step) and (round is None or e.round == round)]
        return RoleTotals(usage=sum((e.usage for e in picked), Usage()),
                          cost_usd=add_costs(e.cost_usd for e in picked))

    def estimate_remote_only(self, price_key: str, prompt_tokens: int, completion_tokens: int,
                             *, stand_in: bool = False) -> float | None:
        """Price the whole context + task sent once to the remote model; remembered for the report."""
        self.remote_model, self.remote_stand_in = price_key, stand_in
        self.remote_only_estimate_usd = self.prices.cost(
            price_key, Usage(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens, requests=1))
        return self.remote_only_estimate_usd

    def report(self) -> CostReport:
        roles = sorted({e.role for e in self.entries} | {"local", "remote"})
        keys = {e.model for e in self.entries} | ({self.remote_model} if self.remote_model else set())
        sources = {k: p.source for k in sorted(keys) if (p := self.prices.get(k)) is not None}
        return CostReport(roles={r: self.totals(r) for r in roles}, price_sources=sources,
                          remote_only_estimate_usd=self.remote_only_estimate_usd,
                          remote_model=self.remote_model, remote_stand_in=self.remote_stand_in)
