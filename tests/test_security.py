"""Security headers on every kind of response, and the https production profile.

The https profile is decided when settings load (PUBLIC_URL), so it is tested in a
subprocess with a production environment, never by patching settings in-process.
"""

from __future__ import annotations

import json
import re
import secrets

import pytest
from django.conf import settings
from django.test import Client

from tests.support.asgi import asgi_get
from tests.support.helpers import run_manage

PRODUCTION_ENV = {
    "PUBLIC_URL": "https://video.example.de",
    "SECRET_KEY": secrets.token_urlsafe(50),
    # A postgres-style URL and Redis: `check` needs neither server to be running.
    "DATABASE_URL": "postgres://redconnect:secret@127.0.0.1:1/redconnect",
    "REDIS_URL": "redis://127.0.0.1:1/0",
    "PROXY_HEADERS": "true",
}
# Warnings of the compliance checks (tag `kbv`) that a test environment is expected to
# raise: demo operator declarations and servers that do not run here. Anything else fails.
EXPECTED_KBV_WARNINGS = {
    "hosting_declaration": "HOSTING_PROVIDER/HOSTING_COUNTRY still on their demo values",
    "operator_declaration": "OPERATOR_* still on their demo values",
    "tls_probe": "nothing listens on the test's public URL, so TLS cannot be probed",
}
ALLOWED_SOURCES = {"'self'", "'none'", "data:", "blob:", "mediastream:"}


def parse_csp(header: str) -> dict[str, list[str]]:
    directives = {}
    for part in header.split(";"):
        words = part.split()
        if words:
            directives[words[0]] = words[1:]
    return directives


def assert_security_headers(response, ws_origin: str = settings.WS_ORIGIN) -> None:
    csp = parse_csp(response["Content-Security-Policy"])
    assert csp["default-src"] == ["'self'"]
    assert csp["object-src"] == ["'none'"]
    assert csp["base-uri"] == ["'none'"]
    assert csp["frame-ancestors"] == ["'none'"]
    assert csp["connect-src"] == ["'self'", ws_origin]
    assert "'unsafe-inline'" not in csp.get("script-src", []) + csp.get("style-src", [])
    for directive, sources in csp.items():
        foreign = [s for s in sources if s not in ALLOWED_SOURCES and s != ws_origin]
        assert not foreign, f"{directive} allows {foreign}"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "no-referrer"
    assert response["X-Frame-Options"] == "DENY"
    policy = dict(item.strip().split("=", 1) for item in response["Permissions-Policy"].split(","))
    assert policy["camera"] == "(self)" and policy["microphone"] == "(self)"
    assert all(value in ("()", "(self)") for value in policy.values())


# --- every response type (embedded default) ---------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("get", "/", 200),
        ("get", "/datenschutz/", 200),
        ("get", "/nutzungsbedingungen/", 200),
        ("get", "/admin/login/", 200),
        ("get", "/admin/", 302),
        ("get", "/no-such-page/", 404),
        ("get", "/healthz", 200),
        ("post", "/api/v1/appointments", 401),
        ("get", "/api/v1/appointments/x", 401),
        ("get", "/test-error/403/", 403),
        ("get", "/test-error/500/", 500),
    ],
)
@pytest.mark.urls("tests.support.error_urls")
def test_security_headers_on_every_response_type(db, method, path, status):
    client = Client(raise_request_exception=False)
    response = getattr(client, method)(path)
    assert response.status_code == status
    assert_security_headers(response)


class HeaderView:
    """What `assert_security_headers` needs of a response."""

    def __init__(self, headers: dict[str, str]):
        self.headers = headers

    def __getitem__(self, name: str) -> str:
        return self.headers[name.title()]


@pytest.mark.parametrize(("path", "status"), [("/static/css/site.css", 200), ("/static/x.js", 404)])
async def test_security_headers_on_static_files(path, status):
    """Static files bypass Django's middleware; they must carry the headers anyway."""
    got, headers, _ = await asgi_get(path)
    assert got == status
    assert_security_headers(HeaderView(headers))


def test_security_headers_on_csrf_failure(db):
    response = Client(enforce_csrf_checks=True).post("/", {"name": "x", "code": "y"})
    assert response.status_code == 403
    assert_security_headers(response)


