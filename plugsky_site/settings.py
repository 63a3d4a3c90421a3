"""Plugsky settings, driven by the environment.

Development defaults are safe to run locally (the embedded profile of `make run`); with
PLUGSKY_ENV=production a missing secret stops start-up. Each integration is configured only when
its variables are set. See README.md for the full list.
"""

from __future__ import annotations

from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from plugsky_site.env import env_bool, env_int, env_list, env_str

BASE_DIR = Path(__file__).resolve().parent.parent

PLUGSKY_ENV = env_str("PLUGSKY_ENV", "development")
IS_PRODUCTION = PLUGSKY_ENV == "production"

SECRET_KEY = env_str("SECRET_KEY")
if not SECRET_KEY:
    if IS_PRODUCTION:
        raise ImproperlyConfigured("SECRET_KEY must be set when PLUGSKY_ENV=production")
    SECRET_KEY = "dev-only-insecure-secret-key-change-me"

# API keys are stored as HMAC-SHA256 digests keyed by this pepper. Rotating it invalidates every
# key, so it is separate from SECRET_KEY (which may rotate for sessions): production needs its own.
API_KEY_PEPPER = env_str("API_KEY_PEPPER")
if IS_PRODUCTION and (not API_KEY_PEPPER or API_KEY_PEPPER == SECRET_KEY):
    raise ImproperlyConfigured(
        "API_KEY_PEPPER must be set, and differ from SECRET_KEY, when PLUGSKY_ENV=production"
    )
API_KEY_PEPPER = API_KEY_PEPPER or SECRET_KEY

DEBUG = env_bool("DEBUG", not IS_PRODUCTION)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", [] if IS_PRODUCTION else ["*"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "channels",
    "apps.accounts",
    "apps.keys",
    "apps.catalog",
    "apps.providers",
    "apps.gateway",
    "apps.usage",
    "apps.billing",
    "apps.responses",
    "apps.site",
    "apps.dashboard",
    "apps.admin_api",
    "apps.tester",
]

MIDDLEWARE = [
    # First: turns Django's own error pages for /v1 paths (disallowed Host, 404, 500) into JSON.
    "apps.gateway.middleware.v1_error_envelope",
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "plugsky_site.urls"
ASGI_APPLICATION = "plugsky_site.asgi.application"
AUTH_USER_MODEL = "accounts.User"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "apps.site.context_processors.site",
            ],
        },
    },
]

# --- Data stores -------------------------------------------------------------------------------
# `make run` and the test harness fill these in (plugsky_site/embedded.py) when they are unset.
DATABASE_URL = env_str("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/plugsky")
DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=0)}
# A pool per process bounds its PostgreSQL connections (web process: calls in flight share it;
# plugsky_site.db.db_call hands a connection back as soon as its work is done). A caller that finds
# none free waits up to DATABASE_POOL_TIMEOUT_S, then gets OperationalError: a 503 on /v1.
DATABASES["default"]["OPTIONS"] = {
    **DATABASES["default"].get("OPTIONS", {}),
    "pool": {
        "min_size": env_int("DATABASE_POOL_MIN_SIZE", 2),
        "max_size": env_int("DATABASE_POOL_MAX_SIZE", 16),
        "timeout": env_int("DATABASE_POOL_TIMEOUT_S", 5),
        # Connections idle this long close, down to min_size: a quiet process holds few.
        "max_idle": 60,
    },
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env_str("REDIS_URL", "redis://127.0.0.1:6379/0")
# Two bounded pools per process, the event loop's and the threads' (see redis_pool.py); in each,
# beyond REDIS_MAX_CONNECTIONS a caller waits up to REDIS_POOL_TIMEOUT_S, then gets a 503 on /v1.
REDIS_MAX_CONNECTIONS = env_int("REDIS_MAX_CONNECTIONS", 32)
REDIS_POOL_TIMEOUT_S = env_int("REDIS_POOL_TIMEOUT_S", 5)
REDIS_SOCKET_TIMEOUT_S = env_int("REDIS_SOCKET_TIMEOUT_S", 5)
CACHES = {
    "default": {
        "BACKEND": "plugsky_site.redis_pool.SharedPoolRedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": "plugsky",
    }
}
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {
            # The layer waits on Redis with 5 s blocking pops; redis-py's default socket timeout
            # is also 5 s, so under load the read timed out first and dropped the WebSocket.
            "hosts": [{"address": REDIS_URL, "socket_timeout": 30}],
            # Room for a whole tester answer per page: its jobs wait when a page's channel is full.
            "capacity": 1000,
        },
    }
}

