"""Issue 13: never lose local work (degraded fallback), plans keep the question, grounded answers,
cancellation (token and asyncio), with scripted clients."""

from __future__ import annotations

import asyncio
import json

import pytest

from minions import errors
from minions.clients.function import FunctionClient
from minions.protocols import CancelToken, get_protocol
from minions.protocols.citations import citation_found
from minions.protocols.events import RoundDone
from minions.protocols.grounding import answer_key, best_supported, figures, shares, support, words
from minions.protocols.minion import Minion
from minions.protocols.minions import LastSynthesis, MinionS, Synthesis
from minions.protocols.result import JobRecord, JobStatus
from tests.test_protocol_minions import final, honest_local, make_doc, plan, scripted_remote

TASK = "What was revenue in fiscal 2024?"
EMPTY_FINAL = json.dumps({"decision": "provide_final_answer", "explanation": "", "answer": ""})


def minions(local, remote, **cfg) -> MinionS:
    return MinionS(local, remote, **cfg)


# --- never lose local work ------------------------------------------------------------------------

def test_failing_synthesis_returns_the_verified_job_answer_degraded_with_its_citation():
    """The reported failure: the remote's synthesis twice fails validation ("provide_final_answer" with
    an empty "answer"). The run used to end with no answer; the local jobs' verified answer is returned."""
    remote = scripted_remote([plan("Find the revenue")], [EMPTY_FINAL])
    res = minions(FunctionClient(honest_local), remote, max_rounds=2, ask_question=False).run(TASK, [make_doc()])
    assert res.answer == "$42 million" and res.degraded and res.grounded
    assert res.error_type == "ModelOutputError"  # what happened is still said
    assert "ModelOutputError" in res.degraded_reason and "backed with a quote" in res.degraded_reason
    assert [c.chunk_id for c in res.citations] == ["nw#1"] and "$42 million" in res.citations[0].text
    # round 1: the empty final became a request for another round; round 2 (last): two invalid replies
    assert [r.decision for r in res.rounds] == ["another_round", None]
    synth = [e for e in res.calls if e.step == "synthesize"]
    assert len(synth) == 3 and all(e.round == 2 for e in synth[1:])
    summary = res.summary()
    assert summary["degraded"] is True and summary["answer"] == "$42 million" and summary["degraded_reason"]
    assert any("degraded answer" in w for w in res.warnings)


def test_failure_before_any_verified_job_output_is_a_plain_typed_error():
    def lies(msgs, _o):
        return json.dumps({"explanation": "x", "citation": "not in the text at all, invented", "answer": "$9"})
    remote = scripted_remote([plan("Find the revenue")], [EMPTY_FINAL])
    res = minions(FunctionClient(lies), remote, max_rounds=1, ask_question=False).run(TASK, [make_doc()])
    assert res.error_type == "ModelOutputError" and not res.degraded and res.answer is None


def test_client_error_on_the_remote_after_jobs_returns_the_fallback():
    state = {"n": 0}

    def remote_fn(msgs, _o):
        state["n"] += 1
        if state["n"] == 1:
            return plan("Find the revenue")
        raise errors.AuthenticationError("bad key", provider="function", model="remote")
    res = minions(FunctionClient(honest_local), FunctionClient(remote_fn, model="remote"),
                  max_rounds=1, ask_question=False).run(TASK, [make_doc()])
    assert res.answer == "$42 million" and res.degraded and res.error_type == "AuthenticationError"


def test_lenient_synthesis_reads_the_answer_from_the_explanation():
    s = Synthesis.model_validate({"decision": "provide_final_answer", "explanation": "$42 million", "answer": ""})
    assert s.answer == "$42 million" and s.decision == "provide_final_answer"
    s = Synthesis.model_validate({"decision": "provide_final_answer", "explanation": "", "answer": None})
    assert s.decision == "request_additional_info"  # nothing to answer with: ask again, not fail
    last = LastSynthesis.model_validate({"decision": "request_additional_info", "explanation": "about $42m"})
    assert last.answer == "about $42m"
    with pytest.raises(ValueError):
        LastSynthesis.model_validate({"decision": "provide_final_answer", "explanation": " ", "answer": ""})


