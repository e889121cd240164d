"""postscreen on port 25 and the PROXY-protocol ports, as rendered (render.postscreen)."""

from __future__ import annotations

from typing import Any

import pytest

from mailctl.errors import SettingsError
from mailctl.render import postfix, postscreen
from tests.unit.factory import main_cf_params as params
from tests.unit.factory import (
    master_options,
    master_rows,
    parse_table,
    postfix_list,
    settings,
)


def services(**extra: Any) -> dict[tuple[str, str], list[str]]:
    return master_rows(settings(**extra))


def main(**extra: Any) -> dict[str, str]:
    return params(postfix.main_cf(settings(**extra)))


def test_port_25_is_postscreen_by_default_and_submission_never() -> None:
    svc = services()
    assert svc[("smtp", "inet")] == ["postscreen"]
    assert svc[("smtpd", "pass")][0] == "smtpd"
    assert ("dnsblog", "unix") in svc and ("tlsproxy", "unix") in svc
    for name in ("submission", "smtps"):
        assert svc[(name, "inet")][0] == "smtpd"
    p = main()
    assert p["postscreen_greet_action"] == "enforce"
    assert p["postscreen_pipelining_enable"] == "yes"
    # The cache is on the postfix-data volume, shared by both postscreens via proxymap.
    assert p["postscreen_cache_map"] == "proxy:btree:$data_directory/postscreen_cache"
    assert postfix_list(p["postscreen_access_list"])[0] == "permit_mynetworks"


def test_postscreen_off_puts_smtpd_back_on_port_25() -> None:
    svc = services(postscreen={"enabled": False})
    assert svc[("smtp", "inet")] == ["smtpd"]
    assert ("smtpd", "pass") not in svc
    assert not [k for k in main(postscreen={"enabled": False}) if k.startswith("postscreen")]


def test_blocklists_move_to_postscreen_with_weights_and_the_error_range_left_out() -> None:
    rbl = {"lists": ["zen.example", "weak.example"], "whitelist": ["192.0.2.0/24"]}
    p = main(rbl=rbl, postscreen={"dnsbl_weights": {"zen.example": 3}, "dnsbl_threshold": 3})
    assert postfix_list(p["postscreen_dnsbl_sites"]) == [
        "zen.example=127.0.0.[2..255]*3",
        "weak.example=127.0.0.[2..255]*1",
    ]
    assert p["postscreen_dnsbl_threshold"] == "3"
    assert "reject_rbl_client" not in p["smtpd_client_restrictions"]
    # Without postscreen, smtpd asks them.
    off = main(rbl=rbl, postscreen={"enabled": False})
    assert "reject_rbl_client zen.example" in off["smtpd_client_restrictions"]


def test_a_host_name_in_the_rbl_whitelist_keeps_the_blocklists_in_smtpd() -> None:
    p = main(rbl={"lists": ["zen.example"], "whitelist": ["mx.friend.example"]})
    assert p["postscreen_dnsbl_sites"] == ""
    assert "reject_rbl_client zen.example" in p["smtpd_client_restrictions"]


def test_allow_lists_are_honoured_by_postscreen() -> None:
    s = settings(
        rbl={"lists": [], "whitelist": ["192.0.2.9", "ok.example"]},
        access={"clients": {"198.51.100.0/24": "OK", "203.0.113.5": "REJECT go away"}},
    )
    table = postfix.files(s)[postscreen.ACCESS].content.decode()
    assert parse_table(table) == [("192.0.2.9/32", "permit"), ("198.51.100.0/24", "permit")]
    assert postscreen.ACCESS_REF in params(postfix.main_cf(s))["postscreen_access_list"]


def test_proxy_port_for_port_25_goes_through_its_own_postscreen() -> None:
    svc = services(proxy_protocol={"smtp": True})
    argv = svc[("12525", "inet")]
    assert argv[0] == "postscreen"
    assert master_options(argv) == {"postscreen_upstream_proxy_protocol": "haproxy"}
    assert master_options(svc[("smtp", "inet")]) == {}  # the plain port stays plain
    # Without postscreen the PROXY header goes to smtpd itself.
    svc = services(proxy_protocol={"smtp": True}, postscreen={"enabled": False})
    assert master_options(svc[("12525", "inet")]) == {"smtpd_upstream_proxy_protocol": "haproxy"}


def test_proxy_submission_ports_keep_every_guard_of_the_plain_ones() -> None:
    svc = services(proxy_protocol={"submission": True})
    for port, plain in (("10587", "submission"), ("10465", "smtps")):
        opts = master_options(svc[(port, "inet")])
        assert opts.pop("smtpd_upstream_proxy_protocol") == "haproxy"
        assert opts == master_options(svc[(plain, "inet")])
        assert opts["smtpd_relay_restrictions"] == "permit_sasl_authenticated,reject"
    assert ("12525", "inet") not in svc
    assert ("10587", "inet") not in services()


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        ({"postscreen": {"dnsbl_weights": {"other.example": 2}}}, "postscreen.dnsbl_weights"),
        ({"postscreen": {"dnsbl_weights": {"zen.example": 0}}}, "postscreen.dnsbl_weights"),
        ({"postscreen": {"greet_wait": 0}}, "postscreen.greet_wait"),
        ({"proxy_protocol": {"smtp": "sometimes"}}, "proxy_protocol.smtp"),
    ],
)
def test_bad_values_are_refused_naming_the_setting(extra: dict[str, Any], named: str) -> None:
    with pytest.raises((SettingsError, ValueError)) as exc:
        settings(rbl={"lists": ["zen.example"]}, **extra)
    assert named in str(exc.value)