# --- Celery --------------------------------------------------------------------------------------
CELERY_BROKER_URL = REDIS_URL
CELERY_RESULT_BACKEND = None
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_BEAT_SCHEDULE: dict[str, dict[str, object]] = {
    "usage-rollup": {"task": "apps.usage.tasks.usage_rollup_recent", "schedule": 600},
    "billing-holds-release-stale": {
        "task": "apps.billing.tasks.billing_holds_release_stale",
        "schedule": 60,
    },
    "billing-low-balance": {
        "task": "apps.billing.tasks.billing_low_balance_notify",
        "schedule": 300,
    },
    "billing-reconcile": {"task": "apps.billing.tasks.billing_reconcile", "schedule": 3600},
}

# --- Auth ----------------------------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
if PLUGSKY_ENV == "test":
    # The test suite (and the live servers it starts) hashes passwords fast: PBKDF2's 1M rounds
    # per user dominated many tests. Set here once, never per test module.
    PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
SESSION_COOKIE_SECURE = IS_PRODUCTION
CSRF_COOKIE_SECURE = IS_PRODUCTION
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if IS_PRODUCTION else None
# Pages read the CSRF token from the form, never from the cookie, so scripts need not see it.
CSRF_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31_536_000 if IS_PRODUCTION else 0)
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", False)
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
LOGIN_URL = "accounts:login"
LOGIN_REDIRECT_URL = "dashboard:home"
LOGOUT_REDIRECT_URL = "site:landing"
# The base URL in emailed links and code samples (e.g. https://api.example.com); unset: taken
# from the request, which ALLOWED_HOSTS guards in production.
PLUGSKY_PUBLIC_URL = env_str("PLUGSKY_PUBLIC_URL").rstrip("/")
ACCOUNTS_VERIFY_LINK_MAX_AGE_S = 3 * 24 * 3600
ACCOUNTS_INVITATION_TTL_DAYS = 7
PASSWORD_RESET_TIMEOUT = 3600
# Sign-in failures before a pause of ACCOUNTS_LOGIN_FAILURE_WINDOW_S: per client address and
# email, and per client address over all emails.
ACCOUNTS_LOGIN_FAILURE_LIMIT = env_int("ACCOUNTS_LOGIN_FAILURE_LIMIT", 5)
ACCOUNTS_LOGIN_FAILURE_LIMIT_PER_IP = env_int("ACCOUNTS_LOGIN_FAILURE_LIMIT_PER_IP", 50)
ACCOUNTS_LOGIN_FAILURE_WINDOW_S = env_int("ACCOUNTS_LOGIN_FAILURE_WINDOW_S", 900)
ACCOUNTS_SIGNUP_LIMIT_PER_IP = env_int("ACCOUNTS_SIGNUP_LIMIT_PER_IP", 20)
# Behind a load balancer that appends the client address to X-Forwarded-For, set this so that
# rate limits count clients, not the balancer.
TRUST_X_FORWARDED_FOR = env_bool("TRUST_X_FORWARDED_FOR", False)

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = BASE_DIR / "staticfiles"

