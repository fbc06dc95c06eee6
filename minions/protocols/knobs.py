"""Every knob surface, derived from the protocols' own Config classes.

A knob is a field of some protocol's `Config`: its type, default, bounds, choices and
`Field(description=...)` are the single source of truth. `surface()` reads them once for every
front end — the CLI flags (`add_flags`), the app's widgets, serve's request schema and MCP's tool
arguments (`request_model`), eval's TOML validation — and `check_knobs` is the one validator: an
unknown or misspelt knob, or a value the protocol refuses, is a `ConfigError` naming the fix.
Adding a field to a Config makes it reachable from every door with no other edit.
"""

from __future__ import annotations

import argparse
import difflib
import math
import typing
from collections.abc import Iterable, Mapping
from functools import cache
from typing import Any, Literal

import annotated_types
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from minions import errors

Kind = Literal["int", "float", "bool", "choice", "text", "read", "verbatim"]

#: knob defaults for a stand-in remote (`Client.stand_in`: the embedded 135M model playing the cloud
#: model): its final answer, when its own figures are not backed by what the local model found and verified, is
#: replaced by the most supported verified local answer (marked degraded) instead of only being
#: flagged grounded=false; Minion's worker first answers the user's question itself, not the
#: stand-in's first question. Explicit knobs win. Applied by `build.resolved_knobs`.
STAND_IN_KNOBS: dict[str, Any] = {"ungrounded_answer": "fallback", "first_question": "task"}


class Knob(BaseModel):
    """One knob as every front end shows it. Bounds are the loosest over the protocols that have it
    (the chosen protocol's Config checks its own); `defaults` are per protocol."""

    model_config = ConfigDict(frozen=True)

    name: str
    kind: Kind
    optional: bool = False          # None is a value ("no cap", "auto")
    choices: tuple[str, ...] = ()
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    description: str = ""
    defaults: dict[str, Any] = Field(default_factory=dict)   # protocol -> default
    protocols: tuple[str, ...] = ()

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def minimum(self) -> float | None:
        return self.ge if self.ge is not None else self.gt

    @property
    def maximum(self) -> float | None:
        return self.le if self.le is not None else self.lt

    def parse_text(self, text: str) -> Any:
        """A value typed as text (a CLI flag, a text widget) in this knob's type; ValueError if not."""
        if self.kind == "int":
            if not text.strip().isascii():
                raise ValueError(f"{text!r} is not a whole number")
            return int(text)
        if self.kind == "float":
            v = float(text)
            if math.isnan(v):  # infinity is the Config's to refuse (local_time_budget=inf: no time limit)
                raise ValueError(f"{text!r} is not a number")
            return v
        if self.kind == "bool":
            low = text.strip().lower()
            if low not in ("true", "false", "1", "0", "yes", "no", "on", "off"):
                raise ValueError(f"{text!r} is not true or false")
            return low in ("true", "1", "yes", "on")
        if self.kind == "read":
            from minions.protocols.reading import ReadBudget

            ReadBudget.parse(text)  # refused here, with the forms it takes
            return text
        if self.kind == "verbatim":
            from minions.egress.budget import MaxVerbatim

            MaxVerbatim.parse(text)  # "12x", "150%": refused here, with the forms it takes
            return text
        if self.kind == "choice" and text not in self.choices:
            raise ValueError(f"{text!r} is not one of {', '.join(self.choices)}")
        return text


def _kind(annotation: Any) -> tuple[Kind, bool, tuple[str, ...]]:
    from minions.egress.budget import MaxVerbatim
    from minions.protocols.reading import ReadBudget

    optional = False
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) is typing.Annotated:
        return _kind(args[0])
    if args and type(None) in args and typing.get_origin(annotation) is not Literal:
        optional = True
        rest = [a for a in args if a is not type(None)]
        annotation = rest[0] if len(rest) == 1 else annotation
        if typing.get_origin(annotation) is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
    if typing.get_origin(annotation) is Literal:
        return "choice", optional, tuple(str(a) for a in typing.get_args(annotation))
    if annotation is ReadBudget:
        return "read", optional, ()
    if annotation is MaxVerbatim:
        return "verbatim", optional, ()
    if annotation is bool:
        return "bool", optional, ()
    if annotation is int:
        return "int", optional, ()
    if annotation is float:
        return "float", optional, ()
    return "text", optional, ()