def test_minion_returns_the_workers_last_reply_when_the_remote_fails():
    replies = iter(['{"decision": "request_additional_info", "message": "What was revenue?", "answer": null}',
                    "no json", "still no json"])
    remote = FunctionClient(lambda m, o: next(replies), model="remote")
    local = FunctionClient.from_replies(["Revenue was $42 million (page 2)."], model="local")
    res = Minion(local, remote, max_rounds=1).run(TASK, [make_doc()])
    assert res.answer == "Revenue was $42 million (page 2)." and res.degraded
    assert res.error_type == "ModelOutputError" and "last reply" in res.degraded_reason


# --- plans keep the question ----------------------------------------------------------------------

def test_every_round_runs_the_question_itself_when_the_plan_drifts():
    local = FunctionClient(honest_local)
    remote = scripted_remote([plan("Find the report's title"), plan("Find the title again")],
                             [json.dumps({"decision": "request_additional_info", "explanation": "?",
                                          "feedback": "more"}), final()])
    res = minions(local, remote, max_rounds=2).run(TASK, [make_doc()])
    for rnd in res.rounds:
        assert rnd.plan["tasks"][0]["instruction"] == TASK
        assert {j.task_id for j in rnd.jobs} == {1, 2}
    asked = {t for msgs, _ in local.calls for t in [msgs[-1].content.split("Task: ", 1)[1].split("\n", 1)[0]]}
    assert TASK in asked
    assert res.answer == "$42 million" and res.grounded


def test_the_question_is_not_added_twice_or_when_turned_off():
    same = plan("what was REVENUE in fiscal 2024")  # the question, differently cased and punctuated
    res = minions(FunctionClient(honest_local), scripted_remote([same], [final()]), max_rounds=1).run(TASK, [make_doc()])
    assert len(res.rounds[0].plan["tasks"]) == 1
    res = minions(FunctionClient(honest_local), scripted_remote([plan("Find the title")], [final()]),
                  max_rounds=1, ask_question=False).run(TASK, [make_doc()])
    assert [t["instruction"] for t in res.rounds[0].plan["tasks"]] == ["Find the title"]


# --- grounded answers -------------------------------------------------------------------------------

def test_grounding_compares_claims_not_the_questions_words():
    assert [q.key for q in figures("$1,577.00 and 12% in 2023")] == ["1577", "12%"]
    assert "revenue" in words("Revenues grew")
    assert shares("$42 million", ["The revenue was $42 million in fiscal 2024."], TASK)
    assert shares("42.0 million dollars", ["answer: $42 million"], TASK)
    assert not shares("Revenue in fiscal 2024 was $99 million", ["The revenue was $42 million in fiscal 2024."], TASK)
    assert not shares("revenue fiscal 2024", ["revenue in fiscal 2024 was $42 million"], TASK)  # only the question
    assert shares("Yes, it pays a dividend", ["Yes"], "Does it pay a dividend?")
    assert not shares("", ["x"]) and answer_key("$42 million") == answer_key("42 million.")


