"""Sweep configuration: a TOML file (or the equivalent flags), validated, expanded into a grid.

    name = "offline"
    datasets = ["sample"]                    # or [[datasets]] name = "qasper", path = "...", split = "dev"
    protocols = ["minion", "minions", "remote-only", "local-only", "rag"]
    local = "llamacpp/smollm2"               # a list sweeps local models too
    remote = "llamacpp/smollm2"
    remote_price_as = "openai/gpt-4o"        # price the (stand-in) remote as this model
    limit = 3
    [knobs]                                  # fixed; each goes to the protocols that accept it
    local_max_tokens = 96
    [grid]                                   # lists: every combination becomes a configuration
    tasks_per_round = [1, 3]
    [grid.minions]                           # only for one protocol
    chunk_size = [1500, 3000]

A knob no protocol in the sweep accepts is an error (typos should not silently do nothing). Knobs
are the fields of the protocols' Config classes, checked by protocols/knobs.py as every door does.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from minions import errors

if TYPE_CHECKING:
    from minions.protocols.settings import RunSettings

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

PROTOCOL_LEVEL_KNOBS = {"max_remote_usd", "store_text"}  # Protocol.__init__ arguments, not Config fields


class DatasetSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    path: str | None = None
    limit: int | None = Field(None, ge=1)
    split: str | None = None            # QASPER: test / dev / train
    #: only these item ids, in this order (e.g. a chosen FinanceBench subset); applied before `limit`
    ids: list[str] | None = None
    #: FinanceBench: "full" filings, or "evidence": only the pages holding the gold evidence plus
    #: `neighbours` pages either side (page numbers kept) — for machines too slow for whole 10-Ks
    context: Literal["full", "evidence"] = "full"
    neighbours: int = Field(1, ge=0, le=20)


class JudgeSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str
    price_as: str | None = None
    max_tokens: int = Field(128, ge=16)


class SweepConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = "sweep"
    description: str = ""
    datasets: list[DatasetSpec]
    protocols: list[str] = Field(min_length=1)
    local: list[str] = Field(default_factory=lambda: ["llamacpp/smollm2"])
    remote: list[str] = Field(default_factory=lambda: ["llamacpp/smollm2"])
    remote_price_as: str | None = None
    limit: int | None = Field(None, ge=1)
    seed: int | None = None
    concurrency: int = Field(1, ge=1)
    #: seconds per model call (default: each client's own, 120 s); the embedded model on a busy
    #: machine needs more, since a call's time includes waiting for the engine
    request_timeout: float | None = Field(None, gt=0)
    out: str | None = None              # run directory; default runs/<name>
    cache: bool = True
    cache_path: str | None = None       # default <out>/lm_cache.sqlite
    scorer: str | None = None           # override every item's scorer (e.g. "judge")
    judge: JudgeSpec | None = None
    knobs: dict[str, Any] = Field(default_factory=dict)
    grid: dict[str, Any] = Field(default_factory=dict)
    #: a corpus index (`minions index`) holding the items' documents: their stored chunks and embeddings
    #: are used (a document it does not hold is chunked and embedded as without it); not part of a row's key
    index: str | None = None
    #: "product": every combination of the grid's values; "one-at-a-time": vary one knob at a time
    #: from the fixed knobs (the paper's ablations), which keeps big grids affordable
    grid_mode: Literal["product", "one-at-a-time"] = "product"

    @field_validator("datasets", mode="before")
    @classmethod
    def _names(cls, v: Any) -> Any:
        return [{"name": d} if isinstance(d, str) else d for d in ([v] if isinstance(v, str | dict) else v)]

    @field_validator("local", "remote", "protocols", mode="before")
    @classmethod
    def _listify(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v

    @field_validator("protocols")
    @classmethod
    def _distinct(cls, v: list[str]) -> list[str]:
        repeated = sorted({p for p in v if v.count(p) > 1})
        if repeated:  # merging them silently would hide a typo'd grid (issue 21)
            raise ValueError(f"protocol(s) listed twice: {', '.join(repeated)}; list each once and put "
                             "variants in [grid]")
        return v

    @property
    def run_dir(self) -> Path:
        return Path(self.out or Path("runs") / self.name)

    def check_run_dir(self) -> None:
        """The run directory must be a directory or not exist yet: an existing file or a dangling
        symlink at `out` is a ConfigError naming it, found before any work starts."""
        d = self.run_dir
        if d.is_symlink() and not d.exists():
            raise errors.ConfigError(f"out = {d} is a symlink to {os.readlink(d)}, which does not exist: remove "
                                     "it or choose another run directory (--out DIR).")
        if d.exists() and not d.is_dir():
            raise errors.ConfigError(f"out = {d} is an existing file, not a directory: choose another run "
                                     "directory (--out DIR).")


class RunConfig(BaseModel):
    """One point of the grid: a protocol, its models and knobs."""

    protocol: str
    local: str | None
    remote: str | None
    remote_price_as: str | None
    knobs: dict[str, Any]
    label: str = ""

    @property
    def id(self) -> str:
        data = self.model_dump(exclude={"label"})
        return hashlib.sha1(json.dumps(data, sort_keys=True).encode(), usedforsecurity=False).hexdigest()[:10]

    def settings(self) -> RunSettings:
        """This configuration as the recipe's input (budget and protocol validated)."""
        from minions.protocols.settings import RunSettings

        level = {k: v for k, v in self.knobs.items() if k in PROTOCOL_LEVEL_KNOBS}
        knobs = {k: v for k, v in self.knobs.items() if k not in PROTOCOL_LEVEL_KNOBS}
        return RunSettings(protocol=self.protocol, local=self.local, remote=self.remote,
                           price_as=self.remote_price_as, knobs=knobs, **level)


