"""Baselines: remote-only, local-only and RAG behind the protocol interface."""

from __future__ import annotations

import asyncio

import pytest

from minions import errors
from minions.clients.function import FunctionClient
from minions.cost import Price, PriceTable
from minions.documents import Document
from minions.protocols import get_protocol
from minions.protocols.baselines import RAG, LocalOnly, RemoteOnly
from minions.protocols.context import format_documents
from minions.protocols.events import FinalAnswer, MessageSent, Notice, RoundDone
from minions.protocols.result import RunResult
from minions.protocols.templates import render

PRICES = PriceTable({"function/remote": Price(input=1.0, output=2.0), "function/local": Price(input=0.0, output=0.0)})
TASK = "What was total revenue in fiscal 2024?"
PAGES = [
    "Northwind Traders annual report. Letter to shareholders: a year of steady progress.",
    "Results of operations. Total revenue was $12.4 million in fiscal 2024, up from $10.1 million.",
    "Risk factors. Weather, shipping costs and {braces} or $dollars in text are just text.",
]
FILING = Document.from_pages(PAGES, id="nw-10k", title="Northwind 10-K")


def c_text_in(block: str, page: str) -> bool:
    return block.split("\n", 1)[1] == page.strip()


def words(calls) -> int:
    return sum(len(m.content.split()) for msgs, _ in calls for m in msgs)


@pytest.mark.parametrize("name,role", [("remote-only", "remote"), ("local-only", "local")])
async def test_whole_context_baselines_send_everything_to_one_side(name, role):
    client = FunctionClient.from_replies(["Total revenue was $12.4 million in fiscal 2024"], model=role)
    local, remote = (client, None) if role == "local" else (None, client)
    events = []
    result = await get_protocol(name, local, remote, prices=PRICES).arun(TASK, FILING, on_event=events.append)
    assert result.error is None and result.protocol == name
    assert result.answer == "Total revenue was $12.4 million in fiscal 2024"
    (messages, opts), = client.calls
    assert [m.role for m in messages] == ["system", "user"]
    user = messages[1].content
    for i, page in enumerate(PAGES, 1):
        assert f"[Page {i}]\n{page}" in user  # page markers, text verbatim (braces and $ untouched)
    assert "=== Document nw-10k: Northwind 10-K ===" in user and user.rstrip().endswith(
        "Answer the task from the documents above.")
    assert TASK in user
    # Answer found verbatim on page 2: cited there.
    assert [(c.doc_id, c.page_start, c.page_end) for c in result.citations] == [("nw-10k", 2, 2)]
    assert [r.decision for r in result.rounds] == ["final_answer"]
    assert [type(e) for e in events] == [MessageSent, RoundDone, FinalAnswer]
    assert events[0].sender == role
    usage = result.cost.role(role).usage
    assert usage.prompt_tokens == words(client.calls) and usage.completion_tokens == 8 and usage.requests == 1
    if role == "remote":
        assert result.cost.role("remote").cost_usd == pytest.approx((words(client.calls) + 2 * 8) / 1e6, rel=1e-12)
        assert opts.max_tokens == 1024
    else:
        assert result.cost.role("remote").usage.requests == 0 and opts.max_tokens == 512


def test_needs():
    assert LocalOnly.needs == ("local",) and RemoteOnly.needs == ("remote",) and RAG.needs == ("remote",)
    with pytest.raises(errors.ConfigError):
        get_protocol("local-only", None, FunctionClient.from_replies(["x"]))
    with pytest.raises(errors.ConfigError):
        get_protocol("remote-only", FunctionClient.from_replies(["x"]), None)


@pytest.mark.parametrize("name,role", [("remote-only", "remote"), ("local-only", "local")])
async def test_context_over_the_window_is_truncated_with_a_notice(name, role):
    big = " ".join(f"w{i}" for i in range(3000)) + " TAIL-MARKER"
    client = FunctionClient.from_replies(["ok"], model=role, context_window=1000)
    local, remote = (client, None) if role == "local" else (None, client)
    events = []
    result = await get_protocol(name, local, remote, prices=PRICES, local_max_tokens=100,
                                remote_max_tokens=100).arun(TASK, big, on_event=events.append)
    assert result.answer == "ok"
    (messages, _), = client.calls
    sent = sum(len(m.content.split()) for m in messages)
    assert sent <= 1000 - 100  # prompt + reply fit the window
    assert sent > 700          # and not much more was cut than needed
    assert "TAIL-MARKER" not in messages[1].content and "w0 w1 w2" in messages[1].content
    assert "cut to fit" in messages[1].content
    notices = [e.message for e in events if e.kind == "notice"]
    assert len(notices) == 1 and f"function/{role}" in notices[0] and "kept the first" in notices[0]
    assert result.warnings == notices


