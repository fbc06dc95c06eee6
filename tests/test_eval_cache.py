"""The LM-call cache: identical replies, zero inner calls on rerun, survives restarts and processes."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from minions.clients import FunctionClient, Message, Options
from minions.clients.cache import CachedClient, LMCache
from minions.errors import BadRequestError

MSGS = [Message(role="system", content="Be brief."), Message(role="user", content="What is 2+2?")]


def counting_client(model: str = "scripted") -> FunctionClient:
    state = {"n": 0}

    def reply(messages, options):
        state["n"] += 1
        return f"reply {state['n']} to {messages[-1].content}"

    return FunctionClient(reply, model=model)


async def test_hit_returns_the_identical_completion_with_its_original_usage(tmp_path: Path) -> None:
    inner = counting_client()
    client = CachedClient(inner, LMCache(tmp_path / "c.sqlite"))
    first = await client.complete(MSGS, max_tokens=20)
    again = await client.complete(MSGS, max_tokens=20)
    assert again.texts == first.texts == ["reply 1 to What is 2+2?"]
    assert again.usage == first.usage and again.model == first.model
    assert len(inner.calls) == 1 and (client.hits, client.misses) == (1, 1)
    assert client.spec == inner.spec and client.price_key == inner.price_key


async def test_key_covers_messages_options_and_model_but_not_price_key(tmp_path: Path) -> None:
    cache = LMCache(tmp_path / "c.sqlite")
    inner = counting_client()
    client = CachedClient(inner, cache)
    await client.complete(MSGS, max_tokens=20)
    for opts in (Options(max_tokens=21), Options(max_tokens=20, temperature=0.5), Options(max_tokens=20, seed=1),
                 Options(max_tokens=20, stop=("\n",)), Options(max_tokens=20, json_schema={"type": "object"}),
                 Options(max_tokens=20, n=2)):
        await client.complete(MSGS, opts)
    await client.complete(MSGS[1:], max_tokens=20)
    await client.complete([MSGS[0], Message(role="assistant", content=MSGS[1].content)], max_tokens=20)
    assert client.misses == 9 and client.hits == 0
    # The same model priced as something else shares entries; another model does not.
    priced = CachedClient(inner, cache, price_as="openai/gpt-4o")
    assert (await priced.complete(MSGS, max_tokens=20)).text == "reply 1 to What is 2+2?"
    assert priced.price_key == "openai/gpt-4o" and priced.hits == 1
    other = CachedClient(counting_client(model="other"), cache)
    await other.complete(MSGS, max_tokens=20)
    assert other.misses == 1
    # The provider cache hint does not change what the model says.
    await client.complete([MSGS[0].model_copy(update={"cache": True}), MSGS[1]], max_tokens=20)
    assert client.hits == 1


async def test_errors_are_not_cached(tmp_path: Path) -> None:
    calls = {"n": 0}

    def reply(messages, options):
        calls["n"] += 1
        if calls["n"] == 1:
            raise BadRequestError("bad")
        return "fine"

    client = CachedClient(FunctionClient(reply), LMCache(tmp_path / "c.sqlite"))
    with pytest.raises(BadRequestError):
        await client.complete(MSGS)
    assert (await client.complete(MSGS)).text == "fine"
    assert (await client.complete(MSGS)).text == "fine" and calls["n"] == 2


async def test_concurrent_identical_calls_reach_the_model_once(tmp_path: Path) -> None:
    async def slow(messages, options):
        await asyncio.sleep(0.05)
        return "once"

    inner = FunctionClient(slow)
    client = CachedClient(inner, LMCache(tmp_path / "c.sqlite"))
    out = await asyncio.gather(*(client.complete(MSGS) for _ in range(5)))
    assert {c.text for c in out} == {"once"} and len(inner.calls) == 1 and client.hits == 4


async def test_no_cache_passes_through_and_counts(tmp_path: Path) -> None:
    inner = counting_client()
    client = CachedClient(inner, None, price_as="openai/gpt-4o")
    await client.complete(MSGS)
    await client.complete(MSGS)
    assert client.misses == 2 and client.hits == 0 and len(inner.calls) == 2


async def test_survives_a_restart_and_reports_its_size(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    cache = LMCache(path)
    await CachedClient(counting_client(), cache).complete(MSGS)
    cache.close()
    inner = counting_client()
    client = CachedClient(inner, LMCache(path))
    assert (await client.complete(MSGS)).text == "reply 1 to What is 2+2?" and inner.calls == []
    stats = client.cache.stats()
    assert stats.entries == 1 and stats.bytes > 0 and str(path) in stats.describe()


SCRIPT = textwrap.dedent("""
    import sys
    from minions.clients import FunctionClient
    from minions.clients.cache import CachedClient, LMCache
    worker = sys.argv[2]
    client = CachedClient(FunctionClient(lambda m, o: "from " + worker + ": " + m[-1].content), LMCache(sys.argv[1]))
    for i in range(40):
        client.complete_sync("question %d" % i)
    print(client.hits, client.misses)
""")


def test_several_processes_share_one_cache(tmp_path: Path) -> None:
    path = tmp_path / "shared.sqlite"
    procs = [subprocess.Popen([sys.executable, "-c", SCRIPT, str(path), str(w)], stdout=subprocess.PIPE, text=True)
             for w in range(3)]
    outs = [p.communicate(timeout=120)[0].split() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert sum(int(h) + int(m) for h, m in outs) == 120
    stats = LMCache(path).stats()
    assert stats.entries == 40  # concurrent writers: no lost or duplicate keys, no "database is locked"
