"""The dashboard's review page: the QA sample, a label per call as an event, every read
and label audited, forms guarded against cross-site posts, all behind the login."""

from __future__ import annotations

from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from voicerail.compliance.audit import AuditLog
from voicerail.compliance.evaluation import CallEvaluation
from voicerail.compliance.policy import SamplingPolicy
from voicerail.compliance.review_http import ReviewPage, csrf_token, review_body, review_routes
from voicerail.events.model import EventKind
from voicerail.events.store import SQLiteEventStore
from voicerail.ops.credentials import DAY_S
from voicerail.server.auth import COOKIE, AccessMiddleware, AccessSettings, login_routes
from voicerail.testing.call_generator import plan_calls, store_calls

NOW = 1_800_000_000.0
KEY = "review-test-key"
PLANS = list(plan_calls(7, 60, start_s=NOW - 6 * DAY_S, end_s=NOW))


@pytest.fixture
def store(tmp_path: Path):
    store = SQLiteEventStore(tmp_path / "events.sqlite3")
    store_calls(store, PLANS)
    yield store
    store.close()


@pytest.fixture
def page(store, tmp_path: Path) -> ReviewPage:
    return ReviewPage(lambda: store, lambda: NOW, tmp_path / "audit.sqlite3", SamplingPolicy())


@pytest.fixture
def client(page):
    access = AccessSettings(api_key=KEY)
    app = Starlette(routes=[*review_routes(page), *login_routes(access, now=lambda: NOW)])
    app.add_middleware(AccessMiddleware, access=access, now=lambda: NOW)
    with TestClient(app, base_url="http://voicerail.test") as client:
        yield client


def signed_in(client: TestClient) -> str:
    reply = client.post("/login", data={"secret": KEY, "next": "/dashboard/review"},
                        follow_redirects=False)  # fmt: skip
    assert reply.status_code == 303
    return client.cookies[COOKIE]


def audit_actions(page: ReviewPage) -> list[str]:
    log = AuditLog(page.audit_path)
    try:
        assert log.verify().problems == []
        return [e.action for e in log.entries()]
    finally:
        log.close()


def labels(store: SQLiteEventStore, call_id: str) -> list[str]:
    return [e.data["label"] for e in store.events(call_id) if e.kind == EventKind.REVIEW_LABELED]


def first_sampled(client: TestClient) -> str:
    html = client.get("/dashboard/review").text
    return html.split('<tr id="review-', 1)[1].split('"', 1)[0]


def test_the_page_needs_the_login(client):
    reply = client.get("/dashboard/review", follow_redirects=False)
    assert reply.status_code == 303 and reply.headers["location"].startswith("/login")
    reply = client.post("/dashboard/review/x/label", data={"label": "ok"})
    assert reply.status_code == 401


def test_the_page_lists_the_failed_calls_and_its_read_is_audited(client, page):
    signed_in(client)
    html = client.get("/dashboard/review").text
    failed = {p.call_id for p in PLANS if p.outcome == "failed"}
    assert failed and all(f'<tr id="review-{c}"' in html for c in failed)
    assert audit_actions(page) == ["review.list"]


def test_a_label_is_an_event_and_audited(client, page, store):
    cookie = signed_in(client)
    call_id = first_sampled(client)
    reply = client.post(
        f"/dashboard/review/{call_id}/label",
        data={"label": "misheard", "reviewer": "alice", "csrf": csrf_token(cookie)},
        headers={"Origin": "http://voicerail.test"},
        follow_redirects=False,
    )
    assert reply.status_code == 303 and labels(store, call_id) == ["misheard"]
    html = client.get(reply.headers["location"]).text
    assert f"Saved the label of {call_id}" in html and "misheard (alice)" in html
    assert audit_actions(page) == ["review.list", "call.labeled", "review.list"]


@pytest.mark.parametrize(
    ("token", "origin"),
    [("", "http://voicerail.test"), ("forged", None), (None, "https://evil.example")],
)
def test_a_cross_site_or_tokenless_post_changes_nothing(client, page, store, token, origin):
    cookie = signed_in(client)
    call_id = first_sampled(client)
    headers = {"Origin": origin} if origin else {}
    reply = client.post(
        f"/dashboard/review/{call_id}/label",
        data={"label": "ok", "csrf": csrf_token(cookie) if token is None else token},
        headers=headers,
    )
    assert reply.status_code == 403 and labels(store, call_id) == []
    assert audit_actions(page) == ["review.list"]


def test_an_unknown_label_or_call_is_refused(client, store):
    token = csrf_token(signed_in(client))
    call_id = first_sampled(client)
    bad = client.post(f"/dashboard/review/{call_id}/label", data={"label": "meh", "csrf": token})
    assert bad.status_code == 400 and "unknown label &#x27;meh&#x27;" in bad.text
    none = client.post("/dashboard/review/nope/label", data={"label": "ok", "csrf": token})
    assert none.status_code == 404 and labels(store, call_id) == []


def test_the_body_escapes_and_shows_an_empty_window():
    ev = CallEvaluation("c<1>", outcome="failed", intents=["book"], latency_ms=[812.0])
    body = review_body([(ev, "failed", ("ok", "<b>"))], 7, "tok")
    assert "c&lt;1&gt;" in body and "ok (&lt;b&gt;)" in body and "812 ms" in body
    assert 'value="ok" selected' in body
    assert "No call to review" in review_body([], 7, "tok")


def test_serve_adds_the_page_with_the_deployment_sampling_and_the_agent_labels(tmp_path):
    from voicerail.compliance import review_http
    from voicerail.config import ServeOptions

    examples = Path(__file__).parents[2] / "examples"
    options = ServeOptions(agent_path=examples / "clinic.yaml", data_dir=tmp_path,
                           providers_path=examples / "voicerail.yaml")  # fmt: skip
    app = Starlette()
    page = review_http.add_review_page(app, object(), options)
    assert [r.path for r in app.router.routes] == [
        "/dashboard/review", "/dashboard/review/{call_id}/label"]  # fmt: skip
    assert page.sampling.percent_of_rest == 5 and page.success["human"] == "handoff"
    assert page.audit_path == tmp_path / "audit.sqlite3"