async def test_configured_max_context_tokens_also_truncates():
    client = FunctionClient.from_replies(["ok"], model="remote")  # no known window
    doc = " ".join(["word"] * 500)
    result = await RemoteOnly(None, client, prices=PRICES, max_context_tokens=300, remote_max_tokens=50).arun(TASK, doc)
    assert result.warnings and sum(len(m.content.split()) for m in client.calls[0][0]) <= 250
    unlimited = FunctionClient.from_replies(["ok"], model="remote")
    result = await RemoteOnly(None, unlimited, prices=PRICES).arun(TASK, doc)
    assert not result.warnings and doc in unlimited.calls[0][0][1].content


async def test_local_only_default_window_applies_when_the_client_reports_none():
    client = FunctionClient.from_replies(["ok"], model="local")
    doc = " ".join(["word"] * 9000)
    result = await LocalOnly(client, None, prices=PRICES).arun(TASK, doc)
    assert result.warnings and sum(len(m.content.split()) for m in client.calls[0][0]) <= 8192 - 512


async def test_empty_reply_is_a_typed_error():
    client = FunctionClient.from_replies(["   "], model="remote")
    result = await RemoteOnly(None, client, prices=PRICES).arun(TASK, FILING)
    assert result.answer is None and result.error_type == "ModelOutputError"


async def test_budget_applies_to_baselines():
    client = FunctionClient.from_replies(["ok"], model="remote")
    result = await RemoteOnly(None, client, prices=PRICES, max_remote_usd=1e-9).arun(TASK, FILING)
    assert result.budget_exhausted and result.answer is None and client.calls == []


# --- RAG -----------------------------------------------------------------------------------------

def _corpus() -> list[Document]:
    filler = ["Weather was mild across the region. " * 20, "Shipping lanes stayed open all year. " * 20]
    return [
        Document.from_pages([filler[0], "Total revenue in fiscal 2024 was $12.4 million. " * 3, filler[1]],
                            id="report", title="Report"),
        Document.from_text("Employee headcount grew to 85. " * 10, id="hr", title="HR"),
    ]


async def test_rag_sends_top_k_chunks_with_ids_and_pages_and_cites_them(no_dense):
    remote = FunctionClient.from_replies(["Revenue was $12.4 million [C1]."], model="remote")
    events = []
    result = await RAG(None, remote, prices=PRICES, top_k=2, chunk_strategy="pages", chunk_size=1).arun(
        TASK, _corpus(), on_event=events.append)
    assert result.error is None and result.answer == "Revenue was $12.4 million [C1]."
    (messages, _), = remote.calls
    user = messages[1].content
    # Only page 2 shares words with the task (BM25 leaves out chunks scoring zero): one excerpt.
    assert "[C1] " in user and "[C2]" not in user
    first = user.split("[C1] ", 1)[1]
    assert first.startswith("report, p. 2\nTotal revenue in fiscal 2024 was $12.4 million.")
    assert c_text_in(first.split("\n\n")[0], _corpus()[0].page_text(2))
    assert "Weather was mild" not in user and "Employee headcount" not in user
    # Only the cited excerpt is a citation, with its chunk id and pages.
    assert len(result.citations) == 1
    c = result.citations[0]
    assert (c.doc_id, c.page_start, c.page_end) == ("report", 2, 2) and c.chunk_id.startswith("report#")
    assert c.text == _corpus()[0].page_text(2).strip()
    assert result.cost.role("remote").usage.prompt_tokens == words(remote.calls)
    # the one notice (BM25 only, for lack of the extra), then the run
    assert [type(e) for e in events] == [Notice, MessageSent, RoundDone, FinalAnswer]


async def test_rag_cites_all_shown_excerpts_when_the_answer_names_none():
    remote = FunctionClient.from_replies(["About $12.4 million."], model="remote")
    result = await RAG(None, remote, prices=PRICES, top_k=3, chunk_size=200).arun(TASK, _corpus())
    assert len(result.citations) >= 2 and all(c.chunk_id for c in result.citations)