EMAIL_BACKEND = env_str("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
EMAIL_FILE_PATH = env_str("EMAIL_FILE_PATH") or None  # for the file-based backend
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "Plugsky <no-reply@plugsky.localhost>")
EMAIL_HOST = env_str("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)

# --- The in-browser tester ----------------------------------------------------------------------
TESTER_MAX_COLUMNS = 3
TESTER_MAX_OUTPUT_TOKENS = env_int("TESTER_MAX_OUTPUT_TOKENS", 2048)

# --- The API gateway ----------------------------------------------------------------------------
# Largest accepted /v1 body; larger ones get 413 in OpenAI's envelope.
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("MAX_REQUEST_BYTES", 8 * 1024 * 1024)
API_KEY_CACHE_TTL_S = env_int("API_KEY_CACHE_TTL_S", 60)
API_KEY_LAST_USED_RESOLUTION_S = env_int("API_KEY_LAST_USED_RESOLUTION_S", 60)
RATE_LIMIT_REQUESTS_PER_MINUTE = env_int("RATE_LIMIT_REQUESTS_PER_MINUTE", 600)
# Per API key: a call counts its prompt bound plus its maximum output when it is admitted.
RATE_LIMIT_TOKENS_PER_MINUTE = env_int("RATE_LIMIT_TOKENS_PER_MINUTE", 1_000_000)
# Admission: /v1 calls in flight per web process (over: 503) and per organization across every
# process (over: 429). An organization slot left by a dead process expires after the TTL. A
# call in flight holds no database connection (plugsky_site.db), so one process can hold the
# hundreds of slow streams issue 13 asks for; 512 still bounds its memory.
GATEWAY_MAX_IN_FLIGHT = env_int("GATEWAY_MAX_IN_FLIGHT", 512)
RATE_LIMIT_CONCURRENT_PER_ORG = env_int("RATE_LIMIT_CONCURRENT_PER_ORG", 32)
RATE_LIMIT_CONCURRENT_SLOT_TTL_S = env_int("RATE_LIMIT_CONCURRENT_SLOT_TTL_S", 900)
# Images in chat messages (vision): fetched over public http(s) only, within these limits.
PLUGSKY_IMAGE_MAX_BYTES = env_int("PLUGSKY_IMAGE_MAX_BYTES", 10 * 1024 * 1024)
PLUGSKY_IMAGE_FETCH_TIMEOUT_S = float(env_int("PLUGSKY_IMAGE_FETCH_TIMEOUT_S", 10))
# Networks exempt from the public-address rule. For tests only: leave empty in production.
PLUGSKY_IMAGE_FETCH_ALLOWED_NETWORKS = env_list("PLUGSKY_IMAGE_FETCH_ALLOWED_NETWORKS", [])
if IS_PRODUCTION and PLUGSKY_IMAGE_FETCH_ALLOWED_NETWORKS:
    raise ImproperlyConfigured("PLUGSKY_IMAGE_FETCH_ALLOWED_NETWORKS must be empty in production")
# Operator-added models (local GGUF files with their SHA-256, upstream routes): a JSON file.
PLUGSKY_CATALOG_FILE = env_str("PLUGSKY_CATALOG_FILE")
# A route's circuit breaker (apps/providers/upstream/breaker.py), shared through Redis.
PLUGSKY_BREAKER_FAILURES = env_int("PLUGSKY_BREAKER_FAILURES", 5)
PLUGSKY_BREAKER_WINDOW_S = env_int("PLUGSKY_BREAKER_WINDOW_S", 60)
PLUGSKY_BREAKER_COOLDOWN_S = env_int("PLUGSKY_BREAKER_COOLDOWN_S", 30)
# Which built-in models the local engine loads ("all", or a comma-separated list of ids).
PLUGSKY_LOCAL_MODELS = env_list("PLUGSKY_LOCAL_MODELS", ["all"])
# The engine process that runs the built-in models (`python -m apps.engine`): http://host:port
# or unix:/path/to.sock. Web processes and Celery workers load no model weights themselves.
PLUGSKY_ENGINE_URL = env_str("PLUGSKY_ENGINE_URL", "http://127.0.0.1:8001")

# --- Billing ------------------------------------------------------------------------------------
# Top-ups are configured only when STRIPE_SECRET_KEY is set; amounts are US cents at Stripe.
STRIPE_SECRET_KEY = env_str("STRIPE_SECRET_KEY")
STRIPE_WEBHOOK_SECRET = env_str("STRIPE_WEBHOOK_SECRET")
STRIPE_CURRENCY = "usd"
if IS_PRODUCTION and STRIPE_SECRET_KEY and not STRIPE_WEBHOOK_SECRET:
    raise ImproperlyConfigured("STRIPE_WEBHOOK_SECRET must be set with STRIPE_SECRET_KEY")
BILLING_TOPUP_PRESETS_CENTS = [
    int(c) for c in env_list("BILLING_TOPUP_PRESETS_CENTS", ["1000", "2500", "5000", "10000"])
]
BILLING_TOPUP_MIN_CENTS = env_int("BILLING_TOPUP_MIN_CENTS", 500)
BILLING_TOPUP_MAX_CENTS = env_int("BILLING_TOPUP_MAX_CENTS", 100_000)
BILLING_TRIAL_CREDIT_MICROS = 5_000_000  # $5.00, once per organization
# A hold not settled within this time belongs to a dead process and is released by beat.
BILLING_HOLD_TTL_S = env_int("BILLING_HOLD_TTL_S", 900)
# One email per organization each time its balance falls below one of these ($1.00, $0.10).
LOW_BALANCE_THRESHOLDS_MICROS = [
    int(t) for t in env_list("LOW_BALANCE_THRESHOLDS_MICROS", ["1000000", "100000"])
]

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
}