@pytest.mark.urls("tests.support.error_urls")
def test_error_page_shows_no_traceback(db):
    response = Client(raise_request_exception=False).get("/test-error/500/")
    assert "a bug in a view" not in response.content.decode()
    assert "Traceback" not in response.content.decode()


def test_plain_cookies_on_http(client, db):
    """On the embedded http default the cookies must work without TLS."""
    response = client.get("/")
    csrf = response.cookies[settings.CSRF_COOKIE_NAME]
    assert not csrf["secure"]
    assert csrf["samesite"] == "Lax"
    assert "Strict-Transport-Security" not in response
    assert settings.SESSION_COOKIE_HTTPONLY and not settings.SESSION_COOKIE_SECURE


# --- the https production profile (subprocess) ------------------------------------------

PROFILE_SCRIPT = r"""
import json
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import Client

call_command("migrate", verbosity=0)
get_user_model().objects.create_user("doc", password="pw-for-the-test-123", is_staff=True)
client = Client(HTTP_HOST="video.example.de")
result = {}
plain = client.get("/datenschutz/")
result["plain"] = [plain.status_code, plain.get("Location")]
result["healthz_plain"] = client.get("/healthz").status_code
api = client.post("/api/v1/appointments", "{}", content_type="application/json")
result["api_plain"] = api.status_code
proxied = client.get("/datenschutz/", HTTP_X_FORWARDED_PROTO="https")
result["proxied"] = proxied.status_code
direct = client.get("/datenschutz/", HTTP_X_FORWARDED_PROTO="https", REMOTE_ADDR="203.0.113.9")
result["forged"] = [direct.status_code, direct.get("Location")]
page = client.get("/", secure=True)
result["headers"] = {name: value for name, value in page.items()}
login = client.post(
    "/admin/login/",
    {"username": "doc", "password": "pw-for-the-test-123", "otp_token": ""},
    secure=True,
)
result["login"] = [login.status_code, login.get("Location")]
cookies = {}
for response in (page, login):
    for name, morsel in response.cookies.items():
        cookies[name] = {
            "secure": bool(morsel["secure"]),
            "httponly": bool(morsel["httponly"]),
            "samesite": morsel["samesite"],
        }
result["cookies"] = cookies
result["settings"] = {
    "OTP_REQUIRED": settings.OTP_REQUIRED,
    "SESSION_COOKIE_SECURE": settings.SESSION_COOKIE_SECURE,
    "CSRF_COOKIE_SECURE": settings.CSRF_COOKIE_SECURE,
    "LANGUAGE_COOKIE_SECURE": settings.LANGUAGE_COOKIE_SECURE,
    "CSRF_TRUSTED_ORIGINS": settings.CSRF_TRUSTED_ORIGINS,
    "DEBUG": settings.DEBUG,
}
print("RESULT " + json.dumps(result))
"""


@pytest.fixture(scope="module")
def https_profile(tmp_path_factory) -> dict:
    env = {
        "PUBLIC_URL": "https://video.example.de",
        "PROXY_HEADERS": "true",
        "DATABASE_URL": "",
        "REDIS_URL": "",
        "SECRET_KEY": "",
        "REDCONNECT_VAR_DIR": str(tmp_path_factory.mktemp("https-profile")),
    }
    result = run_manage(["shell", "-c", PROFILE_SCRIPT], timeout=120, **env)
    assert result.returncode == 0, result.stderr[-3000:]
    line = next(x for x in result.stdout.splitlines() if x.startswith("RESULT "))
    return json.loads(line.removeprefix("RESULT "))


def test_https_profile_redirects_plain_http_but_not_healthz(https_profile):
    status, location = https_profile["plain"]
    assert status == 301 and location == "https://video.example.de/datenschutz/"
    assert https_profile["healthz_plain"] == 200  # load balancers probe over http


def test_https_profile_api_refuses_plain_http_instead_of_redirecting(https_profile):
    assert https_profile["api_plain"] == 403


def test_https_profile_trusts_the_proxys_forwarded_proto(https_profile):
    assert https_profile["proxied"] == 200