def test_best_supported_counts_answers_the_document_backs():
    def rec(i, answer, status, citation="revenue was $42 million"):
        return JobRecord(job_id=f"j{i}", task_id=1, chunk_id="c", sample=0, instruction="i", pages=(1, 1),
                         answer=answer, citation=citation, status=status)
    chunk = {f"j{i}": "Operations. Revenue was $42 million in fiscal 2024. Staff: 420." for i in range(9)}
    recs = [rec(0, "$9", JobStatus.FLAGGED), rec(1, "$9", JobStatus.FLAGGED),      # unverified quotes
            rec(2, "Fiscal 2023", JobStatus.KEPT, "Fiscal 2024"),                   # quote does not back it
            rec(3, "$42 million", JobStatus.KEPT), rec(4, "42 million.", JobStatus.KEPT),
            rec(5, "420 staff", JobStatus.DROPPED, "a quote not in the chunk"),     # its figure is in the chunk
            rec(6, "yes", JobStatus.KEPT, "the company paid a dividend")]          # a bare yes/no: the quote
    best = best_supported(recs, chunk, TASK)
    assert best.answer == "$42 million" and best.support == 2 and best.quotes == ["revenue was $42 million"] * 2
    assert support(recs[2], chunk["j2"], TASK) is None and support(recs[0], chunk["j0"], TASK) is None
    assert support(recs[5], chunk["j5"], TASK) == "Staff: 420." and support(recs[6], None, TASK)
    assert best_supported([recs[0], recs[2]], chunk, TASK) is None
    # a bare year in the chunk backs nothing; an answer to the question itself beats sub-task answers
    assert support(rec(7, "in 2024", JobStatus.DROPPED, "x"), chunk["j7"], "Which year?") is None
    asked = rec(8, "420 staff", JobStatus.DROPPED, "x").model_copy(update={"instruction": TASK.upper()})
    assert best_supported([*recs, asked], chunk, TASK).answer == "420 staff"


def test_an_ungrounded_remote_answer_is_kept_and_flagged():
    remote = scripted_remote([plan("Find the revenue")], [final("$99 million")])
    res = minions(FunctionClient(honest_local), remote, max_rounds=1).run(TASK, [make_doc()])
    assert res.answer == "$99 million" and res.grounded is False and not res.degraded
    assert res.summary()["grounded"] is False and any("grounded: false" in w for w in res.warnings)


def test_ungrounded_fallback_returns_the_most_supported_verified_answer():
    remote = scripted_remote([plan("Find the revenue")], [final("$99 million")])
    res = minions(FunctionClient(honest_local), remote, max_rounds=1, ungrounded_answer="fallback").run(
        TASK, [make_doc()])
    assert res.answer == "$42 million" and res.grounded and res.degraded and res.error is None
    assert "not backed" in res.degraded_reason


def test_minion_flags_an_answer_that_shares_nothing_with_the_workers_replies():
    remote = FunctionClient.from_replies([
        '{"decision": "request_additional_info", "message": "What was revenue?", "answer": null}',
        '{"decision": "provide_final_answer", "message": "", "answer": "$99 million"}'], model="remote")
    local = FunctionClient.from_replies(["Revenue was $42 million (page 2)."], model="local")
    res = Minion(local, remote, max_rounds=1).run(TASK, [make_doc()])
    assert res.answer == "$99 million" and res.grounded is False
    res = Minion(FunctionClient.from_replies(["Revenue was $42 million (page 2)."], model="local"),
                 FunctionClient.from_replies([
                     '{"decision": "request_additional_info", "message": "What was revenue?", "answer": null}',
                     '{"decision": "provide_final_answer", "message": "", "answer": "$42 million"}'], model="remote"),
                 max_rounds=1).run(TASK, [make_doc()])
    assert res.answer == "$42 million" and res.grounded is True


# --- RoundDone has one meaning --------------------------------------------------------------------------

def test_round_done_reports_cumulative_spend():
    events = []
    remote = scripted_remote([plan("Find the revenue")], [json.dumps({"decision": "request_additional_info",
                                                                      "explanation": "x", "feedback": "y"}), final()])
    from minions.cost import Price, PriceTable
    prices = PriceTable({"function/scripted-remote": Price(input=1.0, output=1.0)})
    res = MinionS(FunctionClient(honest_local), remote, prices=prices, max_rounds=2).run(
        TASK, [make_doc()], on_event=events.append)
    done = [e for e in events if isinstance(e, RoundDone)]
    assert len(done) == 2 and done[0].remote_usd < done[1].remote_usd
    assert done[-1].remote_usd == pytest.approx(res.cost.role("remote").cost_usd)
    assert done[-1].local_tokens == res.cost.role("local").usage.total_tokens


# --- cancellation ------------------------------------------------------------------------------------

