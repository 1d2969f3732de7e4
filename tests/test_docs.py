"""The deployment guide's configuration follows BSI TR-02102-2 and ASVS V17.

Operators copy these snippets; a cipher outside the TR's list or a missing TURN peer
restriction in the guide would end up on real servers.
"""

from __future__ import annotations

import configparser
import ipaddress
import re
import subprocess
from pathlib import Path

import pytest

from compliance.bsi import GROUPS, TLS12_CIPHERS, TLS13_CIPHERSUITES
from redconnect import affinity
from tests.support.deployment import require_tool

DOCS = Path(__file__).resolve().parent.parent / "docs"
DEPLOYMENT = (DOCS / "deployment.md").read_text()
OPERATIONS = (DOCS / "operations.md").read_text()
PROTOCOL = (DOCS / "protocol.md").read_text()

# Peer addresses TURN must never relay to (OWASP ASVS 5.0 V17; IANA special-purpose).
PRIVATE_AND_RESERVED = [
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.0.0.0/24",
    "192.0.2.0/24",
    "192.88.99.0/24",
    "192.168.0.0/16",
    "198.18.0.0/15",
    "198.51.100.0/24",
    "203.0.113.0/24",
    "224.0.0.0/4",
    "240.0.0.0/4",
    "::/128",
    "::1/128",
    "::ffff:0:0/96",
    "64:ff9b::/96",
    "64:ff9b:1::/48",
    "100::/64",
    "2001::/23",
    "2001:db8::/32",
    "2002::/16",
    "fc00::/7",
    "fe80::/10",
    "ff00::/8",
]
CONTRACT_VARIABLES = [
    "SECRET_KEY",
    "DATABASE_URL",
    "REDIS_URL",
    "PUBLIC_URL",
    "ALLOWED_HOSTS",
    "PROXY_HEADERS",
    "ICE_SERVERS",
    "TURN_SECRET",
    "METADATA_RETENTION_DAYS",
    "OPERATOR_NAME",
    "OPERATOR_ADDRESS",
    "OPERATOR_EMAIL",
    "HOSTING_PROVIDER",
    "HOSTING_COUNTRY",
]


def code_blocks(text: str, language: str) -> list[str]:
    """The fenced code blocks with this info string ("" for plain fences)."""
    blocks, current, info = [], None, ""
    for line in text.splitlines():
        if line.startswith("```"):
            if current is None:
                current, info = [], line[3:].strip()
            else:
                if info == language:
                    blocks.append("\n".join(current) + "\n")
                current = None
        elif current is not None:
            current.append(line)
    return blocks


def directive(block: str, name: str) -> str:
    """The value of an nginx directive (`name value;`), exactly one occurrence."""
    values = re.findall(rf"^\s*{name}\s+([^;]+);", block, re.MULTILINE)
    assert len(values) == 1, f"{name}: {values}"
    return values[0].strip()


@pytest.fixture(scope="module")
def nginx() -> str:
    (block,) = [b for b in code_blocks(DEPLOYMENT, "nginx") if "ssl_ciphers" in b]
    return block


@pytest.fixture(scope="module")
def coturn() -> str:
    (block,) = [b for b in code_blocks(DEPLOYMENT, "ini") if "static-auth-secret" in b]
    return block


def coturn_values(block: str, name: str) -> list[str]:
    return re.findall(rf"^{name}=(.+)$", block, re.MULTILINE)


# --- nginx TLS ------------------------------------------------------------------------


def test_nginx_offers_tls12_and_tls13_only(nginx):
    assert directive(nginx, "ssl_protocols").split() == ["TLSv1.2", "TLSv1.3"]


def test_nginx_tls12_ciphers_are_in_tr_02102_2(nginx):
    ciphers = directive(nginx, "ssl_ciphers").split(":")
    assert ciphers and set(ciphers) <= TLS12_CIPHERS, set(ciphers) - TLS12_CIPHERS
    assert all(c.startswith("ECDHE-") or c.startswith("DHE-") for c in ciphers)


def test_nginx_tls13_suites_are_in_tr_02102_2(nginx):
    value = directive(nginx, "ssl_conf_command Ciphersuites")
    suites = value.split(":")
    assert suites and set(suites) <= TLS13_CIPHERSUITES
    assert "TLS_CHACHA20_POLY1305_SHA256" not in suites


def test_nginx_groups_are_in_tr_02102_2(nginx):
    groups = directive(nginx, "ssl_ecdh_curve").split(":")
    assert groups[:2] == ["secp384r1", "secp256r1"]
    assert set(groups) <= GROUPS


