"""/metrics, /healthz, /readyz and JSON logs, on a service in this process (SQLite)."""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from pmargin.service.app import create_app
from pmargin.service.observability import setup_json_logs
from pmargin.service.server import open_service
from tests.service.conftest import OPTION, market_json


@pytest.fixture
def svc_client(tmp_path) -> Iterator[tuple[Any, TestClient, dict[str, str]]]:
    svc = open_service(f"sqlite:///{tmp_path / 'obs.db'}", attest_key=tmp_path / "k.pem")
    keys = {r: svc.store.create_key(r, None) for r in ("operator", "risk")}
    with TestClient(create_app(svc)) as client:
        yield svc, client, keys


def _post(client: TestClient, key: str, path: str, body: Any) -> Any:
    r = client.post(path, json=body, headers={"Authorization": f"Bearer {key}",
                                              "Idempotency-Key": uuid.uuid4().hex})
    assert r.status_code == 200, r.text
    return r.json()


def _samples(client: TestClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    r = client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    out = {}
    for fam in text_string_to_metric_families(r.text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _seed(client: TestClient, keys: dict[str, str], n: int = 3) -> list[str]:
    _post(client, keys["operator"], "/v1/market", market_json())
    accts = []
    for i in range(n):
        a = f"obs{i}"
        _post(client, keys["operator"], "/v1/accounts", {"id": a, "book": "BTC"})
        _post(client, keys["operator"], "/v1/transfers", {
            "account": a, "currency": "BTC", "amount": "0.05" if i else "2",
            "direction": "deposit"})
        accts.append(a)
    if n < 2:
        return accts
    _post(client, keys["operator"], "/v1/fills", {
        "account": "obs1", "instrument": OPTION, "quantity": "-1", "price": "0.03",
        "price_currency": "BTC", "new_order": False})  # deep under IM on purpose
    return accts


def test_healthz_and_readyz(svc_client) -> None:
    svc, client, keys = svc_client
    assert client.get("/healthz").json()["ok"] is True
    r = client.get("/readyz")
    assert r.status_code == 503
    assert r.json()["checks"]["market"] is False
    _seed(client, keys)
    r = client.get("/readyz")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["ready"]
    assert body["seq"] == body["log_seq"]
    # the database unreachable: not ready, and it says so
    good = svc.store.engine
    svc.store.engine = sa.create_engine("sqlite:////nonexistent-dir/x.db")
    try:
        r = client.get("/readyz")
        assert r.status_code == 503
        assert r.json()["checks"]["database"] is False
    finally:
        svc.store.engine = good
    # a log ahead of the state (an event the process has not replayed): not ready
    svc.state.seq -= 1
    try:
        r = client.get("/readyz")
        assert r.status_code == 503
        assert r.json()["checks"]["replayed"] is False
    finally:
        svc.state.seq += 1


def test_metrics(svc_client) -> None:
    svc, client, keys = svc_client
    m = _samples(client)
    assert m[("pmargin_feed_age_seconds", ())] == -1.0
    _seed(client, keys)
    for minutes in (1, 2):
        _post(client, keys["operator"], "/v1/market", market_json(minutes=minutes))
    # the enforcer works in its own thread: stop it so that the state the metrics are compared
    # with does not move between the two reads (its steps are events: seq and health change)
    svc.enforcer.stop()
    book = client.get("/v1/book", headers={"Authorization": f"Bearer {keys['risk']}"}).json()
    client.get("/v1/accounts/obs0", headers={"Authorization": f"Bearer {keys['risk']}"})
    svc.metrics.liquidation_queue.labels(book="BTC").set(3)
    svc.metrics.stream_clients.inc()
    m = _samples(client)
    # three market updates, each an epoch: latency observed three times
    assert m[("pmargin_epoch_latency_seconds_count", ())] == 3
    assert m[("pmargin_attestation_seconds_count", ())] == 3
    assert m[("pmargin_attestation_epoch", ())] == 3
    for h, n in book["books"][0]["by_health"].items():
        assert m[("pmargin_accounts", (("book", "BTC"), ("health", h)))] == n
    assert m[("pmargin_accounts", (("book", "BTC"), ("health", "margin_call")))] + \
        m[("pmargin_accounts", (("book", "BTC"), ("health", "liquidation")))] + \
        m[("pmargin_accounts", (("book", "BTC"), ("health", "bankrupt")))] >= 1
    assert m[("pmargin_liquidation_queue", (("book", "BTC"),))] == 3
    assert m[("pmargin_stream_clients", ())] == 1
    assert 0 <= m[("pmargin_feed_age_seconds", ())] < 60
    assert m[("pmargin_event_seq", ())] == svc.state.seq
    route = (("method", "GET"), ("route", "/v1/accounts/{account_id}"), ("status", "200"))
    assert m[("pmargin_http_request_duration_seconds_count", route)] == 1
    post_market = (("method", "POST"), ("route", "/v1/market"), ("status", "200"))
    assert m[("pmargin_http_request_duration_seconds_count", post_market)] == 3
    # raw paths never become labels
    client.get("/v1/nothing-here-123")
    m = _samples(client)
    assert not any("nothing-here" in str(k) for k in m)


def test_json_logs_carry_the_sequence(svc_client) -> None:
    _, client, keys = svc_client
    buf = io.StringIO()
    handler = setup_json_logs(stream=buf)
    try:
        _seed(client, keys, n=1)
        dep = _post(client, keys["operator"], "/v1/transfers", {
            "account": "obs0", "currency": "BTC", "amount": "0.1", "direction": "deposit"})
    finally:
        import logging

        logging.getLogger("pmargin").removeHandler(handler)
    lines = [json.loads(x) for x in buf.getvalue().splitlines()]  # every line is JSON
    writes = [x for x in lines if x.get("event") == "write"]
    assert {"ts", "level", "logger", "msg", "seq", "kind"} <= set(writes[-1])
    assert writes[-1]["seq"] == dep["seq"]
    assert writes[-1]["kind"] == "deposit"
    seqs = [w["seq"] for w in writes]
    assert seqs == sorted(seqs)
    assert len(set(seqs)) == len(seqs)
    att = [x for x in lines if x.get("event") == "attestation"]
    assert att
    assert att[0]["epoch"] == 1
    assert len(att[0]["merkle_root"]) == 64
