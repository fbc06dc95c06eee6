"""Privacy for remote-bound messages: a deterministic scrubber and the paper's local-rewrite shield.

`Scrubber.scrub` is pure regex work, the same output for the same input, so it can run on every
message `RunContext.call` sends to the remote. It replaces emails (internationalised ones too),
phone numbers (US, local "555-2671" and international), SSNs (also "123.45.6789" and labelled bare
digits, "SSN#123456789"), payment card numbers grouped by spaces, dashes or dots (only Luhn-valid
ones, so ordinary long figures in a filing survive), IPv4 (zero-padded octets too) and IPv6
addresses, and the names the caller lists — in any case, with their parts joined by spaces, dots,
dashes or underscores ("Maria-Gonzalez", "maria_gonzalez"), and inverted ("Gonzalez, Maria") —
with typed placeholders.

Text is scrubbed before it is cut, never after: `Scrubber.scrub_slice` scrubs a slice as part of
its whole text (an excerpt whose edge splits a card number), and protocols call
`RunContext.redact` before they clip anything for the remote. Document ids and titles made from
file names go through `DocumentAliases`: the remote knows such a document as "private-doc-N".

With `local_rewrite=True`, protocols also pass what the local model wrote for the remote through
`shield` — Minion each worker reply, MinionS each round's aggregated job outputs (one local call per
round): the local model rewrites it without personal data (the privacy shield of the Minions
paper), and the rewrite is scrubbed anyway — a small model misses things.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable, Sequence
from pathlib import PurePath
from typing import TYPE_CHECKING
from typing import Protocol as TypingProtocol

from minions.clients.base import Message, Options
from minions.documents import Document
from minions.protocols.templates import render

if TYPE_CHECKING:
    from minions.protocols.gateway import CallGateway

# Unicode-aware (\w), so internationalised addresses ("maria@例え.jp") are caught too.
_EMAIL = re.compile(r"(?<![\w.%+-])[\w.%+-]+@[\w-]+(?:\.[\w-]+)*\.[^\W\d_]{2,}")
# IPv6 candidates (hex groups with at least two colons, optionally an embedded IPv4 tail), then
# validated by `ipaddress` so clock times ("10:30:00") and C++ scopes ("std::map") are left alone.
_IPV6 = re.compile(r"(?=[0-9A-Fa-f:])(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:\d{1,3}(?:\.\d{1,3}){3}|[0-9A-Fa-f]{0,4})"
                   r"(?:%[\w.]+)?(?![\w:]|\.\d)")
# Octets may be zero-padded ("192.168.001.023").
_OCTET = r"(?:25[0-5]|2[0-4]\d|[01]?\d?\d)"
_IPV4 = re.compile(rf"(?=\d)(?<![\w.]){_OCTET}(?:\.{_OCTET}){{3}}(?![\w]|\.\d)")
# 13-19 digits, plain or grouped the way cards are printed (4-4-4-4[-3], 4-6-5, 4-6-4) with one
# kind of separator (space, dash or dot); Luhn decides. Mixed separators are not a card: exhibit
# tables in a 10-K ("99.8 000-15175 10.5") would otherwise pass one time in ten.
_CARD = re.compile(r"(?=\d)(?<![\w-])(?<!\d\.)(?:\d{13,19}|\d{4}([ .-])\d{4}\1\d{4}\1\d{2,4}(?:\1\d{1,3})?"
                   r"|\d{4}([ .-])\d{6}\2\d{4,5})(?![\w]|[-.]\d)")
_SSN = re.compile(r"(?=\d)(?<![\w-])(?<!\d\.)(?!000|666|9\d\d)\d{3}([-. ])(?!00)\d{2}\1(?!0000)\d{4}(?![\w]|[-.]\d)")
# "SSN#123456789", "SSN: 123 45 6789", "social security number 123456789": the label makes nine
# bare digits an SSN; only the digits are replaced.
_SSN_LABELLED = re.compile(r"(?i)(?=[s])(?<![^\W_])(?:ssn|social\s+security(?:\s+(?:number|no\.?))?)\s*(?:#|no\.?|:)?\s*[#:]?\s*"
                           r"(\d{9}|\d{3}([-. ])\d{2}\2\d{4})(?!\w)")
# Area codes start with 2-9 (NANP), which spares ids like SEC CIKs ("0000320193").
_PHONE_US = re.compile(r"(?=[\d+(])(?<![\w+])(?:\+?1[-. ]?)?(?:\([2-9]\d{2}\)[-. ]?|[2-9]\d{2}[-. ]?)\d{3}[-. ]?\d{4}"
                       r"(?!\w|-\d)")
# A local number without area code, "555-2671" (exchange codes start with 2-9, too).
_PHONE_LOCAL = re.compile(r"(?=[2-9])(?<![\w+.-])[2-9]\d{2}[-.]\d{4}(?![\w]|[-.]\d)")
# "+44 20 7946 0958", "+49-30-1234567", "+33 (0)1 23 45 67 89": a leading + and 7-15 digits.
_PHONE_INTL = re.compile(r"(?=\+)(?<![\w+])\+\d{1,3}(?:[-. ]?(?:\(\d{1,4}\)|\d{1,5})){1,6}(?!\w)")
_DIGITS = re.compile(r"\d")
# Parts of a listed name may be joined by spaces, dots, dashes or underscores (a file name's slug:
# "Maria-Gonzalez-record", "maria_gonzalez"); a name is a whole word where letters or digits end.
_NAME_SEP = r"[\s._-]+"
_NOT_ALNUM_BEFORE, _NOT_ALNUM_AFTER = r"(?<![^\W_])", r"(?![^\W_])"
_MASK = "\x00"  # stands in for text a rule already claimed: no pattern matches it or across it
# Each pattern opens with a lookahead for its first character: it lets the regex engine skip
# ahead to candidates instead of trying the lookbehinds at every position (2-3x faster on a 10-K).

Span = tuple[int, int, str]


class PrivacyPolicy(TypingProtocol):
    """What a run needs of its privacy setting (`Scrubber` is the one minions ships): scrub text bound
    for the remote, whole or as a slice of a larger text, and optionally have the local model rewrite
    what it wrote (`local_rewrite`, through `shield`)."""

    local_rewrite: bool

    def spans(self, text: str) -> list[Span]: ...

    def scrub(self, text: str) -> str: ...

    def scrub_slice(self, text: str, start: int, end: int, spans: list[Span] | None = None) -> str: ...

    async def shield(self, ctx: CallGateway, text: str) -> str: ...
_NEEDLES = {_EMAIL: "@", _PHONE_INTL: "+", _IPV6: ":"}  # a character each of these patterns needs


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
        # Longest first, so "Mary Ann Smith" wins over "Mary Ann". Each name also in its listed
        # order inverted: "Gonzalez, Maria" / "Gonzalez_Maria" for "Maria Gonzalez".
        forms, firsts = [], set()
        for n in sorted(set(self.names), key=len, reverse=True):
            raw = n.split()
            words = [re.escape(w) for w in raw]
            forms.append(_NAME_SEP.join(words))
            firsts |= {raw[0][0].lower(), raw[-1][0].lower()}
            if len(words) > 1:
                forms.append(words[-1] + rf"(?:\s*,\s*|{_NAME_SEP})" + _NAME_SEP.join(words[:-1]))
        starts = "".join(re.escape(c) for c in sorted(firsts))  # see the note on lookaheads above
        self._names = re.compile(
            f"(?=[{starts}])(?:" + "|".join(f"{_NOT_ALNUM_BEFORE}{f}{_NOT_ALNUM_AFTER}" for f in forms) + ")",
            re.IGNORECASE) if forms else None
        # Order matters: emails hold names and digits; IPs and cards must go before the looser
        # phone patterns would take their digits.
        self._rules: list[tuple[re.Pattern[str], Callable[[re.Match[str]], Span | None]]] = [
            (_EMAIL, _fixed("[EMAIL]")), (_IPV6, _ipv6), (_IPV4, _fixed("[IP]")), (_CARD, _card),
            (_SSN, _fixed("[SSN]")), (_SSN_LABELLED, _group1("[SSN]")), (_PHONE_INTL, _intl_phone),
            (_PHONE_US, _fixed("[PHONE]")), (_PHONE_LOCAL, _fixed("[PHONE]"))]
        if self._names is not None:
            self._rules.append((self._names, _fixed("[NAME]")))

    def __repr__(self) -> str:
        return f"Scrubber(names={len(self.names)}, local_rewrite={self.local_rewrite})"

    def spans(self, text: str) -> list[Span]:
        """Where the personal data in `text` is: sorted, non-overlapping (start, end, placeholder).
        Each rule runs on the text with what earlier rules claimed masked out."""
        found: list[Span] = []
        work = text
        for pattern, judge in self._rules:
            needle = _NEEDLES.get(pattern)
            if needle is not None and needle not in work:
                continue  # a plain substring test is far cheaper than a regex scan that finds nothing
            new = [sp for m in pattern.finditer(work) if (sp := judge(m)) is not None]
            if new:
                found += new
                parts, last = [], 0
                for start, end, _ in new:
                    parts += [work[last:start], _MASK * (end - start)]
                    last = end
                work = "".join(parts) + work[last:]
        return sorted(found)

    def scrub(self, text: str) -> str:
        return self.scrub_slice(text, 0, len(text))

    def scrub_slice(self, text: str, start: int, end: int, spans: list[Span] | None = None) -> str:
        """`text[start:end]`, scrubbed as part of the whole `text`: an item cut by the slice's edges
        (a card number split between two excerpts) is still recognised and replaced. Pass `spans`
        (from `spans(text)`) to slice one text many times."""
        spans = self.spans(text) if spans is None else spans
        out, pos = [], start
        for s, e, placeholder in spans:
            if e <= start or s >= end:
                continue
            out += [text[pos:max(s, start)], placeholder]
            pos = min(e, end)
        out.append(text[pos:end])
        return "".join(out)

    async def shield(self, ctx: CallGateway, text: str) -> str:
        """Have the local model rewrite `text` without personal data, then scrub the rewrite."""
        if not self.local_rewrite or not text.strip() or ctx.protocol.local is None:
            return self.scrub(text)
        messages = [Message(role="system", content=render("privacy_rewrite", names=", ".join(self.names) or "none")),
                    Message(role="user", content=text)]
        completion = await ctx.call("local", messages, Options(max_tokens=self.rewrite_max_tokens, temperature=0.0),
                                    step="privacy")
        # An empty or useless rewrite must not turn into "no message": fall back to the scrubbed original.
        return self.scrub(completion.text.strip() or text)


class DocumentAliases:
    """Document ids come from file names and may hold personal data ("Maria-Gonzalez-record",
    "jane.doe-example.com-notes", where the slug has already broken the email apart so no pattern
    can see it). A document whose id, title or file name holds personal data is known to the
    remote by an alias ("private-doc-1"): `hide` puts the alias into remote-bound text (chunk ids
    "<id>#3" included). In the remote's replies `reveal_ids` maps back only quoted ids — a plan's
    "chunk_ids" entries — and leaves its prose as written: real ids put back into text the run may
    clip and send again could be cut where `hide` no longer recognises them."""

    def __init__(self, scrubber: PrivacyPolicy, docs: Sequence[Document]):
        taken = {d.id for d in docs}
        self.to_alias: dict[str, str] = {}
        for i, d in enumerate(docs, start=1):
            if _holds_personal_data(scrubber, d):
                alias = f"private-doc-{i}"
                while alias in taken:
                    alias += "x"
                self.to_alias[d.id] = alias
        self.to_real = {a: d for d, a in self.to_alias.items()}
        self._hide = _alternation(self.to_alias)
        self._reveal = re.compile(
            '"(' + "|".join(re.escape(a) for a in sorted(self.to_real, key=len, reverse=True)) + r')(#\d+)?"'
        ) if self.to_real else None
        # A title taken from the text's first line was shortened ("...Maria Gonza…") before any
        # scrubber saw it: such a title is replaced by its line scrubbed whole, then shortened.
        self.titles: dict[str, str] = {}
        for d in docs:
            safe = _scrubbed_title(scrubber, d)
            if safe != d.title:
                self.titles[d.title] = safe

    def hide(self, text: str) -> str:
        if self._hide:
            text = self._hide.sub(lambda m: self.to_alias[m.group()], text)
        for title in sorted(self.titles, key=len, reverse=True):
            text = text.replace(title, self.titles[title])
        return text

    def reveal_ids(self, text: str) -> str:
        """Quoted aliases ("private-doc-1", "private-doc-1#3") back to the real ids."""
        if self._reveal is None:
            return text
        return self._reveal.sub(lambda m: f'"{self.to_real[m.group(1)]}{m.group(2) or ""}"', text)

    def describe(self) -> str:
        return ", ".join(f"{alias} is {real}" for real, alias in self.to_alias.items())


def _holds_personal_data(scrubber: PrivacyPolicy, doc: Document) -> bool:
    stem = PurePath(doc.source).stem if doc.source and not doc.source.startswith("<") else ""
    candidates = {doc.id, doc.title, stem, _SLUG_SEP.sub(" ", doc.id), _SLUG_SEP.sub(" ", stem)}
    return any(c and scrubber.scrub(c) != c for c in candidates)


_SLUG_SEP = re.compile(r"[-_]+")


def _scrubbed_title(scrubber: PrivacyPolicy, doc: Document) -> str:
    title = doc.title
    if not title.endswith("…") or len(title) < 2:
        return title
    head = title[:-1]
    i = doc.text.find(head, 0, 8000)
    if i < 0:
        return title
    end = i + len(head)
    return scrubber.scrub_slice(doc.text[: end + 1000], i, end) + "…"


def _alternation(words: dict[str, str]) -> re.Pattern[str] | None:
    if not words:
        return None
    alts = "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))
    return re.compile(rf"(?<![\w.@-])(?:{alts})(?![\w@-]|\.\w)")


def _fixed(placeholder: str) -> Callable[[re.Match[str]], Span]:
    return lambda m: (m.start(), m.end(), placeholder)


def _group1(placeholder: str) -> Callable[[re.Match[str]], Span]:
    return lambda m: (m.start(1), m.end(1), placeholder)


def _ipv6(m: re.Match[str]) -> Span | None:
    try:
        ipaddress.IPv6Address(m.group().split("%", 1)[0])
    except ValueError:
        return None
    return m.start(), m.end(), "[IP]"


def _card(m: re.Match[str]) -> Span | None:
    digits = "".join(_DIGITS.findall(m.group()))
    if not luhn_ok(digits) or all(_YEAR.fullmatch(g) for g in _GROUP_SEP.split(m.group())):
        return None  # a row of years ("2023 2024 2025 2026") in a filing's table is not a card
    return m.start(), m.end(), "[CARD]"


_YEAR = re.compile(r"(?:19|20)\d\d")
_GROUP_SEP = re.compile(r"[ .-]")


def _intl_phone(m: re.Match[str]) -> Span | None:
    n = len(_DIGITS.findall(m.group()))
    return (m.start(), m.end(), "[PHONE]") if 7 <= n <= 15 else None
