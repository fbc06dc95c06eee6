"""The sidebar: protocol and knobs, models, API keys. Returns `Settings` and the typed keys.

Typed keys live only in this session's widget state; they are handed to client constructors and
never shown, logged or exported.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import streamlit as st

from minions import errors
from minions.clients import parse_spec
from minions.clients.spec import providers
from minions.protocols import PROTOCOL_NAMES
from minions.protocols.knobs import Knob

from .config import (
    CUSTOM,
    DEFAULT_PROTOCOL,
    LOCAL_PRESETS,
    MAIN_KNOBS,
    PROTOCOL_LABELS,
    REASONING_CHOICES,
    REMOTE_PRESETS,
    STAND_IN_PRICE,
    Settings,
    key_env,
    knobs_for,
    model_roles,
)


def _pick(label: str, options: Sequence[str], **kw: Any) -> str:
    """st.selectbox over given options: never None (its type says it may be)."""
    return str(st.selectbox(label, options, **kw))


def _openai_wire() -> set[str]:
    """Providers that speak the OpenAI format and so take a server URL."""
    return {p.name for p in providers().values() if p.wire == "openai"}


def _provider(spec: str) -> str | None:
    try:
        return parse_spec(spec)[0]
    except errors.ConfigError:
        return None


def _model_picker(label: str, presets: dict[str, str], role: str) -> str:
    choice = _pick(label, [*presets, CUSTOM], format_func=lambda s: presets.get(s, s),
                          key=f"{role}_preset")
    if choice != CUSTOM:
        return choice
    return st.text_input(f"{label} spec", key=f"{role}_spec",
                         placeholder="provider/model, e.g. ollama/llama3.2:3b").strip()


def _widget(knob: Knob, default: Any, key: str) -> tuple[Any, str | None]:
    """One knob's widget, from its type, bounds, choices and description (protocols/knobs.py).
    Returns (value or None for "the protocol's default", a problem with what was typed)."""
    label = knob.name.replace("_", " ").capitalize()
    help_ = knob.description or None
    if knob.kind == "bool":
        return st.checkbox(label, value=bool(default), key=key, help=help_), None
    if knob.kind == "choice":
        return st.selectbox(label, knob.choices, index=knob.choices.index(default), key=key, help=help_), None
    if knob.kind in ("int", "float"):
        num = int if knob.kind == "int" else float
        lo = knob.minimum
        hi = knob.maximum
        if knob.optional and default is None:  # 0 shows "none" (no cap / auto)
            n = st.number_input(f"{label} (0 = none)", min_value=num(0), max_value=None if hi is None else num(hi),
                                value=num(0), key=key, help=help_)
            return (None if n == 0 else num(n)), None
        n = st.number_input(label, min_value=None if lo is None else num(lo),
                            max_value=None if hi is None else num(hi), value=num(default), key=key, help=help_,
                            **({"step": 1} if num is int else {"format": "%g"}))
        return num(n), None
    text = st.text_input(label, value="" if default is None else str(default), key=key, placeholder="auto",
                         help=help_).strip()
    if not text:
        return None, None
    try:
        return knob.parse_text(text), None
    except ValueError as e:
        return None, f"{knob.name}: {e}"


def _knobs(protocol: str) -> tuple[dict[str, int | float | bool | str], str | None]:
    """A widget per knob of the protocol's Config (main ones first, the rest under "More knobs");
    each protocol keeps its own values (keys per protocol)."""
    try:
        knobs = knobs_for(protocol)
    except ImportError as e:
        return {}, f"The {protocol} protocol is not available in this installation ({e})."
    values: dict[str, int | float | bool | str] = {}
    problem = None
    more = st.expander("More knobs")
    for knob, default in knobs:
        area = st.container() if knob.name in MAIN_KNOBS else more
        with area:
            value, why = _widget(knob, default, f"knob.{protocol}.{knob.name}")
        problem = problem or why
        if value is not None and value != default:
            values[knob.name] = value
    return values, problem


def render() -> tuple[Settings, dict[str, str], str | None]:
    """Returns the settings, the typed API keys (env var -> key) and a problem with the protocol."""
    with st.sidebar:
        st.header("Protocol")
        protocol = _pick("Protocol", PROTOCOL_NAMES, index=PROTOCOL_NAMES.index(DEFAULT_PROTOCOL),
                                key="protocol", format_func=lambda p: PROTOCOL_LABELS.get(p, p))
        knobs, problem = _knobs(protocol)
        needs = model_roles(protocol)
        budget = st.number_input("Remote budget in USD (0 = no limit)", min_value=0.0, value=0.0,
                                 step=0.01, format="%.6f", key="budget",
                                 help="The run stops before a remote call that could exceed it.")
        privacy, names = _privacy()
        index = st.text_input("Corpus index (optional)", key="index", value=os.environ.get(INDEX_ENV, ""),
                              help="A store built by `minions index DIR... --store PATH`: a question asked "
                                   "with no uploaded document is answered from the documents it picks "
                                   "there.").strip() or None

        st.header("Models")
        local = _model_picker("Local model (reads the documents)", LOCAL_PRESETS, "local") \
            if "local" in needs else None
        remote = _model_picker("Remote model (plans and answers)", REMOTE_PRESETS, "remote")
        if "remote" not in needs:
            st.caption("This protocol does not call the remote model; it prices the remote-only estimate.")
        remote_provider, providers = _provider(remote), {_provider(local or ""), _provider(remote)}
        price_as, base_url, host, reasoning = None, None, None, None
        if remote_provider in ("llamacpp", "ollama"):
            price_as = st.text_input(
                "Price the remote as", value=STAND_IN_PRICE if remote_provider == "llamacpp" else "",
                key=f"price_as.{remote_provider}",
                help="A local model standing in for a cloud model is labelled “stand-in” and priced "
                     "as this model, so the cost panel shows what the cloud would have charged.").strip() or None
        if "remote" in needs and remote_provider not in ("llamacpp", "ollama", None):
            effort = _pick("Remote reasoning effort", REASONING_CHOICES, key="remote_reasoning",
                                  help="For reasoning models (OpenAI gpt-5/o-series, Claude extended "
                                       "thinking). Default keeps planning cheap; models without "
                                       "reasoning refuse any other value.")
            if effort != "default":
                reasoning = effort
        if remote_provider in _openai_wire():
            base_url = st.text_input("Remote server URL (optional)", key="base_url",
                                     placeholder="e.g. http://localhost:8000/v1 for vLLM").strip() or None
        if "ollama" in providers:
            host = st.text_input("Ollama host", key="ollama_host",
                                 value=os.environ.get("OLLAMA_HOST") or "http://localhost:11434").strip() or None

        secrets: dict[str, str] = {}
        envs = sorted({e for e in (key_env(local or ""), key_env(remote)) if e})
        if envs:
            st.header("API keys")
            st.caption("Read from the environment, or typed here: kept in this browser session only, "
                       "never logged or exported.")
        for env in envs:
            found = bool(os.environ.get(env))
            typed = st.text_input(env, type="password", key=f"key.{env}",
                                  placeholder="found in the environment" if found else "paste your key")
            if typed.strip():
                secrets[env] = typed.strip()
            elif not found:
                st.caption(f"⚠️ {env} is not set: set it before starting the app, or paste it above.")

    settings = Settings(protocol=protocol, knobs=knobs, local=local, remote=remote, remote_price_as=price_as,
                        remote_base_url=base_url, ollama_host=host, max_remote_usd=budget or None,
                        reasoning=reasoning, privacy=privacy, private_names=names, index=index)
    return settings, secrets, problem


#: `minions app --index PATH` hands the store to the app in this variable
INDEX_ENV = "MINIONS_INDEX"


def _privacy() -> tuple[bool, tuple[str, ...]]:
    """The privacy switch and the names to scrub (one per line; listing a name turns privacy on)."""
    on = st.checkbox("Scrub personal data before the remote sees it", key="privacy",
                     help="Emails, phone numbers, ids, card numbers and the names below are replaced by "
                          "placeholders in every message sent to the remote model.")
    text = st.text_area("Private names (one per line)", key="private_names",
                        help="People or companies to scrub as well; listing one turns scrubbing on.")
    names = tuple(dict.fromkeys(n.strip() for n in text.splitlines() if n.strip()))
    return on or bool(names), names
