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

from .config import (
    CUSTOM,
    DEFAULT_PROTOCOL,
    LOCAL_PRESETS,
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


def _knobs(protocol: str) -> tuple[dict[str, int | bool | str], str | None]:
    from minions.protocols.reading import ReadBudget

    try:
        knobs = knobs_for(protocol)
    except ImportError as e:
        return {}, f"The {protocol} protocol is not available in this installation ({e})."
    values: dict[str, int | bool | str] = {}
    problem = None
    for knob, default in knobs:
        key = f"knob.{protocol}.{knob.name}"  # per protocol: each keeps its own defaults
        if knob.kind is bool:
            values[knob.name] = st.checkbox(knob.label, value=bool(default), key=key, help=knob.help or None)
        elif knob.kind is str:
            text = st.text_input(knob.label, value="" if default is None else str(default), key=key,
                                 placeholder="auto", help=knob.help or None).strip()
            if text:
                try:
                    ReadBudget.parse(text)
                    values[knob.name] = text
                except ValueError as e:
                    problem = str(e)
        elif knob.optional or (isinstance(default, int) and not isinstance(default, bool)):
            start = 0 if default is None else default
            n = int(st.number_input(knob.label, min_value=min(knob.min, start), max_value=max(knob.max, start),
                                    value=start, step=1, key=key, help=knob.help or None))
            if not (knob.optional and n == 0):
                values[knob.name] = n
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

        st.header("Models")
        local = _model_picker("Local model (reads the documents)", LOCAL_PRESETS, "local") \
            if "local" in needs else None
        remote = _model_picker("Remote model (plans and answers)", REMOTE_PRESETS, "remote")
        if "remote" not in needs:
            st.caption("This protocol does not call the remote model; it prices the remote-only estimate.")
        remote_provider, providers = _provider(remote), {_provider(local or ""), _provider(remote)}
        price_as, base_url, host = None, None, None
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
                knobs["remote_reasoning"] = effort
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
                        remote_base_url=base_url, ollama_host=host, max_remote_usd=budget or None)
    return settings, secrets, problem