def test_openssl_knows_every_documented_cipher(nginx):
    """OpenSSL silently skips unknown names: a typo would shrink the list unnoticed."""
    ciphers = directive(nginx, "ssl_ciphers")
    suites = directive(nginx, "ssl_conf_command Ciphersuites")
    result = subprocess.run(
        [require_tool("openssl"), "ciphers", "-ciphersuites", suites, ciphers],
        capture_output=True,
        text=True,
        check=True,
    )
    expanded = set(result.stdout.strip().split(":"))
    assert expanded == set(ciphers.split(":")) | set(suites.split(":"))


def test_guide_names_acceptable_certificate_keys():
    assert "P-256" in DEPLOYMENT and "P-384" in DEPLOYMENT
    assert re.search(r"RSA with at least 3072 bits", DEPLOYMENT)


def test_nginx_proxies_websockets_and_forwards_the_client_address(nginx):
    ws = re.search(r"location /ws/ \{(.*?)\n    \}", nginx, re.DOTALL).group(1)
    assert "proxy_set_header Upgrade $http_upgrade;" in ws
    assert "proxy_set_header Connection $connection_upgrade;" in ws
    assert "proxy_http_version 1.1;" in ws
    assert nginx.count("proxy_set_header X-Forwarded-For $remote_addr;") == 2
    assert nginx.count("proxy_set_header X-Forwarded-Proto $scheme;") == 2
    assert "PROXY_HEADERS=true" in DEPLOYMENT


def test_nginx_balances_several_server_processes(nginx):
    upstream = re.search(r"upstream redconnect \{(.*?)\}", nginx, re.DOTALL).group(1)
    assert len(re.findall(r"server 127\.0\.0\.1:\d+;", upstream)) >= 2


def test_nginx_routes_a_call_by_its_key_over_the_same_processes(nginx):
    """/ws/call/ goes by the page's routing key (redconnect/affinity.py) to the same
    processes that serve everything else (tests/test_routing.py runs it)."""
    plain = re.search(r"upstream redconnect \{(.*?)\}", nginx, re.DOTALL).group(1)
    call = re.search(r"upstream redconnect_call \{(.*?)\}", nginx, re.DOTALL).group(1)
    servers = re.compile(r"^\s*server (\S+);", re.MULTILINE)
    assert servers.findall(call) == servers.findall(plain)
    assert directive(call, "hash") == f"$arg_{affinity.QUERY_PARAMETER} consistent"
    assert "hash" not in plain  # pages and the board: by load, not by key
    location = re.search(r"location /ws/call/ \{(.*?)\}", nginx, re.DOTALL).group(1)
    assert directive(location, "proxy_pass") == "http://redconnect_call"


def test_nginx_logs_no_client_address(nginx):
    for log_format in re.findall(r"log_format [^;]+;", nginx, re.DOTALL):
        assert "$remote_addr" not in log_format
        assert "$http_x_forwarded_for" not in log_format
        assert "$request_uri" not in log_format and "$args" not in log_format
    for access_log in re.findall(r"access_log ([^;]+);", nginx):
        assert access_log.endswith(" redconnect") or access_log == "off"


# --- systemd --------------------------------------------------------------------------


def test_systemd_template_runs_serve_on_the_instance_port():
    units = "\n".join(code_blocks(DEPLOYMENT, "ini"))
    assert "redconnect@.service" in DEPLOYMENT
    assert re.search(r"ExecStart=\S+python manage\.py serve --host 127\.0\.0\.1 --port %i", units)
    assert "EnvironmentFile=/etc/redconnect/env" in units


def test_guide_pins_every_enabled_process_to_its_own_core(tmp_path):
    """The guide's drop-in loop, run into a scratch directory: each process it enables
    gets a drop-in with a core of its own."""
    (script,) = [b for b in code_blocks(DEPLOYMENT, "sh") if "CPUAffinity" in b]
    enabled = re.findall(r"redconnect@(\d+)", script.split("systemctl enable", 1)[1])
    commands = [line for line in script.splitlines() if not line.startswith("systemctl")]
    runnable = "\n".join(commands).replace("/etc/systemd/system", str(tmp_path))
    subprocess.run(["bash", "-euc", runnable], check=True, timeout=10)
    cores = {}
    for port in enabled:
        unit = configparser.ConfigParser()
        unit.read(tmp_path / f"redconnect@{port}.service.d" / "cpu.conf")
        cores[port] = unit["Service"]["CPUAffinity"]
    assert len(enabled) == 4 and sorted(cores.values()) == ["0", "1", "2", "3"]


