"""Follow-up history: the library (Minion with multi_turn), serve (the official openai SDK sending a
multi-turn `messages` list) and the app (a protocol without memory) show the same earlier turns to the
remote as the same text: minions.protocols.history, the one formatter."""

from __future__ import annotations

import asyncio

from minions.clients.function import FunctionClient
from minions.protocols.history import Turn, history_block, with_history
from minions.protocols.minion import Minion
from minions.serve.chat import conversation_turns
from tests.gateway import OPENAI
from tests.test_app import QUESTION, ask, remote_only_answer
from tests.test_protocol_minion import DOC, PRICES, final
from tests.test_serve import serving

ANSWER = "120 million dollars."
FOLLOW_UP = "And the year before?"
TURNS = [Turn(question=QUESTION, answer=ANSWER)]


def test_history_block_numbers_keeps_the_last_turns_and_clips_long_answers():
    assert history_block([]) == "" and with_history("q?", []) == "q?"
    turns = [Turn(question=f"Q{i}?", answer=f"A{i}") for i in range(1, 5)]
    block = history_block(turns, keep=2)
    assert "Q2?" not in block and "1. Question: Q3?\n   Answer: A3\n2. Question: Q4?\n   Answer: A4" in block
    long = history_block([Turn(question="q?", answer="x" * 5000)])
    assert "x" * 600 not in long and long.endswith("x…")
    unanswered = history_block([Turn(question="only asked")])
    assert unanswered.endswith("1. Question: only asked")
    task = with_history("and 2023?", turns[:1])
    assert task.startswith(history_block(turns[:1])) and task.endswith("and 2023?")


def test_chat_messages_pair_into_turns_and_nothing_sent_is_dropped():
    turns = conversation_turns([("system", "Be brief."), ("user", "Q1?"), ("assistant", "A1"), ("user", "Q2?"),
                                ("user", "Q3?"), ("assistant", " "), ("assistant", "unprompted")])
    assert turns == [Turn(question="[system] Be brief."), Turn(question="Q1?", answer="A1"), Turn(question="Q2?"),
                     Turn(question="Q3?", answer="unprompted")]


def test_library_minion_shows_the_earlier_turn_as_the_one_history_block():
    local = FunctionClient.from_replies(["unused"], model="local")
    remote = FunctionClient(lambda _m, _o: final(ANSWER), model="remote")
    proto = Minion(local, remote, prices=PRICES, multi_turn=True)
    for q in (QUESTION, FOLLOW_UP):
        assert asyncio.run(proto.arun(q, DOC)).error is None
    assert proto.history[0] == TURNS[0]
    assert history_block(TURNS) in remote.calls[-1][0][0].content


def test_serve_shows_earlier_messages_as_the_same_history_block():
    remote = FunctionClient(lambda _m, _o: ANSWER, model="remote")
    with serving(remote) as (_, _, client):
        client.chat.completions.create(model="remote-only", messages=[
            {"role": "user", "content": QUESTION}, {"role": "assistant", "content": ANSWER},
            {"role": "user", "content": FOLLOW_UP}])
    (messages, _), = remote.calls
    assert history_block(TURNS) in messages[-1].content
    assert with_history(FOLLOW_UP, TURNS) in messages[-1].content


def test_app_follow_up_shows_the_same_history_block(gateway):
    at = remote_only_answer(gateway, ANSWER)
    ask(at, FOLLOW_UP)
    prompt = "\n".join(m["content"] for m in gateway.bodies(OPENAI)[-1]["messages"])
    assert with_history(FOLLOW_UP, TURNS) in prompt
