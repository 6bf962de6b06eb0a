"""Failed-login throttling: per client and per account (issue 11)."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from voicerail.events.store import SQLiteEventStore
from voicerail.server.app import ServerSettings, create_app
from voicerail.server.auth import AccessSettings
from voicerail.server.limits import ServerLimits
from voicerail.server.login_throttle import LoginThrottle
from voicerail.server.operations import OperationsSettings
from voicerail.session.runtime import Runtime
from voicerail.testing.clock import FakeClock
from voicerail.testing.doubles import QuietAgent, SilentSTT, SilentTTS


def test_a_client_is_locked_out_after_its_failures_within_the_window():
    throttle = LoginThrottle(per_client=3, per_account=100, window_s=60.0, lockout_s=30.0)
    for t in (0.0, 1.0):
        throttle.record_failure("a", t)
        assert throttle.retry_after_s("a", t) is None
    throttle.record_failure("a", 2.0)
    assert throttle.retry_after_s("a", 2.0) == pytest.approx(30.0)
    assert throttle.retry_after_s("b", 2.0) is None  # another client is not affected
    assert throttle.retry_after_s("a", 31.9) == pytest.approx(0.1)
    assert throttle.retry_after_s("a", 32.0) is None


def test_failures_spread_beyond_the_window_do_not_lock():
    throttle = LoginThrottle(per_client=3, per_account=100, window_s=10.0, lockout_s=30.0)
    for t in (0.0, 6.0, 12.0, 18.0):
        throttle.record_failure("a", t)
        assert throttle.retry_after_s("a", t) is None


def test_the_account_locks_when_many_clients_fail_together():
    throttle = LoginThrottle(per_client=5, per_account=4, window_s=60.0, lockout_s=30.0)
    for k in range(4):
        throttle.record_failure(f"10.0.0.{k}", float(k))
    assert throttle.retry_after_s("10.9.9.9", 3.0) == pytest.approx(30.0)


def test_a_success_forgets_the_clients_failures():
    throttle = LoginThrottle(per_client=2, per_account=100, window_s=60.0, lockout_s=30.0)
    throttle.record_failure("a", 0.0)
    throttle.record_success("a")
    throttle.record_failure("a", 1.0)
    assert throttle.retry_after_s("a", 1.0) is None


def test_tracked_clients_are_bounded():
    throttle = LoginThrottle(per_client=1, per_account=10**6, max_clients=2)
    for client in ("a", "b", "c"):
        throttle.record_failure(client, 0.0)
    assert throttle.retry_after_s("a", 0.0) is None  # forgotten, the oldest
    assert throttle.retry_after_s("c", 0.0) is not None


def test_bad_limits_are_refused():
    with pytest.raises(ValueError, match="per_client=0"):
        LoginThrottle(per_client=0)


def test_login_route_answers_429_after_repeated_wrong_passwords(tmp_path):
    """Issue 11: 200 wrong passwords in 0.1 s met no delay or lockout."""
    clock = FakeClock()
    runtime = Runtime(
        agent=QuietAgent(),
        stt=SilentSTT(),
        tts=SilentTTS(),
        events=SQLiteEventStore(tmp_path / "e.sqlite3"),
        clock=clock,
    )
    settings = ServerSettings(
        operations=OperationsSettings(access=AccessSettings(password="right"), credentials=[]),
        limits=ServerLimits(login_failures_per_client=5, login_lockout_s=60.0),
    )
    client = TestClient(create_app(runtime, settings))
    statuses = [client.post("/login", data={"secret": f"guess{k}"}).status_code for k in range(8)]
    assert statuses == [401] * 5 + [429] * 3
    locked = client.post("/login", data={"secret": "right"}, follow_redirects=False)
    assert locked.status_code == 429  # not even the right secret during a lockout
    assert locked.headers["retry-after"] == "60"
    assert "too many failed sign-ins; try again in 60 s" in locked.text
    clock.advance(61.0)
    assert (
        client.post("/login", data={"secret": "right"}, follow_redirects=False).status_code == 303
    )
    runtime.events.close()