async def test_rag_with_nothing_matching_asks_without_excerpts_and_says_so(no_dense):
    remote = FunctionClient.from_replies(["I cannot tell."], model="remote")
    result = await RAG(None, remote, prices=PRICES).arun("zebra quokka?", _corpus())
    assert result.answer == "I cannot tell." and result.citations == []
    assert "(no excerpt matched the task)" in remote.calls[0][0][1].content
    assert any("no passage" in w for w in result.warnings)
    # BM25 alone, for lack of the extra: said once, naming the extra
    assert sum("minions[embeddings]" in w for w in result.warnings) == 1
    assert result.coverage is not None and result.coverage.chunks_read == 0 and result.coverage.share == 0
    result = await RAG(None, FunctionClient.from_replies(["x"], model="remote"), prices=PRICES).arun(TASK, [])
    assert result.answer == "x"


async def test_rag_drops_whole_excerpts_to_fit_the_window():
    remote = FunctionClient.from_replies(["ok"], model="remote", context_window=300)
    result = await RAG(None, remote, prices=PRICES, top_k=5, chunk_size=400, remote_max_tokens=50).arun(
        "weather shipping revenue headcount", _corpus())
    user = remote.calls[0][0][1].content
    assert "[C1]" in user and "[C5]" not in user
    assert sum(len(m.content.split()) for m in remote.calls[0][0]) <= 300 - 50
    assert any("excerpts left out" in w for w in result.warnings)


async def test_store_text_false_omits_shown_chunks_and_documents():
    remote = FunctionClient.from_replies(["ok"], model="remote")
    result = await RAG(None, remote, prices=PRICES, top_k=1, chunk_size=200, store_text=False).arun(TASK, _corpus())
    assert result.citations and "document text omitted" in result.citations[0].text
    assert "Total revenue in fiscal 2024" not in result.model_dump_json()
    remote2 = FunctionClient.from_replies(["ok"], model="remote")
    result = await RemoteOnly(None, remote2, prices=PRICES, store_text=False).arun(TASK, FILING)
    dumped = result.model_dump_json()
    assert "Results of operations" not in dumped and "document text omitted" in dumped


def test_templates_insert_values_verbatim():
    hostile = "{task} ${context} $task {0} %s }{"
    out = render("baseline_user", context=hostile, task="T")
    assert hostile in out and out.count("T") >= 1
    assert format_documents([Document.from_text(hostile, id="d")]).endswith(hostile)


# --- the real embedded model ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def embedded():
    from minions.clients.llamacpp import LlamaCppClient

    local = LlamaCppClient("smollm2", n_threads=1)  # one thread: the suite shares two cores
    remote = LlamaCppClient("smollm2", n_threads=1, price_as="openai/gpt-4o")
    yield local, remote
    asyncio.run(local.aclose())
    asyncio.run(remote.aclose())


@pytest.mark.real_model
@pytest.mark.parametrize("name", ["remote-only", "local-only", "rag"])
async def test_real_model_baselines_finish_with_an_answer(embedded, name):
    local, remote = embedded
    proto = get_protocol(name, local, remote, local_max_tokens=48, remote_max_tokens=48, chunk_size=300) \
        if name == "rag" else get_protocol(name, local, remote, local_max_tokens=48, remote_max_tokens=48)
    result = await proto.arun(TASK, FILING)
    assert isinstance(result, RunResult)
    assert result.answer and result.answer.strip() and result.error is None, (result.error_type, result.error)
    role = "local" if name == "local-only" else "remote"
    assert result.cost.role(role).usage.requests == 1
    assert 0 < result.cost.role(role).usage.completion_tokens <= 48
    if role == "remote":
        assert result.cost.role("remote").cost_usd > 0 and result.cost.remote_model == "openai/gpt-4o"
    if name == "rag":
        assert result.citations and all(c.doc_id == "nw-10k" for c in result.citations)


async def test_rag_with_dense_retrieval_finds_an_excerpt_in_other_words():
    pytest.importorskip("wordllama", reason="the 'embeddings' extra is not installed")
    docs = [Document.from_text("The company's sales rose to $9 million.", id="a"),
            Document.from_text("The weather in the valley was mild all spring.", id="b"),
            Document.from_text("Shipping lanes stayed open through the winter.", id="c")]
    remote = FunctionClient.from_replies(["ok"], model="remote")
    result = await RAG(None, remote, prices=PRICES, top_k=1).arun("How much revenue did the firm make?", docs)
    user = remote.calls[0][0][1].content
    # no word in common with the question: BM25 alone would send nothing
    assert "sales rose to $9 million" in user and not any("minions[embeddings]" in w for w in result.warnings)
    cov = result.coverage
    assert (cov.chunks_read, cov.chunks_total) == (1, 3)
    assert [round(d.share, 2) for d in cov.documents] == [1.0, 0.0, 0.0]