def test_cancel_token_stops_before_the_next_model_call_and_returns_the_cost():
    token = CancelToken()
    calls = {"n": 0}

    def local(msgs, opts):
        calls["n"] += 1
        if calls["n"] == 2:
            token.cancel()  # e.g. the user pressed Stop while job 2 ran
        return honest_local(msgs, opts)
    remote = scripted_remote([plan("Find the revenue")], [final()])
    res = minions(FunctionClient(local), remote, max_rounds=1, ask_question=False, concurrency=1).run(
        TASK, [make_doc()], cancel=token)
    assert res.cancelled and calls["n"] == 2 and len(remote.calls) == 1  # no synthesis after the cancel
    assert res.cost.role("local").usage.requests == 2 and res.cost.role("remote").usage.requests == 1
    assert res.answer == "$42 million" and res.degraded and "cancelled" in res.degraded_reason
    assert res.summary()["cancelled"] is True


async def test_task_cancel_on_a_running_arun_stops_further_model_calls():
    """What a server does when its client disconnects: cancel the asyncio task running arun."""
    started = asyncio.Event()
    calls = {"n": 0}

    async def slow_local(msgs, opts):
        calls["n"] += 1
        started.set()
        await asyncio.sleep(30)
        return honest_local(msgs, opts)
    remote = scripted_remote([plan("Find the revenue")], [final()])
    proto = minions(FunctionClient(slow_local), remote, max_rounds=1, ask_question=False, concurrency=1)
    task = asyncio.create_task(proto.arun(TASK, [make_doc()]))
    await asyncio.wait_for(started.wait(), 5)
    task.cancel()
    res = await asyncio.wait_for(task, 5)  # returns promptly, with what it had
    assert res.cancelled and res.answer is None and calls["n"] == 1
    assert res.cost.role("remote").usage.requests == 1 and len(remote.calls) == 1
    await asyncio.sleep(0.05)
    assert calls["n"] == 1  # no job started after the cancel


async def test_an_asyncio_event_works_as_a_cancel_token_for_minion():
    ev = asyncio.Event()

    def remote_fn(msgs, _o):
        ev.set()
        return '{"decision": "request_additional_info", "message": "Q?", "answer": null}'
    local = FunctionClient.from_replies(["A"], model="local")
    res = await Minion(local, FunctionClient(remote_fn, model="remote"), max_rounds=2).arun(TASK, [make_doc()],
                                                                                          cancel=ev)
    assert res.cancelled and local.calls == [] and res.cost.role("remote").usage.requests == 1


# --- the real embedded model as the worker ---------------------------------------------------------------

@pytest.mark.real_model
async def test_real_worker_answer_survives_a_remote_that_cannot_synthesize():
    """The reported failure with the embedded worker: the remote's synthesis is invalid twice; the run
    still answers, from a job whose quote was verified in the document."""
    from minions.clients.llamacpp import LlamaCppClient
    from minions.documents import Document

    local = LlamaCppClient("smollm2", n_threads=1)  # one thread: the suite shares two cores
    try:
        remote = scripted_remote([plan("Find the total revenue for fiscal 2024")], [EMPTY_FINAL])
        doc = Document.from_text("Northwind Traders sells specialty foods. Total revenue in fiscal 2024 was "
                                 "$42 million, up from $37 million in fiscal 2023. The company has 420 employees.",
                                 id="nw", title="Northwind annual report")
        res = await MinionS(local, remote, max_rounds=1, local_max_tokens=160).arun(
            "What was Northwind's total revenue in fiscal 2024?", doc)
        assert res.rounds[0].plan and any(j.status is JobStatus.KEPT for j in res.rounds[0].jobs), res.rounds[0].jobs
        assert res.answer and res.degraded and res.grounded and res.error_type == "ModelOutputError"
        assert "42" in res.answer and res.citations and all(citation_found(c.text, doc.text)[0] for c in res.citations)
        assert res.cost.role("local").usage.requests == len(res.rounds[0].jobs) == 2
    finally:
        await local.aclose()


