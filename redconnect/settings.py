"""Settings for RED connect.

Every value comes from the environment (or a `.env` file) through django-environ, with
an embedded default so that a bare checkout runs on SQLite and in-process layers.
A bad value raises ImproperlyConfigured at start-up: a misconfigured medical service
must refuse to run rather than run half-configured. Variables: shared/CONTRACT.md.
"""

from __future__ import annotations

import json
import os
import secrets
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import environ
from django.core.exceptions import ImproperlyConfigured
from django.utils.translation import gettext_lazy as _

from compliance import kbv
from redconnect import origins as _origins
from redconnect.redisconf import channel_layer_key as _channel_layer_key

BASE_DIR = Path(__file__).resolve().parent.parent
# Runtime state (SQLite file, generated secret key); tests may point it elsewhere.
VAR_DIR = Path(os.environ.get("REDCONNECT_VAR_DIR") or BASE_DIR / "var")
VAR_DIR.mkdir(parents=True, exist_ok=True)

env = environ.Env()
if (BASE_DIR / ".env").is_file():
    environ.Env.read_env(BASE_DIR / ".env", overwrite=False)


def env_str(name: str, default: str | None = None) -> str | None:
    """A variable's value; the empty string counts as unset (contract)."""
    value = os.environ.get(name, "").strip()
    return value if value else default


def env_bool(name: str, default: bool) -> bool:
    value = env_str(name)
    if value is None:
        return default
    if value.lower() in {"1", "true", "yes", "on"}:
        return True
    if value.lower() in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name} must be true or false, not {value!r}.")


def env_int(name: str, default: int, *, minimum: int, maximum: int, why: str = "") -> int:
    value = env_str(name)
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a whole number, not {value!r}.") from None
    if not minimum <= number <= maximum:
        raise ImproperlyConfigured(
            f"{name}={number} is out of range: allowed are {minimum} to {maximum}. {why}".strip()
        )
    return number


# --- Core -----------------------------------------------------------------------------

DATABASE_URL = env_str("DATABASE_URL", f"sqlite:///{VAR_DIR / 'db.sqlite3'}")
REDIS_URL = env_str("REDIS_URL")
try:
    DATABASES = {"default": env.db_url_config(DATABASE_URL)}
except Exception as exc:  # django-environ raises several types for malformed URLs
    raise ImproperlyConfigured(f"DATABASE_URL is not a valid database URL: {exc}") from None
IS_SQLITE = DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3"
if IS_SQLITE:
    # Browser tests run a live server in a second thread: the test DB must be a file.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test-db.sqlite3")}
    DATABASES["default"].setdefault("OPTIONS", {})["timeout"] = 20
# The WebSocket consumers' database thread and the page requests' threads
# (redconnect.handler) keep their connections this long instead of opening one per
# connect or request (with SQLite a new connection also registers Django's SQL
# functions). The health check tests a kept connection before its first use, so a
# database restart costs no restart of the server. 0: a new connection every time.
DATABASES["default"]["CONN_MAX_AGE"] = env_int(
    "DB_CONN_MAX_AGE",
    300,
    minimum=0,
    maximum=3600,
    why="Seconds a database connection is reused; 0 opens one per request.",
)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True

SHARED_DEPLOYMENT = bool(REDIS_URL) or not IS_SQLITE
SECRET_KEY = env_str("SECRET_KEY")
if SECRET_KEY is None:
    if SHARED_DEPLOYMENT:
        raise ImproperlyConfigured(
            "SECRET_KEY must be set when REDIS_URL or a non-SQLite DATABASE_URL is used: "
            "all server processes must share it."
        )
    # Embedded default only: generated once, kept in the git-ignored var/ folder.
    key_file = VAR_DIR / "secret_key"
    if not key_file.exists():
        key_file.write_text(secrets.token_urlsafe(50))
        key_file.chmod(0o600)
    SECRET_KEY = key_file.read_text().strip()
CODE_HMAC_KEY = env_str("CODE_HMAC_KEY", SECRET_KEY)
# Encrypts every channel-layer message in Redis; derived from SECRET_KEY unless set.
# Every server process must have the same one (redconnect/redisconf.py).
CHANNEL_LAYER_KEY = _channel_layer_key(SECRET_KEY, env_str("CHANNEL_LAYER_KEY"))

DEBUG = env_bool("DEBUG", False)

PUBLIC_URL = env_str("PUBLIC_URL", "http://127.0.0.1:8000").rstrip("/")
_public = urlsplit(PUBLIC_URL)
if _public.scheme not in {"http", "https"} or not _public.hostname:
    raise ImproperlyConfigured(f"PUBLIC_URL must be an http(s) URL, not {PUBLIC_URL!r}.")
