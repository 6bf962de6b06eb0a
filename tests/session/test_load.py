"""Admission: the pure decision and the live load monitor (session/load.py)."""

from __future__ import annotations

import pytest

from voicerail.session.load import (
    AdmissionConfig,
    Load,
    LoadMonitor,
    LoadSignals,
    decide,
    over_limit,
)
from voicerail.testing.clock import FakeClock


def load(calls: int = 0, reserved: int = 0, **kwargs) -> Load:
    return Load(
        calls_in_progress=calls, reserved=reserved, max_calls=3, signals=LoadSignals(), **kwargs
    )


def test_admits_below_the_ceiling_and_refuses_at_it():
    config = AdmissionConfig(max_calls=3)
    assert decide(config, load(calls=2)).admit
    refused = decide(config, load(calls=2, reserved=1))
    assert not refused.admit
    assert refused.reason == "full: 3 of 3 calls"


def test_draining_refuses_even_an_empty_server():
    assert decide(AdmissionConfig(), load(draining=True)).reason == "draining"


def test_an_overloaded_server_refuses_but_an_empty_one_still_serves_one_call():
    config = AdmissionConfig(max_calls=3)
    assert not decide(config, load(calls=1, overloaded_by="cpu 0.99>0.95")).admit
    assert decide(config, load(calls=0, overloaded_by="cpu 0.99>0.95")).admit


def test_over_limit_names_the_first_signal_over_its_limit():
    config = AdmissionConfig(max_loop_lag_s=0.1, max_cpu=0.9)
    assert over_limit(config, LoadSignals(loop_lag_s=0.05, cpu=0.5)) is None
    assert over_limit(config, LoadSignals(loop_lag_s=0.2)) == "loop_lag_s 0.200>0.100"
    assert over_limit(config, LoadSignals(cpu=0.8), ratio=0.5) == "cpu 0.800>0.450"


def monitor(clock: FakeClock, **config) -> LoadMonitor:
    return LoadMonitor(
        AdmissionConfig(**config), monotonic=clock.monotonic, cpu_time=lambda: 0.0, num_cores=2
    )


def test_a_webhook_reservation_holds_a_slot_until_its_stream_starts_or_it_expires():
    clock = FakeClock()
    m = monitor(clock, max_calls=1, reservation_s=10.0)
    assert m.admit(reservation="CA1").admit
    assert not m.admit(reservation="CA2").admit  # CA1 holds the only slot
    assert m.admit(reservation="CA1").admit  # its stream: already promised
    m.call_started("vr_1", reservation="CA1")
    assert m.snapshot().reserved == 0 and m.calls_in_progress == 1
    m.call_ended("vr_1")
    assert m.admit(reservation="CA3").admit
    clock.advance(10.0)  # CA3's stream never came
    assert m.snapshot().reserved == 0
    assert m.admit(reservation="CA4").admit
    assert m.refused == 1


def test_a_sustained_signal_closes_the_doors_and_they_reopen_below_the_hysteresis():
    clock = FakeClock()
    m = monitor(clock, max_calls=10, max_inbound_lag_s=0.3, window_s=5.0, reopen_ratio=0.5)
    m.call_started("vr_1")
    m.observe_inbound_lag(0.5)
    decision = m.admit()
    assert not decision.admit
    assert decision.reason == "overloaded: inbound_lag_s 0.500>0.300"
    clock.advance(6.0)  # the sample left the window
    m.observe_inbound_lag(0.2)  # under the limit but over half of it: still closed
    assert not m.admit().admit
    clock.advance(6.0)
    m.observe_inbound_lag(0.1)
    assert m.admit().admit


def test_ready_reports_the_load_for_a_load_balancer():
    clock = FakeClock()
    m = monitor(clock, max_calls=1)
    ready, snapshot = m.ready()
    assert ready and snapshot.calls_in_progress == 0
    m.call_started("vr_1")
    ready, snapshot = m.ready()
    assert not ready
    assert snapshot.to_dict()["calls_in_progress"] == 1
    m.draining = True
    m.call_ended("vr_1")
    assert not m.ready()[0]


def test_the_sampler_measures_event_loop_lag_and_cpu_per_core():
    clock = FakeClock()
    cpu = {"s": 0.0}
    m = LoadMonitor(
        AdmissionConfig(window_s=100.0),
        monotonic=clock.monotonic,
        cpu_time=lambda: cpu["s"],
        num_cores=2,
    )
    clock.advance(0.3)  # asked to sleep 0.1 s, woke 0.2 s late
    m.sample(0.0, 0.1)
    assert m.snapshot().signals.loop_lag_s == pytest.approx(0.2)
    assert m.snapshot().signals.cpu == 0.0  # under a second: no CPU sample yet
    cpu["s"] = 1.6  # 1.6 CPU seconds in 2 wall seconds on 2 cores: 40 %
    clock.advance(1.7)
    m.sample(1.9, 0.1)
    assert m.snapshot().signals.loop_lag_s == pytest.approx((0.2 + 0.0) / 2)
    assert m.snapshot().signals.cpu == pytest.approx(0.4)


def test_optional_work_gives_way_on_cpu_or_on_half_the_ceiling():
    clock = FakeClock()
    m = monitor(clock, max_calls=4, busy_cpu=0.6, busy_calls_ratio=0.5)
    assert not m.busy()
    m.call_started("vr_1")
    m.observe_cpu(0.7)
    assert m.busy()
    clock.advance(10.0)  # the CPU sample left the window
    assert not m.busy()
    m.call_started("vr_2")
    assert m.busy()