def test_an_embedded_stand_in_remote_prefers_grounded_answers_unless_told_otherwise():
    from minions.protocols.build import build_protocol
    from minions.protocols.settings import RunSettings

    def factory(role, spec, kw):
        return FunctionClient(lambda m, o: "x", model=spec.split("/", 1)[1], **kw)

    def build(protocol, remote, **knobs):
        return build_protocol(RunSettings(protocol=protocol, local="llamacpp/smollm2", remote=remote, knobs=knobs),
                              factory=factory)
    stand_in = build("minions", "llamacpp/smollm2")
    assert stand_in.config.ungrounded_answer == "fallback" and stand_in.remote.stand_in
    assert build("minions", "llamacpp/smollm2", ungrounded_answer="flag").config.ungrounded_answer == "flag"
    cloud = build("minion", "openai/gpt-4o-mini")
    assert cloud.config.ungrounded_answer == "flag" and not cloud.remote.stand_in
    # A Client object carries its own stand-in status (the server builds its clients once, as objects):
    # the same knobs follow, not a spec string's prefix.
    as_object = build_protocol(RunSettings(protocol="minion", local=stand_in.local, remote=stand_in.remote))
    assert (as_object.config.ungrounded_answer, as_object.config.first_question) == ("fallback", "task")


def test_with_nothing_checkable_the_workers_answer_to_the_question_beats_an_ungrounded_synthesis():
    def unsure(msgs, _o):  # answers, but its quotes are never in the chunk
        return json.dumps({"explanation": "x", "citation": "words that are not in the excerpt",
                           "answer": "Yes, it does" if TASK in msgs[-1].content else "maybe"})
    remote = scripted_remote([plan("Find the revenue")], [final("provide_final_answer")])
    res = minions(FunctionClient(unsure), remote, max_rounds=1, ungrounded_answer="fallback").run(TASK, [make_doc()])
    assert res.answer == "Yes, it does" and res.degraded and res.grounded is False and res.citations == []
    assert "unverified" in res.degraded_reason
    flagged = minions(FunctionClient(unsure), scripted_remote([plan("Find the revenue")], [final("provide_final_answer")]),
                      max_rounds=1).run(TASK, [make_doc()])
    assert flagged.answer == "provide_final_answer" and flagged.grounded is False and not flagged.degraded


def test_fallback_mode_needs_the_remote_to_agree_with_the_answer_the_document_backs():
    # the capex job's verified "$3.1 million" makes that answer grounded, but it does not answer the question
    remote = scripted_remote([plan("Find the capital expenditure")], [final("$3.1 million")])
    res = minions(FunctionClient(honest_local), remote, max_rounds=1, ungrounded_answer="fallback").run(
        TASK, [make_doc()])
    assert res.answer == "$42 million" and res.degraded and "does not agree" in res.degraded_reason
    agreeing = minions(FunctionClient(honest_local), scripted_remote([plan("Find the revenue")], [final("42 million USD")]),
                       max_rounds=1, ungrounded_answer="fallback").run(TASK, [make_doc()])
    assert agreeing.answer == "42 million USD" and not agreeing.degraded


def test_minion_worker_can_first_answer_the_question_itself():
    remote = FunctionClient.from_replies([
        '{"decision": "request_additional_info", "message": "What is the company name?", "answer": null}',
        '{"decision": "provide_final_answer", "message": "", "answer": "$42 million"}'], model="remote")
    local = FunctionClient.from_replies(["Revenue was $42 million."], model="local")
    Minion(local, remote, max_rounds=1, first_question="task").run(TASK, [make_doc()])
    # The worker is asked exactly what the local-only baseline asks its model: same prompts, same context,
    # so Minion's first local reply (its fallback) is the worker's own best.
    alone = FunctionClient.from_replies(["Revenue was $42 million."], model="local")
    get_protocol("local-only", alone, None).run(TASK, [make_doc()])
    assert local.calls[0][0] == alone.calls[0][0] and TASK in local.calls[0][0][-1].content
