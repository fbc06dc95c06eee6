"""What the remote may cost: the dollar cap as a user gives it, and pricing a client as another model."""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any

from minions import errors
from minions.clients.base import Client


def budget_usd(value: Any) -> float | None:
    """A remote dollar cap as given by a user: None (no cap), a number or a numeric string ("0.05"
    is read as 0.05). NaN, infinity, negatives, booleans and words are a ConfigError: a cap that
    compares false with everything would silently switch the budget off."""
    if value is None:
        return None
    what = "The remote budget (--max-remote-usd, max_remote_usd=)"
    if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
        raise errors.ConfigError(f"{what} must be a number of dollars, got {type(value).__name__} {value!r}.")
    try:
        usd = float(value.strip() if isinstance(value, str) else value)
    except (ValueError, OverflowError):
        raise errors.ConfigError(f"{what} must be a number of dollars, got {value!r}.") from None
    if not math.isfinite(usd) or usd < 0:
        raise errors.ConfigError(f"{what} must be a finite amount >= 0 dollars, got {value!r}; leave it out "
                                 "for no cap.")
    return usd


def priced_as(client: Client, price_as: str) -> Client:
    """`client`, priced as `price_as`. The caller's object is not changed (it may be the local model
    too, or in use elsewhere): calls go through a pass-through wrapper (a CachedClient without a
    cache) that shares its engine and session."""
    from minions.clients.cache import CachedClient

    return CachedClient(client, None, price_as=price_as)
