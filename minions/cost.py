"""Prices and the cost meter: tokens and dollars per role and per step, and the remote-only bill.

Dollars are `None` when a model has no row in the price table — unknown, not free. Add the row
to your own prices file (MINIONS_PRICES) to price it.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterable
from importlib import resources
from pathlib import Path

from pydantic import BaseModel

from minions.clients.base import Usage

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

_DATE_SUFFIX = re.compile(r"(-\d{4}-\d{2}-\d{2}|-\d{8}|-latest)$")


class Price(BaseModel):
    """Dollars per 1M tokens."""

    input: float
    output: float
    cached_input: float | None = None
    source: str = ""
    date: str = ""

    def cost(self, usage: Usage) -> float:
        cached_rate = self.input if self.cached_input is None else self.cached_input
        return (usage.evaluated_prompt_tokens * self.input + usage.cached_prompt_tokens * cached_rate
                + usage.completion_tokens * self.output) / 1e6


class PriceTable:
    def __init__(self, rows: dict[str, Price]):
        self.rows = rows

    @classmethod
    def load(cls, *extra: str | Path) -> PriceTable:
        """The bundled table, then $MINIONS_PRICES, then `extra` files; later rows win."""
        text = resources.files("minions").joinpath("prices.toml").read_text()
        rows = _parse(tomllib.loads(text))
        paths = [p for p in (os.environ.get("MINIONS_PRICES"), *extra) if p]
        for p in paths:
            rows.update(_parse(tomllib.loads(Path(p).read_text())))
        return cls(rows)

    def get(self, key: str) -> Price | None:
        """Exact spec, then without a date suffix ("gpt-4o-2024-08-06"), then glob rows ("ollama/*")."""
        for k in (key, _DATE_SUFFIX.sub("", key)):
            if k in self.rows:
                return self.rows[k]
        globs = [(k[:-1], p) for k, p in self.rows.items() if k.endswith("*") and key.startswith(k[:-1])]
        return max(globs, key=lambda kp: len(kp[0]))[1] if globs else None

    def cost(self, key: str, usage: Usage) -> float | None:
        price = self.get(key)
        return None if price is None else price.cost(usage)


def _parse(data: dict) -> dict[str, Price]:
    return {k: Price.model_validate(v) for k, v in data.get("models", {}).items()}


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
        return CostReport(roles={r: self.totals(r) for r in roles},
                          remote_only_estimate_usd=self.remote_only_estimate_usd,
                          remote_model=self.remote_model, remote_stand_in=self.remote_stand_in)
