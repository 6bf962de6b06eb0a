"""``voicerail serve --sip HOST:PORT``: the flag's parsing."""

from __future__ import annotations

import pytest

from voicerail.cli import _sip_settings


def test_the_flag_becomes_sip_settings_with_the_handoff_number() -> None:
    settings = _sip_settings("0.0.0.0:5062", "+15550100")
    assert (settings.host, settings.port, settings.handoff_number) == (
        "0.0.0.0",
        5062,
        "+15550100",
    )
    assert _sip_settings(None, None) is None


@pytest.mark.parametrize("bind", ["5060", "host:", "host:99999", ":5060"])
def test_a_bad_address_is_refused(bind: str) -> None:
    with pytest.raises(SystemExit, match="--sip expects HOST:PORT"):
        _sip_settings(bind, None)