PUBLIC_HTTPS = _public.scheme == "https"
PUBLIC_HOST = _public.hostname

ALLOWED_HOSTS = [PUBLIC_HOST, "127.0.0.1", "localhost"] + [
    host.strip() for host in (env_str("ALLOWED_HOSTS") or "").split(",") if host.strip()
]
PROXY_HEADERS = env_bool("PROXY_HEADERS", False)


def parse_trusted_proxies(raw: str | None) -> list[str]:
    """TRUSTED_PROXIES: addresses or networks, comma-separated; bad entries stop start-up."""
    import ipaddress

    proxies = []
    for entry in (raw or "127.0.0.0/8,::1").split(","):
        if entry.strip():
            try:
                proxies.append(str(ipaddress.ip_network(entry.strip(), strict=False)))
            except ValueError:
                raise ImproperlyConfigured(
                    f"TRUSTED_PROXIES: {entry.strip()!r} is not an IP address or network."
                ) from None
    return proxies


# Peers whose X-Forwarded-For is believed (with PROXY_HEADERS): redconnect/ratelimit.py.
TRUSTED_PROXIES = parse_trusted_proxies(env_str("TRUSTED_PROXIES"))
# Further browser origins allowed to open the WebSocket on an https PUBLIC_URL (whose
# own exact origin always is); redconnect/origins.py.
ALLOWED_ORIGINS = _origins.parse_allowed_origins(env_str("ALLOWED_ORIGINS"))

# --- Call configuration ---------------------------------------------------------------

_ICE_SCHEMES = ("stun:", "stuns:", "turn:", "turns:")


def parse_ice_servers(raw: str | None) -> list[dict]:
    """Validate ICE_SERVERS; a missing `country` is left to the compliance check."""
    if raw is None:
        return []
    try:
        servers = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ImproperlyConfigured(f"ICE_SERVERS is not valid JSON: {exc}") from None
    if not isinstance(servers, list):
        raise ImproperlyConfigured("ICE_SERVERS must be a JSON list of objects.")
    for index, server in enumerate(servers):
        if not isinstance(server, dict) or "urls" not in server:
            raise ImproperlyConfigured(f"ICE_SERVERS[{index}] must be an object with 'urls'.")
        urls = server["urls"] if isinstance(server["urls"], list) else [server["urls"]]
        if not urls or not all(isinstance(u, str) and u.startswith(_ICE_SCHEMES) for u in urls):
            raise ImproperlyConfigured(
                f"ICE_SERVERS[{index}].urls must be stun:, stuns:, turn: or turns: URLs."
            )
        country = server.get("country")
        if country is not None and not (
            isinstance(country, str) and len(country) == 2 and country.isalpha()
        ):
            raise ImproperlyConfigured(
                f"ICE_SERVERS[{index}].country must be a two-letter ISO code."
            )
        server["urls"] = urls
        if country:
            server["country"] = country.upper()
    return servers


ICE_SERVERS = parse_ice_servers(env_str("ICE_SERVERS"))
TURN_SECRET = env_str("TURN_SECRET")
TURN_CREDENTIAL_TTL = 3600  # seconds; coturn REST credentials, at most one hour

METADATA_RETENTION_DAYS = env_int(
    "METADATA_RETENTION_DAYS",
    7,
    minimum=0,
    maximum=kbv.MAX_RETENTION_DAYS,
    why="The KBV agreement (Anlage 31b § 5 Nr. 9) allows metadata for three months at most.",
)

DEMO_DECLARATIONS = {
    "OPERATOR_NAME": "Demo-Betreiber GmbH (Beispielwert)",
    "OPERATOR_ADDRESS": "Musterstraße 1, 12345 Musterstadt (Beispielwert)",
    "OPERATOR_EMAIL": "datenschutz@example.org",
    "HOSTING_PROVIDER": "Demo-Rechenzentrum (Beispielwert)",
    "HOSTING_COUNTRY": "DE",
}
OPERATOR_NAME = env_str("OPERATOR_NAME", DEMO_DECLARATIONS["OPERATOR_NAME"])
OPERATOR_ADDRESS = env_str("OPERATOR_ADDRESS", DEMO_DECLARATIONS["OPERATOR_ADDRESS"])
OPERATOR_EMAIL = env_str("OPERATOR_EMAIL", DEMO_DECLARATIONS["OPERATOR_EMAIL"])
HOSTING_PROVIDER = env_str("HOSTING_PROVIDER", DEMO_DECLARATIONS["HOSTING_PROVIDER"])
HOSTING_COUNTRY = env_str("HOSTING_COUNTRY", DEMO_DECLARATIONS["HOSTING_COUNTRY"]).upper()

