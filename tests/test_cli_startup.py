"""``voicerail serve`` start-up failures: one clear line and a non-zero exit (issue 11).

Both checks run before any model loads, so these tests take milliseconds."""

from __future__ import annotations

import socket

import pytest

from voicerail.cli import main


def test_a_port_in_use_is_one_line_and_no_serving_message(tmp_path, capsys):
    """Issue 11: "serving … on :PORT" was printed before the bind error."""
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        status = main(["serve", "--port", str(port), "--data-dir", str(tmp_path)])
    out, err = capsys.readouterr()
    assert status == 2
    assert out == ""
    assert err.splitlines() == [
        f"voicerail: --port: cannot listen on 127.0.0.1:{port}: Address already in use"
    ]


def test_a_data_dir_that_is_a_file_is_one_line(tmp_path, capsys):
    """Issue 11: --data-dir pointing at a file was a 15-line traceback."""
    path = tmp_path / "events.txt"
    path.write_text("not a directory")
    status = main(["serve", "--port", "0", "--data-dir", str(path)])
    out, err = capsys.readouterr()
    assert status == 2
    assert out == ""
    assert err.splitlines() == [f"voicerail: --data-dir: {path} is not a directory"]


def test_a_data_dir_that_cannot_be_created_is_one_line(tmp_path, capsys):
    parent = tmp_path / "file"
    parent.write_text("")
    status = main(["serve", "--port", "0", "--data-dir", str(parent / "sub")])
    _, err = capsys.readouterr()
    assert status == 2
    assert err.splitlines() == [
        f"voicerail: --data-dir: cannot create {parent / 'sub'}: Not a directory"
    ]


def test_calls_list_limit_is_bounded_by_argparse(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["calls", "list", "--limit", "-1"])
    assert exited.value.code == 2
    assert "--limit: must be an integer from 1 to 1000" in capsys.readouterr().err


def test_a_redis_that_does_not_answer_is_one_line_before_models_load(tmp_path, capsys):
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]  # bound, never answers PING: closed right after
    url = f"redis://127.0.0.1:{port}/0"
    status = main(["serve", "--port", "0", "--data-dir", str(tmp_path), "--redis-url", url])
    out, err = capsys.readouterr()
    assert status == 2
    assert out == ""
    [line] = err.splitlines()
    assert line.startswith(f"voicerail: --redis-url: redis at {url} does not answer: ")


def test_a_bad_forwarded_allow_ips_entry_is_one_line_before_anything_is_bound(tmp_path, capsys):
    """Trusting proxy headers is opt-in, and a typo in the list is refused at once."""
    argv = ["serve", "--port", "0", "--data-dir", str(tmp_path)]
    status = main([*argv, "--forwarded-allow-ips", "127.0.0.1,nginx"])
    out, err = capsys.readouterr()
    assert status == 2
    assert out == ""
    assert err.splitlines() == [
        "voicerail: --forwarded-allow-ips: expected an IP address or network, got 'nginx'"
    ]


def test_browser_calls_beyond_loopback_need_access_configured(tmp_path, capsys, monkeypatch):
    """Anyone reaching /call could place calls: refused before the models load."""
    monkeypatch.delenv("VOICERAIL_API_KEY", raising=False)
    monkeypatch.delenv("VOICERAIL_DASHBOARD_PASSWORD", raising=False)
    argv = ["serve", "--host", "0.0.0.0", "--port", "0", "--data-dir", str(tmp_path)]
    status = main([*argv, "--browser-calls"])
    out, err = capsys.readouterr()
    assert status == 2 and out == ""
    assert err.splitlines() == [
        "voicerail: --browser-calls on 0.0.0.0 needs an API key or a dashboard password "
        "(VOICERAIL_API_KEY, VOICERAIL_DASHBOARD_PASSWORD), or bind to 127.0.0.1"
    ]