def test_https_profile_ignores_forwarded_proto_from_an_untrusted_peer(https_profile):
    # Not a trusted proxy (TRUSTED_PROXIES defaults to loopback): still plain http.
    status, location = https_profile["forged"]
    assert status == 301 and location == "https://video.example.de/datenschutz/"


def test_https_profile_sends_hsts_for_a_year_and_wss_in_csp(https_profile):
    headers = https_profile["headers"]
    hsts = headers["Strict-Transport-Security"]
    max_age = int(re.search(r"max-age=(\d+)", hsts).group(1))
    assert max_age >= 365 * 24 * 3600
    assert "includeSubDomains" in hsts
    csp = parse_csp(headers["Content-Security-Policy"])
    assert csp["connect-src"] == ["'self'", "wss://video.example.de"]
    assert headers["Referrer-Policy"] == "no-referrer"


def test_https_profile_cookies_are_secure_httponly_samesite(https_profile):
    cookies = https_profile["cookies"]
    assert {"csrftoken", "sessionid"} <= set(cookies)
    for name, flags in cookies.items():
        assert flags["secure"], name
        assert flags["samesite"] in ("Lax", "Strict"), name
    assert cookies["sessionid"]["httponly"]


def test_https_profile_makes_2fa_mandatory(https_profile):
    assert https_profile["settings"]["OTP_REQUIRED"] is True
    status, location = https_profile["login"]
    assert status == 302 and location.startswith("/admin/2fa/enroll/")


def test_https_profile_settings(https_profile):
    values = https_profile["settings"]
    assert values["SESSION_COOKIE_SECURE"] and values["CSRF_COOKIE_SECURE"]
    assert values["LANGUAGE_COOKIE_SECURE"]
    assert values["CSRF_TRUSTED_ORIGINS"] == ["https://video.example.de"]
    assert values["DEBUG"] is False


# --- manage.py check --deploy ------------------------------------------------------------

CHECK_ID = re.compile(r"^(\S+): \(([\w.]+)\.([WEIC]\d+)\)", re.MULTILINE)


def findings(output: str) -> list[tuple[str, str]]:
    """(object, check id) of every issue `manage.py check` printed."""
    return [(obj, f"{tag}.{code}") for obj, tag, code in CHECK_ID.findall(output)]


def test_django_deploy_checks_are_clean_in_production():
    """Django's security checks need no running server: postgres URL and Redis unreachable."""
    result = run_manage(["check", "--deploy", "--tag", "security"], timeout=120, **PRODUCTION_ENV)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert findings(output) == [], output
    assert "no issues" in output


def test_check_deploy_raises_only_expected_kbv_warnings(tmp_path, capsys):
    """The whole `check --deploy`, compliance checks (tag kbv) included, on a migrated DB.

    The public URL points at a closed loopback port (no TLS to probe here, and no traffic
    leaves the machine); Redis is left out because no server runs for this test.
    """
    env = {
        **PRODUCTION_ENV,
        "PUBLIC_URL": "https://localhost:1",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "REDIS_URL": "",
        "REDCONNECT_VAR_DIR": str(tmp_path),
    }
    migrated = run_manage(["migrate", "-v0"], timeout=120, **env)
    assert migrated.returncode == 0, migrated.stderr
    result = run_manage(["check", "--deploy"], timeout=180, **env)
    output = result.stdout + result.stderr
    found = findings(output)
    assert not [f for f in found if not f[1].startswith("kbv.")], output
    kbv_errors = [f for f in found if f[1].startswith("kbv.E")]
    assert not kbv_errors, output
    unexpected = [f for f in found if f[0] not in EXPECTED_KBV_WARNINGS]
    assert not unexpected, output
    assert result.returncode == 0, output
    with capsys.disabled():
        print("\nkbv warnings expected in the test environment:", found)


def test_check_deploy_flags_an_insecure_configuration():
    """The check is a real gate: DEBUG on a public deployment is reported."""
    result = run_manage(
        ["check", "--deploy", "--tag", "security"], timeout=120, **PRODUCTION_ENV, DEBUG="true"
    )
    assert "security.W018" in result.stdout + result.stderr
