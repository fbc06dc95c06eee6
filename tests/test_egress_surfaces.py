"""Issue 22, item 5: what left this machine, shown where users look — `minions serve`'s /metrics (with
the official `openai` SDK against the server, its remote behind the strict gateway), the eval
summary's "verbatim sent" column and privacy plot, and the app's "What left this machine" panel."""

from __future__ import annotations

from tests.gateway import OPENAI, ScriptedBackend

# --- minions serve: /metrics ----------------------------------------------------------------------


def test_serve_metrics_count_the_requests_and_bytes_that_left(gateway):
    from tests.test_serve import ANSWER, CORPUS, metric, serving

    gateway.backend = ScriptedBackend(lambda _m, _o: ANSWER)
    remote = gateway.client("openai")
    host = gateway.url.split("//")[1]
    with serving(remote) as (srv, _, client):
        assert metric(srv, "minions_egress_bytes_total", host=host) == 0
        outs = [client.chat.completions.create(model="remote-only", messages=[
            {"role": "user", "content": f"What was revenue in fiscal 2024? ({i})"}]) for i in range(2)]
        received = [r for r in gateway.requests if r.route == OPENAI]
        assert len(received) == 2
        # counted at the transport: exactly the bodies the gateway received, byte for byte
        assert metric(srv, "minions_egress_requests_total", host=host) == 2
        assert metric(srv, "minions_egress_bytes_total", host=host) == sum(len(r.raw) for r in received)
        exts = [o.model_extra["minions"]["egress"] for o in outs]
        assert [e["bytes"] for e in exts] == [len(r.raw) for r in received]
        # remote-only sends the whole document: all of it left verbatim, in each run
        doc_chars = exts[0]["documents"][0]["chars"]
        assert exts[0]["documents"][0]["verbatim_chars"] == doc_chars > 0
        assert doc_chars >= len(" ".join(CORPUS.text.split())) - 1
        assert metric(srv, "minions_egress_verbatim_chars_total") == 2 * doc_chars