def test_purge_runs_daily_from_a_timer():
    units = "\n".join(code_blocks(DEPLOYMENT, "ini"))
    assert re.search(r"ExecStart=\S+python manage\.py purge_expired", units)
    assert re.search(r"^OnCalendar=daily$", units, re.MULTILINE)
    assert "Persistent=true" in units


# --- coturn ---------------------------------------------------------------------------


def denied_networks(block: str) -> list[tuple]:
    ranges = []
    for value in coturn_values(block, "denied-peer-ip"):
        first, _sep, last = value.partition("-")
        start = ipaddress.ip_address(first)
        end = ipaddress.ip_address(last or first)
        assert start.version == end.version and start <= end, value
        ranges.append((start, end))
    return ranges


@pytest.mark.parametrize("network", PRIVATE_AND_RESERVED)
def test_coturn_denies_private_and_reserved_peers(coturn, network):
    net = ipaddress.ip_network(network)
    covered = any(
        start.version == net.version
        and start <= net.network_address
        and net.broadcast_address <= end
        for start, end in denied_networks(coturn)
    )
    assert covered, f"{network} is not denied"


def test_coturn_uses_time_limited_credentials_and_no_multicast(coturn):
    lines = coturn.splitlines()
    assert "use-auth-secret" in lines
    assert coturn_values(coturn, "static-auth-secret")
    assert "no-multicast-peers" in lines
    assert "lt-cred-mech" not in lines  # static users would bypass the time limit


def test_coturn_tls_follows_tr_02102_2(coturn):
    assert {"no-tlsv1", "no-tlsv1_1"} <= set(coturn.splitlines())
    (cipher_list,) = coturn_values(coturn, "cipher-list")
    assert set(cipher_list.strip('"').split(":")) <= TLS12_CIPHERS
    (curve,) = coturn_values(coturn, "ec-curve-name")
    assert curve in GROUPS


def test_ice_servers_example_declares_an_eu_country():
    import json

    from redconnect.settings import parse_ice_servers

    line = next(x for x in DEPLOYMENT.splitlines() if x.startswith("ICE_SERVERS="))
    servers = parse_ice_servers(line.removeprefix("ICE_SERVERS="))
    assert servers and all(server["country"] == "DE" for server in servers)
    assert json.loads(line.removeprefix("ICE_SERVERS="))


# --- Redis, backups, verification ---------------------------------------------------------


def test_redis_writes_nothing_to_disk():
    (redis_conf,) = [b for b in code_blocks(DEPLOYMENT, "") if "appendonly" in b]
    assert 'save ""' in redis_conf and "appendonly no" in redis_conf
    assert "bind 127.0.0.1 ::1" in redis_conf


def test_backup_holds_accounts_and_practices_but_no_appointments():
    (dump,) = [b for b in code_blocks(DEPLOYMENT, "sh") if "pg_dump" in b]
    tables = set(re.findall(r"--table=(\w+)", dump))
    assert {"auth_user", "consultations_practice", "consultations_membership"} <= tables
    assert {"consultations_apikey", "otp_totp_totpdevice"} <= tables
    assert "consultations_appointment" not in tables
    assert "django_session" not in tables


def test_guide_explains_the_compliance_commands():
    assert "manage.py kbv_check" in DEPLOYMENT
    assert "manage.py compliance_report" in DEPLOYMENT
    assert "--output" in DEPLOYMENT


# --- operations and protocol ------------------------------------------------------------------


@pytest.mark.parametrize("variable", CONTRACT_VARIABLES)
def test_operations_guide_documents_every_variable(variable):
    rows = [line for line in OPERATIONS.splitlines() if line.startswith("|")]
    assert any(f"`{variable}`" in row.split("|")[1] for row in rows), variable


def test_operations_guide_shows_every_api_call():
    for call in ("-X POST", "-X DELETE", "Authorization: Bearer"):
        assert call in OPERATIONS
    assert "Europe/Berlin" in OPERATIONS


def test_protocol_documents_every_message_and_close_code():
    from signaling import protocol

    for kind in [*protocol.CLIENT_TYPES, "welcome", "waiting", "peer-waiting", "admitted"]:
        assert f'"type": "{kind}"' in PROTOCOL, kind
    for kind in ("peer-left", "error"):
        assert f'"type": "{kind}"' in PROTOCOL, kind
    for code in protocol.ERROR_MESSAGES:
        assert f"`{code}`" in PROTOCOL, code
    for close in (4001, 4003, 4009, 4029):
        assert f"| {close} |" in PROTOCOL
