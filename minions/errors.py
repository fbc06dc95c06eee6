"""Every exception minions raises on purpose. Each message names the fix."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the type only: errors sit below every other module
    from minions.clients.base import Usage


class MinionsError(Exception):
    """Base of every typed minions error."""


# --- configuration -------------------------------------------------------------------------------

class ConfigError(MinionsError):
    """The user asked for something that cannot work as configured."""


class UnknownProviderError(ConfigError):
    pass


class MissingAPIKeyError(ConfigError):
    def __init__(self, provider: str, env_var: str):
        self.provider, self.env_var = provider, env_var
        super().__init__(
            f"No API key for {provider}: set the {env_var} environment variable "
            f"(export {env_var}=...) or pass api_key= to the client."
        )


class MissingDependencyError(ConfigError):
    def __init__(self, package: str, extra: str):
        self.package, self.extra = package, extra
        super().__init__(
            f"The '{package}' package is needed for this: pip install 'minions[{extra}]'"
        )


# --- model calls ---------------------------------------------------------------------------------

class ClientError(MinionsError):
    """A model call failed. `retryable` errors are retried with backoff by the client."""

    retryable = False
    #: tokens the failed call was still billed for (a `minions.clients.Usage`), when known
    usage: Usage | None = None

    def __init__(self, message: str, *, provider: str = "", model: str = ""):
        self.provider, self.model = provider, model
        super().__init__(message)


class AuthenticationError(ClientError):
    pass


class BadRequestError(ClientError):
    pass


class ModelNotFoundError(ClientError):
    pass


class ContextTooLongError(ClientError):
    def __init__(self, message: str, *, provider: str = "", model: str = "",
                 prompt_tokens: int | None = None, limit: int | None = None):
        self.prompt_tokens, self.limit = prompt_tokens, limit
        super().__init__(message, provider=provider, model=model)


class TransientError(ClientError):
    """Worth retrying: rate limits, server errors, timeouts, dropped connections."""

    retryable = True

    def __init__(self, message: str, *, provider: str = "", model: str = "",
                 retry_after: float | None = None):
        self.retry_after = retry_after
        super().__init__(message, provider=provider, model=model)


class RateLimitError(TransientError):
    pass


class ServerError(TransientError):
    pass


class RequestTimeoutError(TransientError):
    pass


class APIConnectionError(TransientError):
    pass


class ServerUnreachableError(APIConnectionError):
    """Nothing listens at the URL. Retried a little (a server may be starting), then explained."""


class RetriesExhaustedError(ClientError):
    def __init__(self, last: ClientError, attempts: int):
        self.last, self.attempts = last, attempts
        super().__init__(f"{last} (gave up after {attempts} attempts)",
                         provider=last.provider, model=last.model)


class ReasoningBudgetError(ClientError):
    """A reasoning model spent its whole completion budget thinking and wrote no answer, even after
    one retry with a larger budget. The hidden tokens were billed: `usage` holds them."""

    def __init__(self, message: str, *, provider: str = "", model: str = "", usage: Usage | None = None):
        super().__init__(message, provider=provider, model=model)
        self.usage = usage


class MalformedResponseError(ClientError):
    """The server answered, but not in the shape its wire format promises."""

    retryable = True


class ModelOutputError(MinionsError):
    """A model's reply could not be parsed into the schema we asked for, even after repair/retry."""

    def __init__(self, message: str, raw: str = ""):
        self.raw = raw
        super().__init__(message)


# --- documents -----------------------------------------------------------------------------------

class DocumentError(MinionsError):
    """A document could not be loaded. The message names the file and the problem."""

    def __init__(self, message: str, source: str = ""):
        self.source = source
        super().__init__(message)


# --- runs ----------------------------------------------------------------------------------------

class BudgetExceededError(MinionsError):
    pass


class RunCancelledError(MinionsError):
    """The run was cancelled (a cancel token was set, or its task was cancelled). Protocols catch it
    and return what they have, marked `cancelled`; it reaches callers only from `RunContext.call`."""


class DatasetNotFoundError(ConfigError):
    pass


class CorpusIndexError(ConfigError):
    """A corpus index (`--index PATH`) is missing, damaged, from another version, or does not hold
    what was asked of it. The message names the `minions index` command that fixes it."""


# --- warnings ------------------------------------------------------------------------------------

class RiskySetupWarning(UserWarning):
    """A set-up that works but may expose a key or a server: a provider's URL changed from its
    built-in default, an API key sent over plain http to another machine. Front ends print it."""


def error_class(name: str | None) -> type[MinionsError] | None:
    """The typed error a result names in `error_type` (results carry the name, being JSON), or None."""
    cls = globals().get(name or "")
    return cls if isinstance(cls, type) and issubclass(cls, MinionsError) else None
