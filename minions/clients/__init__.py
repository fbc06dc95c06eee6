"""Language model clients: one async interface, one module per provider, specs as strings."""

from minions.clients.base import Client, Completion, Message, Options, Request, RetryPolicy, Usage
from minions.clients.function import FunctionClient
from minions.clients.spec import get_client, parse_spec

__all__ = ["Client", "Completion", "FunctionClient", "Message", "Options", "Request", "RetryPolicy",
           "Usage", "get_client", "parse_spec"]
