"""Issue 11 item 8 / issue 16 item 3: one rate limiter with named policies and one
pseudonymising key; IPv6 clients grouped by /64; X-Forwarded-For only from
TRUSTED_PROXIES (with PROXY_HEADERS)."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest
from django.core.cache import cache
from django.core.exceptions import ImproperlyConfigured
from django.test import Client, RequestFactory

from redconnect import ratelimit
from redconnect.settings import parse_trusted_proxies
from tests.test_join import cache_contents, post_join

pytestmark = pytest.mark.django_db
WRONG = "7KQ2-M9XD-4TNF"
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _fresh_cache():
    cache.clear()
    yield
    cache.clear()


def request(remote: str, forwarded: str | None = None):
    extra = {"HTTP_X_FORWARDED_FOR": forwarded} if forwarded is not None else {}
    return RequestFactory().get("/", REMOTE_ADDR=remote, **extra)


def fail_from(address: str, times: int = 1, **extra) -> None:
    client = Client(REMOTE_ADDR=address)
    for _ in range(times):
        assert post_join(client, WRONG, **extra).status_code == 200


# --- IPv6 /64 ---------------------------------------------------------------------------


def test_ipv6_clients_of_one_64_share_the_join_limit(settings, issued):
    for number in range(settings.JOIN_FAILURE_LIMIT):
        fail_from(f"2001:db8:aa:bb:{number:x}::{number + 7:x}")
    blocked = Client(REMOTE_ADDR="2001:db8:aa:bb:ffff:ffff:ffff:ffff")
    assert post_join(blocked, issued.patient_code).status_code == 429
    neighbour = Client(REMOTE_ADDR="2001:db8:aa:bc::1")
    assert post_join(neighbour, issued.patient_code).status_code == 302


def test_ipv4_clients_are_told_apart_by_their_full_address():
    assert ratelimit.client_key(request("192.0.2.1")) != ratelimit.client_key(request("192.0.2.2"))


def test_an_ipv4_mapped_address_is_the_ipv4_client():
    assert ratelimit.client_network(request("::ffff:192.0.2.7")) == "192.0.2.7"
    assert ratelimit.client_network(request("2001:db8::1")) == "2001:db8::/64"


def test_the_api_key_policy_groups_ipv6_the_same_way(settings):
    key = ratelimit.client_key(request("2001:db8:1:2::1"))
    for _ in range(settings.API_KEY_FAILURE_LIMIT):
        ratelimit.record_failure("api-key", key)
    assert ratelimit.client_blocked("api-key", request("2001:db8:1:2:ffff::9"))
    assert not ratelimit.client_blocked("join", request("2001:db8:1:2:ffff::9"))


# --- X-Forwarded-For and TRUSTED_PROXIES --------------------------------------------------


def test_forwarded_for_is_believed_only_from_a_trusted_proxy(settings, issued):
    settings.PROXY_HEADERS = True
    settings.TRUSTED_PROXIES = ["127.0.0.0/8", "::1/128"]
    # A client on the Internet sends its own header: it does not escape the limit.
    for number in range(settings.JOIN_FAILURE_LIMIT):
        fail_from("198.51.100.50", HTTP_X_FORWARDED_FOR=f"203.0.113.{number}")
    client = Client(REMOTE_ADDR="198.51.100.50")
    fresh = {"HTTP_X_FORWARDED_FOR": "203.0.113.200"}
    assert post_join(client, issued.patient_code, **fresh).status_code == 429
    # Through the proxy on loopback the forwarded address tells clients apart.
    proxied = Client(REMOTE_ADDR="127.0.0.1")
    assert post_join(proxied, issued.patient_code, **fresh).status_code == 302


def test_trusted_proxies_in_the_chain_are_skipped(settings):
    settings.PROXY_HEADERS = True
    settings.TRUSTED_PROXIES = ["127.0.0.1/32", "192.0.2.0/24"]
    chain = "10.0.0.1, 203.0.113.9, 192.0.2.10"  # forged, client, second proxy
    assert ratelimit.client_address(request("127.0.0.1", chain)) == "203.0.113.9"
    # An untrusted peer: its header is ignored.
    assert ratelimit.client_address(request("198.51.100.3", chain)) == "198.51.100.3"
    # Garbage from the proxy: counted against the last trusted hop, not a forged entry.
    assert ratelimit.client_address(request("127.0.0.1", "x, nonsense")) == "127.0.0.1"


def test_without_proxy_headers_forwarded_for_is_ignored_even_from_loopback(settings):
    settings.PROXY_HEADERS = False
    assert ratelimit.client_address(request("127.0.0.1", "203.0.113.9")) == "127.0.0.1"


def test_trusted_proxies_setting_is_validated():
    assert parse_trusted_proxies(None) == ["127.0.0.0/8", "::1/128"]
    assert parse_trusted_proxies("10.0.0.5, fd00::/8") == ["10.0.0.5/32", "fd00::/8"]
    with pytest.raises(ImproperlyConfigured):
        parse_trusted_proxies("10.0.0.0/33")
    with pytest.raises(ImproperlyConfigured):
        parse_trusted_proxies("proxy.example")


# --- one key, one module --------------------------------------------------------------------


def test_one_pseudonymising_key_derived_from_the_secret_key(settings):
    req = request("192.0.2.44")
    before = ratelimit.client_key(req)
    settings.CODE_HMAC_KEY = "another-code-key"
    assert ratelimit.client_key(req) == before  # not the code-digest key
    settings.SECRET_KEY = settings.SECRET_KEY + "x"
    assert ratelimit.client_key(req) != before


def test_counters_hold_pseudonyms_only(settings):
    fail_from("2001:db8:77::5", 3)
    stored = cache_contents()
    assert "2001:db8:77" not in stored and "2001:db8:77::" not in stored
    assert ratelimit.client_key(request("2001:db8:77::99")) in stored


def test_the_old_limiters_are_gone():
    for module in ("consultations.ratelimit", "redconnect.throttle"):
        with pytest.raises(ModuleNotFoundError):
            importlib.import_module(module)
    # Every caller goes through the named policies of redconnect.ratelimit.
    for path in ("consultations/views.py", "consultations/api_services.py"):
        imports = re.findall(r"^from redconnect import (.+)$", (ROOT / path).read_text(), re.M)
        assert any("ratelimit" in names.split(", ") for names in imports), path
