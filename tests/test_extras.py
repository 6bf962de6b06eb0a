"""A feature whose extra is not installed stops with one line naming the extra."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

from voicerail import cli
from voicerail.errors import ConfigError
from voicerail.extras import EXTRAS, require_extra


def test_a_missing_module_names_the_extra_to_install(monkeypatch):
    monkeypatch.setitem(EXTRAS, "sim", ("json", "voicerail_no_such_module"))
    with pytest.raises(ConfigError) as error:
        require_extra("sim", "voicerail simulate")
    assert str(error.value) == (
        "voicerail: extras.sim: voicerail simulate needs the 'sim' extra "
        "(missing voicerail_no_such_module): pip install 'voicerail[sim]'"
    )


def test_installed_extras_pass():
    for extra in EXTRAS:  # the development install has every extra
        require_extra(extra, "a test")


def test_simulate_without_the_sim_extra_exits_2_before_reading_anything(
    monkeypatch, capsys, tmp_path: Path
):
    monkeypatch.setitem(EXTRAS, "sim", ("voicerail_no_such_module",))
    assert cli.main(["simulate", str(tmp_path / "absent.yaml")]) == 2
    out = " ".join(capsys.readouterr().out.split())
    assert "pip install 'voicerail[sim]'" in out and "absent.yaml" not in out


def test_the_postgres_store_without_psycopg_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "psycopg", None)  # import psycopg raises ImportError
    monkeypatch.delitem(sys.modules, "voicerail.events.postgres", raising=False)
    with pytest.raises(ConfigError, match=r"needs the 'postgres' extra \(missing psycopg\)"):
        importlib.import_module("voicerail.events.postgres")


def test_trace_export_without_the_otel_extra_names_it_and_metrics_still_work(monkeypatch):
    from voicerail.events.telemetry import build_telemetry

    monkeypatch.setitem(EXTRAS, "otel", ("voicerail_no_such_module",))
    assert build_telemetry().tracing is None  # metrics and logs need no extra
    with pytest.raises(ConfigError, match=r"needs the 'otel' extra \(missing voicerail_no_such"):
        build_telemetry(otlp_endpoint="http://127.0.0.1:4318")


def test_serve_with_an_otlp_endpoint_and_no_otel_stops_before_loading(
    monkeypatch, capsys, tmp_path: Path
):
    monkeypatch.setitem(EXTRAS, "otel", ("voicerail_no_such_module",))
    argv = ["serve", "--data-dir", str(tmp_path / "d"), "--otlp-endpoint", "http://127.0.0.1:9"]
    assert cli.main([*argv, "--skip-credential-check"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install 'voicerail[otel]'" in err
    assert not list((tmp_path / "d").glob("*.sqlite3"))  # no store was opened


def test_a_missing_parent_package_counts_as_missing(monkeypatch):
    monkeypatch.setitem(EXTRAS, "otel", ("voicerail_no_such_package.sub",))
    with pytest.raises(ConfigError, match=r"missing voicerail_no_such_package.sub"):
        require_extra("otel", "trace export")