def _bounds(metadata: Iterable[Any]) -> dict[str, float]:
    out: dict[str, float] = {}
    for m in metadata:
        for attr, cls in (("ge", annotated_types.Ge), ("gt", annotated_types.Gt), ("le", annotated_types.Le),
                          ("lt", annotated_types.Lt)):
            if isinstance(m, cls):
                out[attr] = float(getattr(m, attr))
    return out


@cache
def surface() -> dict[str, Knob]:
    """Every knob of every protocol, by name, in a stable order (the base knobs first)."""
    from minions.protocols.registry import BUILTIN, protocol_class

    PROTOCOL_NAMES = tuple(BUILTIN)  # noqa: N806  the built-in protocols, as the package lists them

    found: dict[str, dict[str, Any]] = {}
    bounds: dict[str, list[dict[str, float]]] = {}
    for proto in PROTOCOL_NAMES:
        for name, field in protocol_class(proto).Config.model_fields.items():
            kind, optional, choices = _kind(field.annotation)
            k = found.setdefault(name, {"name": name, "kind": kind, "optional": optional, "choices": choices,
                                        "description": "", "defaults": {}, "protocols": ()})
            k["defaults"][proto] = field.default
            k["protocols"] = (*k["protocols"], proto)
            k["description"] = k["description"] or field.description or ""
            bounds.setdefault(name, []).append(_bounds(field.metadata))
    for name, k in found.items():  # the loosest bound over the protocols that have the knob
        for b, pick in (("ge", min), ("gt", min), ("le", max), ("lt", max)):
            values = [d[b] for d in bounds[name] if b in d]
            if len(values) == len(bounds[name]):  # a protocol without the bound leaves it open
                k[b] = pick(values)
    return {n: Knob(**d) for n, d in found.items()}


def for_protocol(protocol: str) -> dict[str, Knob]:
    """The knobs `protocol` accepts."""
    return {n: k for n, k in surface().items() if protocol in k.protocols}


class KnobError(errors.ConfigError):
    """A knob refused: `knob` names the first one at fault (serve reports it as the 400's param)."""

    def __init__(self, message: str, knob: str):
        super().__init__(message)
        self.knob = knob


def unknown_knobs(names: Iterable[str], valid: Iterable[str], where: str) -> KnobError:
    """The error for knobs `where` does not take, with the likely one meant and the valid ones."""
    valid = sorted(valid)
    parts = []
    for name in sorted(names):
        near = difflib.get_close_matches(name, valid, n=1)
        parts.append(f"{name!r}" + (f" (did you mean {near[0]!r}?)" if near else ""))
    return KnobError(f"Unknown knob {', '.join(parts)} for {where}; its knobs are: {', '.join(valid)}.",
                     knob=sorted(names)[0])


def check_knobs(protocol: str, knobs: Mapping[str, Any]) -> dict[str, Any]:
    """`knobs` (None values dropped) if `protocol`'s Config accepts every name and value; else a
    ConfigError that names the knob, what is wrong and the knobs it has (did-you-mean included)."""
    from minions.protocols.registry import protocol_class

    given = {k: v for k, v in knobs.items() if v is not None}
    config = protocol_class(protocol).Config
    if unknown := set(given) - set(config.model_fields):
        raise unknown_knobs(unknown, config.model_fields, f"the {protocol} protocol")
    try:
        config(**given)
    except ValidationError as e:
        problems = "; ".join(f"{'.'.join(map(str, err['loc']))}={err.get('input')!r}: {err['msg']}"
                             for err in e.errors())
        first = ".".join(map(str, e.errors()[0]["loc"])) if e.errors() else ""
        raise KnobError(f"Bad knob value for the {protocol} protocol: {problems}.", knob=first) from None
    return given


