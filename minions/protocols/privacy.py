"""Privacy for remote-bound messages: a deterministic scrubber and the paper's local-rewrite shield.

`Scrubber.scrub` is pure regex work, the same output for the same input, so it can run on every
message `RunContext.call` sends to the remote. It replaces emails, phone numbers (US and
international), SSNs, payment card numbers (only Luhn-valid ones, so ordinary long figures in a
filing survive), IPv4/IPv6 addresses and the names the caller lists with typed placeholders.

With `local_rewrite=True`, protocols also pass what the local model wrote for the remote through
`shield` — Minion each worker reply, MinionS each round's aggregated job outputs (one local call per
round): the local model rewrites it without personal data (the privacy shield of the Minions
paper), and the rewrite is scrubbed anyway — a small model misses things.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING

from minions.clients.base import Message, Options

if TYPE_CHECKING:
    from minions.protocols.base import RunContext

PLACEHOLDERS = ("[EMAIL]", "[IP]", "[CARD]", "[SSN]", "[PHONE]", "[NAME]")

_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
# IPv6 candidates (hex groups with at least two colons, optionally an embedded IPv4 tail), then
# validated by `ipaddress` so clock times ("10:30:00") and C++ scopes ("std::map") are left alone.
_IPV6 = re.compile(r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:\d{1,3}(?:\.\d{1,3}){3}|[0-9A-Fa-f]{0,4})"
                   r"(?:%[\w.]+)?(?![\w:]|\.\d)")
_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_IPV4 = re.compile(rf"(?<![\w.]){_OCTET}(?:\.{_OCTET}){{3}}(?![\w]|\.\d)")
# 13-19 digits, optionally grouped by single spaces or dashes; Luhn decides.
_CARD = re.compile(r"(?<![\w-])\d(?:[ -]?\d){12,18}(?![\w]|-\d)")
_SSN = re.compile(r"(?<![\w-])(?!000|666|9\d\d)\d{3}([- ])(?!00)\d{2}\1(?!0000)\d{4}(?![\w]|-\d)")
# Area codes start with 2-9 (NANP), which spares ids like SEC CIKs ("0000320193").
_PHONE_US = re.compile(r"(?<![\w+])(?:\+?1[-. ]?)?(?:\([2-9]\d{2}\)[-. ]?|[2-9]\d{2}[-. ]?)\d{3}[-. ]?\d{4}"
                       r"(?!\w|-\d)")
# "+44 20 7946 0958", "+49-30-1234567", "+33 (0)1 23 45 67 89": a leading + and 7-15 digits.
_PHONE_INTL = re.compile(r"(?<![\w+])\+\d{1,3}(?:[-. ]?(?:\(\d{1,4}\)|\d{1,5})){1,6}(?!\w)")
_DIGITS = re.compile(r"\d")


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


class Scrubber:
    """Redacts personal data from text bound for the remote model. Deterministic and idempotent."""

    def __init__(self, names: Iterable[str] = (), *, local_rewrite: bool = False, rewrite_max_tokens: int = 512):
        self.names = tuple(n.strip() for n in names if n and n.strip())
        self.local_rewrite = local_rewrite
        self.rewrite_max_tokens = rewrite_max_tokens
        # Longest first, so "Mary Ann Smith" wins over "Mary Ann"; any whitespace between the parts.
        parts = sorted({n for n in self.names}, key=len, reverse=True)
        self._names = re.compile(
            "|".join(r"(?<!\w)" + r"\s+".join(re.escape(w) for w in n.split()) + r"(?!\w)" for n in parts),
            re.IGNORECASE) if parts else None

    def __repr__(self) -> str:
        return f"Scrubber(names={len(self.names)}, local_rewrite={self.local_rewrite})"

    def scrub(self, text: str) -> str:
        # Order matters: emails hold names and digits; IPs and cards must go before the looser
        # phone patterns would take their digits.
        text = _EMAIL.sub("[EMAIL]", text)
        text = _IPV6.sub(_ipv6, text)
        text = _IPV4.sub("[IP]", text)
        text = _CARD.sub(_card, text)
        text = _SSN.sub("[SSN]", text)
        text = _PHONE_INTL.sub(_intl_phone, text)
        text = _PHONE_US.sub("[PHONE]", text)
        if self._names is not None:
            text = self._names.sub("[NAME]", text)
        return text

    async def shield(self, ctx: RunContext, text: str) -> str:
        """Have the local model rewrite `text` without personal data, then scrub the rewrite."""
        if not self.local_rewrite or not text.strip() or ctx.protocol.local is None:
            return self.scrub(text)
        from minions.protocols.baselines import render  # prompts live with the protocols

        messages = [Message(role="system", content=render("privacy_rewrite", names=", ".join(self.names) or "none")),
                    Message(role="user", content=text)]
        completion = await ctx.call("local", messages, Options(max_tokens=self.rewrite_max_tokens, temperature=0.0),
                                    step="privacy")
        # An empty or useless rewrite must not turn into "no message": fall back to the scrubbed original.
        return self.scrub(completion.text.strip() or text)


def _ipv6(m: re.Match[str]) -> str:
    cand = m.group()
    try:
        ipaddress.IPv6Address(cand.split("%", 1)[0])
    except ValueError:
        return cand
    return "[IP]"


def _card(m: re.Match[str]) -> str:
    digits = "".join(_DIGITS.findall(m.group()))
    return "[CARD]" if luhn_ok(digits) else m.group()


def _intl_phone(m: re.Match[str]) -> str:
    n = len(_DIGITS.findall(m.group()))
    return "[PHONE]" if 7 <= n <= 15 else m.group()
