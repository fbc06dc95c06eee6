"""Issue 22: what left this machine. The verbatim measure, the record taken at the transport (through
the strict gateway with the official SDKs, and around the protocol door on purpose), the run's
`egress` summary, and the hash-chained ledger with `minions audit`."""

from __future__ import annotations

import hashlib
import json
import random

import pytest

from minions.clients.function import FunctionClient
from minions.documents import Document
from minions.egress import capture
from minions.egress.ledger import ChainError, Ledger, audit, read
from minions.egress.record import sent_text
from minions.egress.verbatim import VerbatimIndex, normalize, verbatim
from minions.protocols.baselines import RemoteOnly
from tests.gateway import ANTHROPIC, OPENAI, ScriptedBackend
from tests.test_protocol_minions import final, honest_local, make_doc, plan, run, scripted_remote

WORDS = ("revenue margin segment quarter fiscal operating income capital lease goodwill asset liability "
         "equity cash flow dividend share buyback inventory tariff freight").split()


def prose(n_words: int, seed: int = 0) -> str:
    rng = random.Random(seed)
    return " ".join(rng.choice(WORDS) for _ in range(n_words)) + "."


# --- the verbatim measure -------------------------------------------------------------------------

def test_a_quote_is_found_as_one_span_and_counted_in_the_document():
    doc = prose(400)
    quote = doc[1000:1100]
    index = VerbatimIndex(doc)
    out = "The worker cites:<" + quote + ">and says so."  # '<' and '>' are not in the document
    spans = index.spans(out)
    assert spans == [(len("The worker cites:<"), len("The worker cites:<") + 100)]
    assert index.chars >= 100 and index.chars < 200  # the quote, plus any repeat of it elsewhere
    assert index.share == index.chars / len(normalize(doc))


def test_overlapping_and_adjacent_hits_merge_into_one_span():
    doc = prose(300, seed=1)
    out = doc[200:420]  # every 40-char window of it hits: one span, not 181
    assert VerbatimIndex(doc).spans(out) == [(0, 220)]


def test_two_quotes_separated_by_new_text_stay_two_spans():
    doc = prose(300, seed=2)
    a, b = doc[100:160], doc[900:990]
    spans = VerbatimIndex(doc).spans(a + "<the remote's own words here>" + b)
    assert [(e - s) for s, e in spans] == [60, 90]


def test_whitespace_is_normalised_on_both_sides():
    doc = "Revenue  grew\n\nto $12.4 million in fiscal 2024,\tup from $10.1 million last year."
    out = "revenue? Revenue grew to $12.4 million in fiscal 2024, up from $10.1\n   million last year."
    chars, share = verbatim(doc, out)
    assert chars == len(normalize(doc)) and share == 1.0


def test_spans_shorter_than_the_threshold_are_ignored():
    doc = prose(200, seed=3)
    out = "|".join(doc[i:i + 39] for i in range(0, 600, 100))  # six 39-char quotes; '|' is not in it
    assert verbatim(doc, out) == (0, 0.0)
    assert verbatim(doc, out, min_chars=30)[0] >= 6 * 39 - 30  # the knob: shorter spans count
    assert verbatim(doc, doc[:40]) [0] >= 40


def test_the_word_knob_counts_runs_of_whole_words():
    doc = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu"
    assert verbatim(doc, "x alpha beta gamma delta epsilon zeta eta y", min_words=8)[0] == 0  # 7 words
    chars, _ = verbatim(doc, "x alpha beta gamma delta epsilon zeta eta theta y", min_words=8)
    assert chars == len("alpha beta gamma delta epsilon zeta eta theta")


def test_no_text_sent_and_empty_documents():
    assert verbatim("", "anything at all, long enough to make a window of forty characters") == (0, 0.0)
    assert verbatim(prose(100), []) == (0, 0.0)


# --- the run's summary: remote-only sends everything, MinionS a little ------------------------------

def test_remote_only_sends_the_whole_document_verbatim():
    doc = Document.from_text(prose(600, seed=4), id="report")
    remote = FunctionClient.from_replies(["an answer"], model="scripted-remote")
    result = RemoteOnly(None, remote).run("What is the margin?", [doc])
    eg = result.egress
    assert eg is not None and eg.requests == len(remote.calls) == 1
    assert eg.hosts[0].host == "in-process" and eg.hosts[0].prompt_tokens > 600
    (d,) = eg.documents
    assert d.doc_id == "report" and d.verbatim_share > 0.99 and d.verbatim_chars == d.chars
    assert result.summary()["egress"]["documents"][0]["verbatim_share"] > 0.99


def test_minions_with_scripted_clients_sends_a_small_share():
    pages = [prose(250, seed=10 + i) for i in range(8)]
    pages[5] += " The revenue was $42 million in fiscal 2024, up from $37 million."
    doc = Document.from_pages(pages, id="nw")
    local = FunctionClient(honest_local, model="scripted-local")
    remote = scripted_remote([plan("Find the revenue figure")], [final()])
    result = run(local, remote, doc=doc)
    assert result.answer == "$42 million"
    eg = result.egress
    assert eg.requests == len(remote.calls) >= 2  # the local model's calls never count
    (d,) = eg.documents
    assert 0 < d.verbatim_chars < 200  # the worker's citation, quoted to the remote
    assert d.verbatim_share < 0.05
    # the figure agrees with measuring every message the remote got, independently
    sent = [m.content for msgs, _ in remote.calls for m in msgs]
    assert verbatim(doc.text, sent) == (d.verbatim_chars, pytest.approx(d.verbatim_share, abs=1e-6))


def test_a_local_only_run_sends_nothing():
    from minions.protocols.baselines import LocalOnly

    local = FunctionClient.from_replies(["an answer"], model="scripted-local")
    result = LocalOnly(local, None).run("q?", [prose(300)])
    assert result.egress.requests == 0 and result.egress.documents[0].verbatim_chars == 0
    assert result.egress.line() == "egress: nothing left this machine"
