"""REST API query parameters: bounded and validated (issue 11)."""

from __future__ import annotations

import pytest

from voicerail.server.params import BadParameter, CallsQuery, parse_calls_query


def test_defaults_and_valid_values_parse():
    assert parse_calls_query({}) == CallsQuery(limit=50)
    query = parse_calls_query({"limit": "1000", "outcome": "failed", "call_sid": "CA" + "a" * 32})
    telnyx = parse_calls_query({"call_sid": "v3:MdI91X4lWFEs7IgbBEOT9M4AigoY08M0WWZFISt1Y_w2ax"})
    assert telnyx.call_sid is not None and telnyx.call_sid.startswith("v3:")
    assert query == CallsQuery(limit=1000, outcome="failed", call_sid="CA" + "a" * 32)


@pytest.mark.parametrize(
    "params, name",
    [
        ({"limit": "-1"}, "limit"),
        ({"limit": "0"}, "limit"),
        ({"limit": "1001"}, "limit"),
        ({"limit": "9223372036854775808"}, "limit"),
        ({"limit": "x"}, "limit"),
        ({"limit": ""}, "limit"),
        ({"outcome": "won"}, "outcome"),
        ({"call_sid": ""}, "call_sid"),
        ({"call_sid": "CA 1"}, "call_sid"),
        ({"call_sid": "C" * 129}, "call_sid"),
    ],
)
def test_bad_values_name_the_parameter(params, name):
    with pytest.raises(BadParameter) as caught:
        parse_calls_query(params)
    assert caught.value.name == name
    assert str(caught.value).startswith(f"{name}: ")