# Rate-limit policies (redconnect/ratelimit.py): failures per client (keyed hash of its
# address or IPv6 /64) in a sliding window.
JOIN_FAILURE_LIMIT = 20
JOIN_FAILURE_WINDOW = 600  # seconds
API_KEY_FAILURE_LIMIT = 20
API_KEY_FAILURE_WINDOW = 600  # seconds

# --- Applications ---------------------------------------------------------------------

INSTALLED_APPS = [
    "daphne",
    # django.contrib.admin with a TOTP second factor on the default `admin.site`.
    "redconnect.apps.RedConnectAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "axes",
    "channels",
    "csp",
    "consultations",
    "signaling",
    "compliance",
    "board",
]

MIDDLEWARE = [
    "redconnect.middleware.ForwardedProtoMiddleware",  # before anything asks is_secure()
    "redconnect.middleware.RequestLogMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "redconnect.middleware.PermissionsPolicyMiddleware",
    "csp.middleware.CSPMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "redconnect.i18n.ChosenLanguageMiddleware",  # LocaleMiddleware without Accept-Language
    "django.middleware.common.CommonMiddleware",
    "redconnect.csrf.CsrfViewMiddleware",  # accepts Origin: null from no-referrer pages
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_otp.middleware.OTPMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Turns a login that axes locked out into a 429 (redconnect.twofactor.lockout_response).
    "axes.middleware.AxesMiddleware",
    # Innermost, so a database outage in a view becomes the German 503 page.
    "redconnect.middleware.DatabaseUnavailableMiddleware",
]
# security.W003 looks for Django's CsrfViewMiddleware by its exact path and misses the
# subclass above; redconnect.checks checks for it (or any subclass) instead.
SILENCED_SYSTEM_CHECKS = ["security.W003"]

ROOT_URLCONF = "redconnect.urls"
ASGI_APPLICATION = "redconnect.asgi.application"
WSGI_APPLICATION = None

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.i18n",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "redconnect.context_processors.site",
            ],
        },
    },
]

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {
        "NAME": "django.contrib.auth.password_validation.MinimumLengthValidator",
        "OPTIONS": {"min_length": 12},
    },
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# --- Admin login lock-out (django-axes; policy: redconnect/twofactor.py) ----------------
# By (account, client): 10 failures (wrong password or one-time code) lock that client out
# of that account for 15 minutes; the count lives 15 minutes past the last failure. The
# client is the rate limiter's keyed pseudonym, so neither the cache nor the database
# ever holds an address; the cache handler keeps nothing in the database at all.
AUTHENTICATION_BACKENDS = [
    "redconnect.lockout.LockoutBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_HANDLER = "redconnect.lockout.CacheHandler"  # axes' cache handler, see there
AXES_FAILURE_LIMIT = 10
AXES_COOLOFF_TIME = timedelta(minutes=15)
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_CLIENT_IP_CALLABLE = "redconnect.ratelimit.axes_client"
AXES_USERNAME_CALLABLE = "redconnect.twofactor.axes_username"
AXES_LOCKOUT_CALLABLE = "redconnect.twofactor.lockout_response"
AXES_RESET_ON_SUCCESS = True
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False  # the lock ends 15 min after it began
AXES_VERBOSE = False  # axes' log lines name neither account nor client
AXES_ENABLE_ADMIN = False  # nothing in the database to show
AXES_DISABLE_ACCESS_LOG = True

# --- Caches, channel layer, sessions --------------------------------------------------

if REDIS_URL:
    from redconnect import redisconf

    # Values and reasons: redconnect/redisconf.py and docs/architecture.md ("Channel
    # layer"). RedisChannelLayer's queues, capacities and expiry (bounded, ChannelFull
    # instead of unbounded memory, group membership that expires), delivered in-process
    # when both consumers live in this process and read by one pump per process
    # (signaling/layers.py: channels_redis' own receive lost messages under load).
    # Messages that do go through Redis are encrypted with CHANNEL_LAYER_KEY (above):
    # Redis never holds signaling content in clear.
    CACHES = {"default": redisconf.cache_config(REDIS_URL)}
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "signaling.layers.LocalFirstRedisChannelLayer",
            "CONFIG": redisconf.channel_layer_config(REDIS_URL, CHANNEL_LAYER_KEY),
        }
    }
else:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            # Django's default of 300 entries would cull live presence entries (one per
            # connection) and the connects' appointment states from about 150 calls on.
            "OPTIONS": {"MAX_ENTRIES": 100_000},
        }
    }
    CHANNEL_LAYERS = {
        # Channels' in-memory layer minus its per-message walk over all channels.
        "default": {
            "BACKEND": "signaling.layers.ThrottledInMemoryChannelLayer",
            "CONFIG": {"capacity": 200},
        }
    }