def load_config(path: str | Path, **overrides: Any) -> SweepConfig:
    """Read a TOML sweep config; `overrides` (non-None values) replace its keys."""
    p = Path(path)
    if not p.is_file():
        raise errors.ConfigError(f"No sweep config at {p}: see evals/offline.toml for an example.")
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise errors.ConfigError(f"{p} is not UTF-8 text (byte {e.start} is {e.object[e.start:e.start + 1]!r}): "
                                 "TOML files must be UTF-8; re-save it as UTF-8.") from None
    except tomllib.TOMLDecodeError as e:
        raise errors.ConfigError(f"{p} is not valid TOML: {e}") from e
    except OSError as e:
        raise errors.ConfigError(f"Cannot read the sweep config {p}: {e.strerror or e}.") from e
    data.update({k: v for k, v in overrides.items() if v is not None})
    return validate_config(data, source=str(p))


def validate_config(data: dict[str, Any], source: str = "flags") -> SweepConfig:
    try:
        return SweepConfig.model_validate(data)
    except ValidationError as e:
        problems = "; ".join(f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors())
        raise errors.ConfigError(f"Invalid sweep config ({source}): {problems}") from e


def _accepted(protocol: str) -> tuple[set[str], tuple[str, ...]]:
    from minions.protocols import protocol_class

    cls = protocol_class(protocol)
    return set(cls.Config.model_fields) | PROTOCOL_LEVEL_KNOBS, cls.needs


def _split(table: dict[str, Any], protocols: list[str]) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """Global keys, and per-protocol sub-tables ([grid.minions]); tables of protocols that are not in
    this sweep are ignored, so one file can hold knobs for runs with fewer protocols."""
    from minions.protocols import PROTOCOL_NAMES

    glob = {k: v for k, v in table.items() if k not in PROTOCOL_NAMES}
    per = {k: v for k, v in table.items() if k in PROTOCOL_NAMES and k in protocols}
    for name, sub in table.items():
        if name in PROTOCOL_NAMES and not isinstance(sub, dict):
            raise errors.ConfigError(f"[...{name}] must be a table of knobs, got {sub!r}")
    return glob, per


