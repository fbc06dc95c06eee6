"""`RunSettings`: everything that decides how a question is answered, in one object every door fills.

`minions ask`, `minions serve`, `minions mcp`, the app, the eval and `get_protocol` all turn their
input (flags, a request, widgets, a TOML file, arguments) into a `RunSettings` and hand it to
`protocols/build.py`. A run records what it ran in `RunResult.settings` (a `RunRecord`), and
`RunSettings.from_record` turns that record back into settings that reproduce the run.

Secrets are never part of the settings (they go into the run log): API keys reach the client
constructors only, through `build_clients(..., secrets=)`.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from minions.clients.base import Client
from minions.protocols.result import RunRecord

DEFAULT_PROTOCOL = "minions"
#: the embedded model: the default local model, and the offline stand-in remote
EMBEDDED = "llamacpp/smollm2"


class RunSettings(BaseModel):
    """The recipe's one input. Models are specs ("provider/model") or ready `Client`s."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True, frozen=True)

    protocol: str = DEFAULT_PROTOCOL
    local: str | Client | None = EMBEDDED
    remote: str | Client | None = EMBEDDED
    #: price the remote as this model; default: STAND_IN_PRICE when the remote is a stand-in
    price_as: str | None = None
    #: an OpenAI-compatible server URL for the remote
    base_url: str | None = None
    #: the Ollama server, for either role
    ollama_host: str | None = None
    #: reasoning effort of a remote reasoning model; the same as the knob `remote_reasoning`
    reasoning: str | None = None
    #: scrub personal data from everything sent to the remote
    privacy: bool = False
    #: names to scrub (implies privacy)
    private_names: tuple[str, ...] = ()
    #: remote dollars the run may spend (None: no cap)
    max_remote_usd: float | None = None
    #: protocol knobs: fields of the protocol's Config, checked by `knobs.check_knobs`
    knobs: dict[str, Any] = Field(default_factory=dict)
    #: False: document text is omitted from results and logs
    store_text: bool = True
    #: a corpus index (`minions index DIR... --store PATH`): a question given no documents is asked
    #: of the documents it picks, and stored chunks and embeddings are not computed again
    index: str | None = None

    @field_validator("protocol")
    @classmethod
    def _known_protocol(cls, v: str) -> str:
        from minions.protocols.registry import protocol_class

        protocol_class(v)  # a ConfigError naming the protocols
        return v

    @field_validator("max_remote_usd", mode="before")
    @classmethod
    def _budget(cls, v: Any) -> float | None:
        from minions.protocols.budget import budget_usd

        return budget_usd(v)

    @model_validator(mode="after")
    def _one_reasoning(self) -> RunSettings:
        from minions import errors

        given = self.knobs.get("remote_reasoning")
        if self.reasoning is not None and given is not None and given != self.reasoning:
            raise errors.ConfigError(f"reasoning={self.reasoning!r} and the knob remote_reasoning={given!r} "
                                     "disagree; give one.")
        return self

    @property
    def uses_privacy(self) -> bool:
        return self.privacy or bool(self.private_names)

    def protocol_knobs(self) -> dict[str, Any]:
        """The knobs for the protocol (reasoning included), None values dropped — not yet checked."""
        knobs = {k: v for k, v in self.knobs.items() if v is not None}
        if self.reasoning is not None:
            knobs["remote_reasoning"] = self.reasoning
        return knobs

    @classmethod
    def from_record(cls, record: RunRecord | dict[str, Any], **overrides: Any) -> RunSettings:
        """Settings that run again what `record` (a `RunResult.settings`) ran: the same protocol,
        models, price, budget and every resolved knob. Private names are not recorded (they are
        personal data): pass `private_names=` to scrub them again."""
        rec = record if isinstance(record, RunRecord) else RunRecord.model_validate(record)
        data: dict[str, Any] = {
            "protocol": rec.protocol, "local": rec.local, "remote": rec.remote, "price_as": rec.remote_price_as,
            "max_remote_usd": rec.max_remote_usd, "privacy": rec.privacy, "store_text": rec.store_text,
            "knobs": dict(rec.config)}
        return cls(**{**data, **overrides})


__all__ = ["DEFAULT_PROTOCOL", "EMBEDDED", "RunRecord", "RunSettings"]
