"""minions: a local model reads your documents, a remote model plans and aggregates.

    import minions
    local = minions.get_client("llamacpp/smollm2")
    remote = minions.get_client("openai/gpt-4o-mini")
    result = minions.get_protocol("minions", local, remote).run("What was FY2018 capex?", minions.load("10k.pdf"))
    print(result.answer, result.cost.role("remote").cost_usd)
"""

from __future__ import annotations

from minions import errors
from minions._lazy import lazy_getattr
from minions.clients import Client, Completion, FunctionClient, Message, Options, Usage, get_client
from minions.cost import CostMeter, CostReport, PriceTable

__version__ = "0.1.0"

# Documents and protocols pull in numpy/scipy (BM25); load them on first use so `import minions`
# and the CLI's --help stay fast.
_LAZY = {
    "Document": "minions.documents", "load": "minions.documents", "load_many": "minions.documents",
    "get_protocol": "minions.protocols", "RunResult": "minions.protocols", "PROTOCOL_NAMES": "minions.protocols",
    "CancelToken": "minions.protocols", "Interrupted": "minions._sync",
}


__getattr__ = lazy_getattr(__name__, _LAZY)


__all__ = ["Client", "Completion", "CostMeter", "CostReport", "FunctionClient", "Message", "Options",
           "PriceTable", "Usage", "errors", "get_client", *_LAZY]