def expand(cfg: SweepConfig) -> list[RunConfig]:
    """Every configuration of the sweep, in a stable order (protocols as listed, then the grid)."""
    fixed, fixed_per = _split(cfg.knobs, cfg.protocols)
    grid, grid_per = _split(cfg.grid, cfg.protocols)
    for k, v in {**grid, **{f"{p}.{k}": v for p, t in grid_per.items() for k, v in t.items()}}.items():
        if not isinstance(v, list) or not v:
            raise errors.ConfigError(f"grid value {k} must be a non-empty list, got {v!r}")
    used: set[str] = set()
    runs: list[RunConfig] = []
    for proto in cfg.protocols:
        accepted, needs = _accepted(proto)
        own_fixed = {**{k: v for k, v in fixed.items() if k in accepted}, **fixed_per.get(proto, {})}
        own_grid = {**{k: v for k, v in grid.items() if k in accepted}, **grid_per.get(proto, {})}
        for k in [*fixed_per.get(proto, {}), *grid_per.get(proto, {})]:
            if k not in accepted:
                raise errors.ConfigError(f"Protocol {proto!r} has no knob {k!r}; it accepts: {', '.join(sorted(accepted))}")
        used |= set(own_fixed) | set(own_grid)
        locals_ = cfg.local if "local" in needs else [None]
        remotes = cfg.remote if "remote" in needs else [None]
        for local, remote, varied in itertools.product(locals_, remotes, _points(own_grid, cfg.grid_mode)):
            knobs = {**own_fixed, **varied}
            run = RunConfig(protocol=proto, local=local, remote=remote,
                            remote_price_as=cfg.remote_price_as if remote else None, knobs=dict(sorted(knobs.items())))
            run.label = _label(run, varied, multi_local=len(cfg.local) > 1, multi_remote=len(cfg.remote) > 1)
            runs.append(run)
    if unused := (set(fixed) | set(grid)) - used:  # it would silently do nothing: a typo, or the wrong sweep
        from minions.protocols.knobs import unknown_knobs

        known = set().union(*(_accepted(p)[0] for p in cfg.protocols))
        raise unknown_knobs(unused, known, "the protocols of this sweep (" + ", ".join(cfg.protocols) + ")")
    first: dict[str, RunConfig] = {}
    for r in runs:
        first.setdefault(r.id, r)
    runs = list(first.values())
    for r in runs:  # wrong types fail here, before a sweep creates its folder, cache or config.json
        check_knobs(r)
    return runs


def check_knobs(run: RunConfig) -> None:
    """Validate a configuration's knob values against its protocol, as building it would (the one
    validator, protocols/knobs.py, and the one budget type)."""
    from minions.protocols.knobs import check_knobs as check

    try:
        settings = run.settings()
        check(settings.protocol, settings.protocol_knobs())
    except errors.ConfigError as e:
        raise errors.ConfigError(f"Configuration {run.label!r}: {e} Fix the value in [knobs] or [grid] "
                                 "(or --knob/--grid).") from None
    except ValidationError as e:  # store_text of the wrong type
        problems = "; ".join(f"{'.'.join(map(str, err['loc']))}={err.get('input')!r}: {err['msg']}"
                             for err in e.errors())
        raise errors.ConfigError(f"Configuration {run.label!r}: {problems}. Fix the value in [knobs] or "
                                 "[grid] (or --knob/--grid).") from None


def _points(grid: dict[str, list[Any]], mode: str) -> list[dict[str, Any]]:
    keys = sorted(grid)
    if mode == "one-at-a-time" and keys:
        return [{k: v} for k in keys for v in grid[k]]
    return [dict(zip(keys, values, strict=True)) for values in itertools.product(*(grid[k] for k in keys))]


def _short(spec: str) -> str:
    return spec.split("/", 1)[-1]


def _label(run: RunConfig, varied: dict[str, Any], *, multi_local: bool, multi_remote: bool) -> str:
    parts = [f"{k}={v}" for k, v in varied.items()]
    if multi_local and run.local:
        parts.insert(0, f"local={_short(run.local)}")
    if multi_remote and run.remote:
        parts.insert(0, f"remote={_short(run.remote)}")
    return run.protocol + (f" ({', '.join(parts)})" if parts else "")