# Staff/doctor/auditor logins live in the database session store; the patient's join
# data (with the typed name) lives only in a separate signed cookie, never server-side.
SESSION_ENGINE = "django.contrib.sessions.backends.db"
SESSION_COOKIE_AGE = 12 * 3600
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
JOIN_COOKIE_NAME = "rc_join"

# --- Security -------------------------------------------------------------------------

SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "no-referrer"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
PERMISSIONS_POLICY = "camera=(self), microphone=(self), geolocation=(), payment=(), usb=()"
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = PUBLIC_HTTPS
CSRF_TRUSTED_ORIGINS = [f"{_public.scheme}://{_public.netloc}"]
OTP_REQUIRED = PUBLIC_HTTPS  # TOTP second factor mandatory on a public deployment
OTP_TOTP_ISSUER = "RED connect"  # the account's name in authenticator apps
OTP_ADMIN_HIDE_SENSITIVE_DATA = True  # the device admin never shows TOTP secrets
# django-otp's own back-off is per device, i.e. per account for every client: one client
# guessing codes would lock the doctor out everywhere. The (account, client) lock-out of
# django-axes (AXES_* above) counts wrong codes instead.
OTP_TOTP_THROTTLE_FACTOR = 0
LANGUAGE_COOKIE_SECURE = PUBLIC_HTTPS
LANGUAGE_COOKIE_HTTPONLY = True
LANGUAGE_COOKIE_SAMESITE = "Lax"
if PUBLIC_HTTPS:
    SECURE_SSL_REDIRECT = True
    SECURE_HSTS_SECONDS = 365 * 24 * 3600
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    # Only a consent to preloading: the operator still decides whether to submit.
    SECURE_HSTS_PRELOAD = True
    # Load balancers probe /healthz over http; the API answers plain http with a 403
    # instead of a redirect, so that a client does not silently resend its key.
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^api/"]
if PROXY_HEADERS:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

WS_ORIGIN = f"{'wss' if PUBLIC_HTTPS else 'ws'}://{_public.netloc}"
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "media-src": ["'self'", "blob:", "mediastream:"],
        "font-src": ["'self'"],
        "connect-src": ["'self'", WS_ORIGIN],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "frame-ancestors": ["'none'"],
        "form-action": ["'self'"],
    }
}

# --- Internationalisation -------------------------------------------------------------

LANGUAGE_CODE = "de"
LANGUAGES = [("de", _("German")), ("en", _("English"))]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = "Europe/Berlin"
USE_I18N = True
USE_TZ = True

# --- Static files ---------------------------------------------------------------------

STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = VAR_DIR / "static"

LOGIN_URL = "admin:login"

# --- E-mail (invitations; the address is used for sending only, never stored) ----------
# EMAIL_URL as django-environ reads it, e.g. `smtp+tls://user:password@mail.example.org:587`.
# Unset: a console backend that prints neither address nor content (board.mail).
EMAIL_URL = env_str("EMAIL_URL")
if EMAIL_URL:
    try:
        globals().update(env.email_url_config(EMAIL_URL))
    except Exception as exc:
        raise ImproperlyConfigured(f"EMAIL_URL is not a valid e-mail URL: {exc}") from None
else:
    EMAIL_BACKEND = "board.mail.PrivateConsoleBackend"
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", f"RED connect <noreply@{PUBLIC_HOST}>")
EMAIL_TIMEOUT = 10

# --- Logging --------------------------------------------------------------------------
# Formats hold no client address, query string or personal data; the request log
# (redconnect.middleware) records method, path, status and duration only.

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    # Control characters are escaped (one record, one line: a request path cannot forge
    # a record); daphne's shut-down warning loses the client address it carries.
    "formatters": {
        "plain": {
            "()": "redconnect.logsafe.EscapingFormatter",
            "format": "%(asctime)s %(levelname)s %(name)s %(message)s",
        },
    },
    "filters": {"daphne_addresses": {"()": "redconnect.logsafe.DaphneAddressFilter"}},
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "plain",
            "filters": ["daphne_addresses"],
        },
    },
    "root": {"handlers": ["console"], "level": "WARNING"},
    "loggers": {
        "redconnect.requests": {"handlers": ["console"], "level": "INFO", "propagate": False},
        "redconnect": {"handlers": ["console"], "level": "INFO", "propagate": False},
        # Django's request logger writes the path of every 4xx; keep it to errors.
        "django.request": {"handlers": ["console"], "level": "ERROR", "propagate": False},
        "django.security": {"handlers": ["console"], "level": "ERROR", "propagate": False},
        "daphne": {"handlers": ["console"], "level": "WARNING", "propagate": False},
    },
}
