"""What left this machine: one record per outbound request, the verbatim measure, the ledger.

- `record`: `EgressRecord`, the sinks records go to (`capture`), the run summary `Egress`;
- `transport`: the httpx transport every SDK client sends through, which takes the record;
- `verbatim`: how much of a document left verbatim (Rabin–Karp over normalised text);
- `ledger`: the hash-chained JSON-lines log (`--egress-log`) and its audit (`minions audit`).

Bottom layer: clients import it; it knows no protocol.
"""

from minions.egress.record import Egress, EgressRecord, capture
from minions.egress.verbatim import MIN_CHARS, VerbatimIndex, verbatim

__all__ = ["MIN_CHARS", "Egress", "EgressRecord", "VerbatimIndex", "capture", "verbatim"]