def split_knobs(protocols: Iterable[str], knobs: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Knobs meant for several protocols (a server's flags, a sweep's [knobs]): each protocol gets
    those its Config declares, checked; a knob none of `protocols` accepts is a ConfigError."""
    protocols = list(protocols)
    given = {k: v for k, v in knobs.items() if v is not None}
    accepted = {p: set(for_protocol(p)) for p in protocols}
    if unknown := set(given) - set().union(*accepted.values()):
        raise unknown_knobs(unknown, set().union(*accepted.values()), "the protocols " + ", ".join(protocols))
    return {p: check_knobs(p, {k: v for k, v in given.items() if k in accepted[p]}) for p in protocols}


def split_server_knobs(protocols: Iterable[str], knobs: Mapping[str, Any], default: str) -> dict[str, dict[str, Any]]:
    """`split_knobs` for a server's flags. A protocol whose remote reads the documents by design
    (remote-only, RAG: `Config.sends_documents`) refuses a server-wide verbatim budget; the server
    still starts for the others, and keeps that protocol's knobs unchecked so each request for it is
    refused (400) naming why. The default protocol must accept them, as before."""
    protocols = list(protocols)
    from minions.protocols.registry import protocol_class

    sends = [p for p in protocols if p != default and getattr(protocol_class(p).Config, "sends_documents", False)]
    try:
        return split_knobs(protocols, knobs)
    except KnobError as e:
        if not sends or e.knob not in ("max_verbatim", "quotes"):
            raise
    rest = [p for p in protocols if p not in sends]  # every name is known: split_knobs checks that first
    out = split_knobs(rest, {k: v for k, v in knobs.items() if any(k in for_protocol(p) for p in rest)})
    for p in sends:
        out[p] = {k: v for k, v in knobs.items() if v is not None and k in for_protocol(p)}
    return out


# --- the surfaces ------------------------------------------------------------------------------

def _help(k: Knob) -> str:
    who = "" if len(k.protocols) >= 5 else " [" + ", ".join(k.protocols) + "]"
    defaults = set(map(repr, k.defaults.values()))
    default = (f" (default {next(iter(k.defaults.values()))!r})" if len(defaults) == 1
               else " (default " + ", ".join(f"{p}: {d!r}" for p, d in k.defaults.items()) + ")")
    if k.name in STAND_IN_KNOBS:
        default = default[:-1] + f"; {STAND_IN_KNOBS[k.name]!r} with a stand-in remote)"
    return (k.description or k.name.replace("_", " ")).replace("%", "%%") + who + default.replace("%", "%%")


_METAVARS = {"verbatim": "N|P%"}  # characters in all, or a share of each document


def add_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per knob (`--chunk-size N`), typed from the Config; None: the protocol's default.
    Values are checked by `check_knobs` against the chosen protocol (bounds differ per protocol)."""
    group = parser.add_argument_group("protocol knobs (from the protocols' Config; each protocol takes its own)")
    for k in surface().values():
        def parse(text: str, k: Knob = k) -> Any:
            try:
                return k.parse_text(text)
            except ValueError as e:
                raise argparse.ArgumentTypeError(str(e)) from None
        # default=SUPPRESS: a knob not given is absent (the protocol's own default applies), and
        # the help shows the protocols' defaults, not argparse's
        if k.kind == "bool":
            group.add_argument(k.flag, dest=k.name, default=argparse.SUPPRESS,
                               action=argparse.BooleanOptionalAction, help=_help(k))
        else:
            group.add_argument(k.flag, dest=k.name, default=argparse.SUPPRESS, type=parse,
                               metavar=None if k.choices else _METAVARS.get(k.kind, k.kind.upper()),
                               choices=k.choices or None,
                               help=_help(k))


def knobs_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The knobs the flags set (not given: left out, the protocol's default applies)."""
    return {n: v for n in surface() if (v := getattr(args, n, None)) is not None}


def _annotation(k: Knob) -> Any:
    base: Any = {"int": int, "float": float, "bool": bool, "text": str, "read": str | int,
                 "verbatim": str | int}.get(k.kind)
    if k.kind == "choice":
        base = Literal[k.choices]
    return base | None


@cache
def request_model(protocol: str | None = None) -> type[BaseModel]:
    """A pydantic model of the knobs (one protocol's, or all): serve's `minions.knobs` and MCP's
    `knobs` argument. Unknown names are refused; bounds and descriptions come from the Config."""
    knobs = surface() if protocol is None else for_protocol(protocol)
    fields: dict[str, Any] = {}
    for k in knobs.values():
        extra = {b: getattr(k, b) for b in ("ge", "gt", "le", "lt") if getattr(k, b) is not None}
        if k.kind == "float":
            extra["allow_inf_nan"] = k.maximum is None  # NaN never; infinity where no bound excludes it
        fields[k.name] = (_annotation(k), Field(None, description=_help(k).replace("%%", "%"), **extra))
    return create_model(f"Knobs{'_' + protocol.replace('-', '_') if protocol else ''}",
                        __config__=ConfigDict(extra="forbid"), **fields)


__all__ = ["STAND_IN_KNOBS", "Knob", "KnobError", "add_flags", "check_knobs", "for_protocol", "knobs_from_args",
           "request_model", "split_knobs", "split_server_knobs", "surface", "unknown_knobs"]
