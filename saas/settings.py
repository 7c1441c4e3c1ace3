"""Atrium settings. Every value comes from the environment; `.env.example` documents each one.

ATRIUM_ENV picks the defaults: `dev` (the default, so `manage.py` in a checkout reaches the embedded
services that `make dev` starts), `test`, or `production` (no embedded defaults: DATABASE_URL,
REDIS_URL and SECRET_KEY are required).
"""

from __future__ import annotations

import secrets
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from django.utils.csp import CSP
from kombu import Queue

from saas.env import env_bool, env_choice, env_float, env_int, env_list, env_str
from saas.storage import default_storage_from_env

BASE_DIR = Path(__file__).resolve().parent.parent

ATRIUM_ENV = env_choice("ATRIUM_ENV", "dev", {"dev", "test", "production"})
IS_PRODUCTION = ATRIUM_ENV == "production"
DEBUG = env_bool("DEBUG", False)


def _dev_secret_key() -> str:
    """A random key kept in .devdata/ so dev sessions survive restarts; never used in production."""
    path = BASE_DIR / ".devdata" / "secret_key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(50))
    return path.read_text().strip()


if IS_PRODUCTION:
    SECRET_KEY = env_str("SECRET_KEY")
    if len(SECRET_KEY) < 32:
        raise ImproperlyConfigured("SECRET_KEY must be at least 32 characters long.")
else:
    SECRET_KEY = env_str("SECRET_KEY", "") or _dev_secret_key()

# --- hosts and tenancy -----------------------------------------------------------------------

# The public site answers on BASE_DOMAIN; each tenant on <slug>.BASE_DOMAIN.
BASE_DOMAIN = env_str("BASE_DOMAIN", "localhost").lower()
ALLOWED_HOSTS = [BASE_DOMAIN, f".{BASE_DOMAIN}", *env_list("EXTRA_ALLOWED_HOSTS", [])]
# Port and scheme used when building links to another host (emails, tenant switcher).
SITE_SCHEME = env_choice("SITE_SCHEME", "https" if IS_PRODUCTION else "http", {"http", "https"})
SITE_PORT = env_int("SITE_PORT", 0 if IS_PRODUCTION else 8000, minimum=0)
USE_X_FORWARDED_HOST = False  # a spoofed X-Forwarded-Host must never switch tenants

SHARED_APPS = [
    # First, so its management commands (create_tenant) win over django_tenants' namesakes.
    "tenants",
    "django_tenants",
    "daphne",
    "billing",
    "ai.catalog",
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.admin",
    "django.contrib.staticfiles",
    "django.contrib.postgres",  # HnswIndex in tenant apps needs it in the shared apps (Django 6.1)
    "django.contrib.humanize",
    "allauth",
    "allauth.account",
    "allauth.mfa",
    "django_htmx",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "channels",
    "saas",
]
TENANT_APPS = [
    "django.contrib.contenttypes",
    "saas.audit",
    "ai",
    "retrieval",
    "saas.webhooks",
]
INSTALLED_APPS = SHARED_APPS + [app for app in TENANT_APPS if app not in SHARED_APPS]

TENANT_MODEL = "tenants.Tenant"
TENANT_DOMAIN_MODEL = "tenants.Domain"
PUBLIC_SCHEMA_NAME = "public"
# New tenants are cloned from this migrated, empty schema instead of running every migration.
TENANT_BASE_SCHEMA = "tenant_template"
TENANT_CREATION_FAKES_MIGRATIONS = True
PUBLIC_SCHEMA_URLCONF = "saas.urls_public"
ROOT_URLCONF = "saas.urls_tenant"
DATABASE_ROUTERS = ["django_tenants.routers.TenantSyncRouter"]

MIDDLEWARE = [
    "saas.middleware.RequestContextMiddleware",
    "saas.metrics.MetricsMiddleware",
    "saas.middleware.ProbeMiddleware",
    "tenants.middleware.TenantHostMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "tenants.middleware.SessionTenantBindingMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
    "allauth.account.middleware.AccountMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

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
                "django.template.context_processors.csp",
                "tenants.context_processors.tenancy",
            ],
        },
    }
]

WSGI_APPLICATION = "saas.wsgi.application"
ASGI_APPLICATION = "saas.asgi.application"

# --- data stores -----------------------------------------------------------------------------

_DEV_DATABASE_URL = "postgres://postgres@127.0.0.1:55432/atrium"
_DEV_REDIS_URL = "redis://127.0.0.1:56379/0"
DATABASE_URL = env_str("DATABASE_URL", None if IS_PRODUCTION else _DEV_DATABASE_URL)
REDIS_URL = env_str("REDIS_URL", None if IS_PRODUCTION else _DEV_REDIS_URL)

# DATABASE_POOL_MAX > 0: connections come from a psycopg pool of that size in each process
# (Django's native pool support) instead of one new PostgreSQL connection (a server process
# fork, ~5 ms) per request, socket message or task. Safe with schemas: django-tenants sets
# search_path on each cursor before use. On by default; the test suite runs without a pool
# (tests that need one turn it on), and DATABASE_POOL_MAX=0 restores one connection per
# request (or per DATABASE_CONN_MAX_AGE seconds in processes that keep a thread).
DATABASE_POOL_MAX = env_int("DATABASE_POOL_MAX", 0 if ATRIUM_ENV == "test" else 10, minimum=0)
DATABASES = {
    "default": dj_database_url.parse(
        DATABASE_URL,
        engine="django_tenants.postgresql_backend",
        conn_max_age=0 if DATABASE_POOL_MAX else env_int("DATABASE_CONN_MAX_AGE", 0, minimum=0),
        # With a pool, the pool checks a connection before handing it out.
        conn_health_checks=True,
    ),
    # The same database through a connection of its own, for the usage ledger: a model call
    # is metered even when the caller's transaction rolls back (the spend happened anyway).
    # Never migrated (django-tenants' router migrates only "default").
    "ledger": {
        **dj_database_url.parse(DATABASE_URL, conn_max_age=60, conn_health_checks=True),
        "TEST": {"MIRROR": "default"},
    },
}
if DATABASE_POOL_MAX:
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": 1, "max_size": DATABASE_POOL_MAX, "timeout": 10,
    }  # fmt: skip
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": "atrium",
        # Every cache key carries the current tenant's schema, so tenants never share entries.
        "KEY_FUNCTION": "django_tenants.cache.make_key",
        "REVERSE_KEY_FUNCTION": "django_tenants.cache.reverse_key",
    }
}

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        # channels_redis waits for messages with a 5 s blocking read; redis-py 8's default 5 s
        # socket timeout would end that read with an error and close every idle websocket
        # (django/channels_redis#422), so the timeout is set above it.
        "CONFIG": {
            "hosts": [{"address": REDIS_URL, "socket_timeout": 15}],
            "prefix": "atrium:channels",
        },
    }
}

# --- Celery ----------------------------------------------------------------------------------

CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", REDIS_URL)
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_DEFAULT_QUEUE = "interactive"
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_TRANSPORT_OPTIONS = {
    # Above the longest task's hard time limit (ingestion: 660 s), so a slow task is not
    # redelivered to a second worker mid-run; no longer, since it is also how long the task of
    # a worker that died whole (OOM, lost node) waits before another worker takes it.
    "visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT", 900, minimum=60),
}
# Every task is bounded (tasks that need longer set their own limits, all below the visibility
# timeout; tests/test_celery_config.py checks): a hung call fails visibly instead of holding
# a worker and being redelivered.
CELERY_TASK_SOFT_TIME_LIMIT = 270
CELERY_TASK_TIME_LIMIT = 300
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_TASK_TENANT_CACHE_SECONDS = 30
# Separate queues so bulk work never delays interactive answers (workers pick with -Q).
CELERY_TASK_ROUTES = {
    "tenants.tasks.*": {"queue": "interactive"},
    "retrieval.tasks.*": {"queue": "ingestion"},
    "ai.conversations.tasks.*": {"queue": "interactive"},
    # Test pings answer someone waiting on the API; events and retries are background work.
    "saas.webhooks.tasks.webhook_ping_task": {"queue": "interactive"},
    "saas.webhooks.tasks.*": {"queue": "bulk"},
    "ai.jobs.tasks.*": {"queue": "bulk"},
}
# Task modules outside an app's own tasks.py (which autodiscovery finds by itself).
CELERY_IMPORTS = ["ai.conversations.tasks", "ai.jobs.tasks"]
# Celery's Django fixup closes every database connection before and after each task (a new
# connection per task, and a new pool per task with DATABASE_POOL_MAX). With this it never
# does; saas.celery closes the unusable or obsolete ones at task boundaries instead, as
# Django does per request, so pooled and persistent connections are reused by the next task.
CELERY_DB_REUSE_MAX = 1_000_000_000
CELERY_TASK_QUEUES = [Queue(name) for name in ("interactive", "ingestion", "bulk", "billing")]

# --- answer runners (ai.conversations.runner: `manage.py run_answers`) ------------------------

# Answers one runner process generates at once (each mostly waits on its provider).
ANSWER_RUNNER_CONCURRENCY = env_int("ANSWER_RUNNER_CONCURRENCY", 100, minimum=1)
# A runner refreshes the answers it works on every third of this; one that stops refreshing
# for this long (it died) has its answers taken by another runner.
ANSWER_RUNNER_LEASE_S = env_int("ANSWER_RUNNER_LEASE_S", 30, minimum=1)
# An answer still streaming after this long is stopped and ends incomplete.
ANSWER_TIME_LIMIT_S = env_int("ANSWER_TIME_LIMIT_S", 300, minimum=1)
# Runs of one answer that failed or died before its answer ends failed.
ANSWER_RUNNER_MAX_DELIVERIES = env_int("ANSWER_RUNNER_MAX_DELIVERIES", 3, minimum=1)
# On SIGTERM a runner takes no new answers and lets running ones finish for this long.
ANSWER_RUNNER_SHUTDOWN_S = env_int("ANSWER_RUNNER_SHUTDOWN_S", 25, minimum=0)

# --- auth ------------------------------------------------------------------------------------

AUTH_USER_MODEL = "tenants.User"
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
if ATRIUM_ENV == "test":
    # Hashing dominates a test suite that logs in often; production keeps the default hasher.
    PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

LOGIN_URL = "account_login"
LOGIN_REDIRECT_URL = "/"
ACCOUNT_ADAPTER = "tenants.adapters.AccountAdapter"
ACCOUNT_LOGIN_METHODS = {"email"}
ACCOUNT_SIGNUP_FIELDS = ["email*", "password1*"]
ACCOUNT_USER_MODEL_USERNAME_FIELD = None
ACCOUNT_UNIQUE_EMAIL = True
ACCOUNT_SIGNUP_FORM_CLASS = "tenants.forms.OrganizationSignupForm"
ACCOUNT_EMAIL_VERIFICATION = env_choice(
    "ACCOUNT_EMAIL_VERIFICATION", "optional", {"none", "optional", "mandatory"}
)
ACCOUNT_LOGOUT_ON_PASSWORD_CHANGE = True
ACCOUNT_LOGIN_ON_PASSWORD_RESET = False
ACCOUNT_SESSION_REMEMBER = None
# Login throttling: allauth counts failures per IP and per account in the (Redis) cache.
ACCOUNT_RATE_LIMITS = {
    "login_failed": env_str("LOGIN_FAILED_RATE_LIMIT", "10/m/ip,5/5m/key"),
    "signup": env_str("SIGNUP_RATE_LIMIT", "20/m/ip"),
}
MFA_SUPPORTED_TYPES = ["totp", "recovery_codes"]
MFA_TOTP_ISSUER = "Atrium"

SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", IS_PRODUCTION)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SESSION_COOKIE_AGE = env_int("SESSION_COOKIE_AGE", 14 * 24 * 3600, minimum=300)

INVITATION_MAX_AGE_DAYS = env_int("INVITATION_MAX_AGE_DAYS", 7, minimum=1)
# Seconds a cross-host login link (tenant switcher, post-signup redirect) stays valid.
LOGIN_HANDOFF_MAX_AGE = env_int("LOGIN_HANDOFF_MAX_AGE", 60, minimum=5)

# --- email -----------------------------------------------------------------------------------

_EMAIL_BACKEND = env_str(
    "EMAIL_BACKEND",
    "django.core.mail.backends.smtp.EmailBackend"
    if IS_PRODUCTION
    else "django.core.mail.backends.console.EmailBackend",
)
_SMTP_OPTIONS = {
    "host": env_str("EMAIL_HOST", "localhost"),
    "port": env_int("EMAIL_PORT", 25, minimum=1),
    "username": env_str("EMAIL_HOST_USER", ""),
    "password": env_str("EMAIL_HOST_PASSWORD", ""),
    "use_tls": env_bool("EMAIL_USE_TLS", False),
}
MAILERS = {
    "default": {
        "BACKEND": _EMAIL_BACKEND,
        "OPTIONS": _SMTP_OPTIONS if _EMAIL_BACKEND.endswith("smtp.EmailBackend") else {},
    }
}
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "Atrium <no-reply@localhost>")

# --- security headers ------------------------------------------------------------------------

SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", False)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = SECURE_HSTS_SECONDS > 0
if env_bool("TRUST_X_FORWARDED_PROTO", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_CSP = {
    "default-src": [CSP.SELF],
    "script-src": [CSP.SELF],
    "style-src": [CSP.SELF],
    "img-src": [CSP.SELF, "data:"],
    "connect-src": [CSP.SELF],
    "object-src": [CSP.NONE],
    "base-uri": [CSP.NONE],
    "frame-ancestors": [CSP.NONE],
    # Sign-up, sign-in and the tenant switcher post here and are redirected to a tenant host.
    "form-action": [
        CSP.SELF,
        f"{SITE_SCHEME}://{BASE_DOMAIN}:*",
        f"{SITE_SCHEME}://*.{BASE_DOMAIN}:*",
    ],
}

# --- static files ----------------------------------------------------------------------------

STATIC_URL = "/static/"
# collectstatic writes here for production images; dev and tests serve from the source folders.
STATIC_ROOT = BASE_DIR / "staticfiles" if IS_PRODUCTION else None
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    # Uploaded files: local disk (MEDIA_ROOT) unless STORAGE_S3_BUCKET is set (saas/storage.py).
    "default": default_storage_from_env(),
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if IS_PRODUCTION
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
# Outside production whitenoise serves straight from the source folders (no collectstatic).
WHITENOISE_USE_FINDERS = not IS_PRODUCTION
WHITENOISE_AUTOREFRESH = DEBUG

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- AI gateway ------------------------------------------------------------------------------

# Platform provider credentials (the SDKs' own variable names). With none set, every route
# falls back to the built-in `local` provider.
OPENAI_API_KEY = env_str("OPENAI_API_KEY", "")
OPENAI_BASE_URL = env_str("OPENAI_BASE_URL", "")
ANTHROPIC_API_KEY = env_str("ANTHROPIC_API_KEY", "")
ANTHROPIC_BASE_URL = env_str("ANTHROPIC_BASE_URL", "")
# A self-hosted OpenAI-compatible server (vLLM, Ollama, llama.cpp): its /v1 base URL.
OPENAI_COMPATIBLE_BASE_URL = env_str("OPENAI_COMPATIBLE_BASE_URL", "")
OPENAI_COMPATIBLE_API_KEY = env_str("OPENAI_COMPATIBLE_API_KEY", "")


def _dev_encryption_key() -> str:
    from cryptography.fernet import Fernet

    path = BASE_DIR / ".devdata" / "encryption_key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(Fernet.generate_key().decode())
    return path.read_text().strip()


# Fernet keys for tenants' stored provider keys, newest first; older ones still decrypt (add a
# new key in front, run `manage.py rotate_provider_keys`, then drop the old one).
AI_ENCRYPTION_KEYS = env_list(
    "AI_ENCRYPTION_KEYS", [] if IS_PRODUCTION else [_dev_encryption_key()]
)
if not AI_ENCRYPTION_KEYS:
    raise ImproperlyConfigured("Set AI_ENCRYPTION_KEYS (comma-separated Fernet keys).")

# Retries and deadlines (seconds). The gateway owns retries; SDK retries are off.
AI_DEADLINE_S = env_int("AI_DEADLINE_S", 60, minimum=1)
AI_ATTEMPT_TIMEOUT_S = env_int("AI_ATTEMPT_TIMEOUT_S", 30, minimum=1)
AI_MAX_ATTEMPTS_PER_MODEL = env_int("AI_MAX_ATTEMPTS_PER_MODEL", 2, minimum=1)
AI_BACKOFF_BASE_MS = env_int("AI_BACKOFF_BASE_MS", 250, minimum=0)
AI_BACKOFF_MAX_MS = env_int("AI_BACKOFF_MAX_MS", 4000, minimum=0)
# Circuit breakers, per provider+model (and per tenant for BYOK keys).
AI_BREAKER_FAILURES = env_int("AI_BREAKER_FAILURES", 5, minimum=1)
AI_BREAKER_WINDOW_S = env_int("AI_BREAKER_WINDOW_S", 60, minimum=1)
AI_BREAKER_COOLDOWN_S = env_int("AI_BREAKER_COOLDOWN_S", 30, minimum=1)
# Caches: exact answers for this long (per feature overrides below), stale copies kept longer
# to answer when every provider is down; semantic hits need at least this cosine similarity.
AI_CACHE_TTL_S = env_int("AI_CACHE_TTL_S", 3600, minimum=0)
AI_CACHE_TTL_BY_FEATURE = {"chat": 0, "classify": 86400, "summarize": 86400}
AI_STALE_TTL_S = env_int("AI_STALE_TTL_S", 7 * 86400, minimum=0)
AI_SEMANTIC_THRESHOLD = env_float("AI_SEMANTIC_THRESHOLD", 0.92, minimum=0.5, maximum=1.0)
# Features whose answers may be reused for similar questions (not open chat: context matters).
AI_SEMANTIC_FEATURES = set(env_list("AI_SEMANTIC_FEATURES", ["answer"]))
# Usage rows: "behind" = written by a ledger thread right after the answer (no database round
# trip on the call; a hard kill within milliseconds can lose a row, logged rows are replayable),
# "inline" = every call waits until its row is stored.
# Chat messages one person may send per minute over the chat socket.
CHAT_SENDS_PER_MINUTE = env_int("CHAT_SENDS_PER_MINUTE", 20, minimum=1)
# A conversation's history sent with each new message, newest first, up to this many tokens.
AI_HISTORY_TOKENS = env_int("AI_HISTORY_TOKENS", 6000, minimum=200)
AI_USAGE_WRITE = env_choice("AI_USAGE_WRITE", "behind", {"behind", "inline"})
# Guardrails: refuse (not only flag) user input that looks like a prompt injection.
AI_BLOCK_PROMPT_INJECTION = env_bool("AI_BLOCK_PROMPT_INJECTION", False)
# Plan code -> routing tier, and per-tier input/output limits (tokens).
AI_PLAN_TIERS = {"free": "free", "starter": "standard", "pro": "standard", "enterprise": "premium"}
AI_TIER_LIMITS = {
    "free": {"max_prompt_tokens": 4000, "max_output_tokens": 512},
    "standard": {"max_prompt_tokens": 32000, "max_output_tokens": 2048},
    "premium": {"max_prompt_tokens": 128000, "max_output_tokens": 4096},
}
# Where the local embedding model's ONNX graph is built and kept.
LOCAL_MODEL_CACHE_DIR = Path(
    env_str("LOCAL_MODEL_CACHE_DIR", str(BASE_DIR / ".devdata" / "models"))
)

# --- knowledge base --------------------------------------------------------------------------

# Uploaded files (through Django's storage API, under tenants/<schema>/ prefixes): the folder
# used when STORAGES["default"] is the local disk.
MEDIA_ROOT = Path(env_str("MEDIA_ROOT", str(BASE_DIR / ".devdata" / "media")))
MEDIA_URL = "/media/"
# Per plan limits: largest file, and documents per tenant.
RETRIEVAL_LIMITS = {
    "free": {"max_bytes": env_int("RETRIEVAL_FREE_MAX_MB", 10, minimum=1) * 1024 * 1024,
             "max_documents": env_int("RETRIEVAL_FREE_MAX_DOCUMENTS", 100, minimum=1)},
    "standard": {"max_bytes": 50 * 1024 * 1024, "max_documents": 5000},
    "premium": {"max_bytes": 200 * 1024 * 1024, "max_documents": 100_000},
}  # fmt: skip
# Wall-clock seconds a PDF may take to read (checked between pages): a hostile file can make
# the parser spin. The page limit (3000) is in retrieval/extract/pdf.py.
RETRIEVAL_EXTRACT_TIMEOUT_S = env_int("RETRIEVAL_EXTRACT_TIMEOUT_S", 60, minimum=1)
# Chunk size in word pieces (the local embedder reads at most 256) and overlap between chunks.
RETRIEVAL_CHUNK_TOKENS = env_int("RETRIEVAL_CHUNK_TOKENS", 200, minimum=32, maximum=256)
RETRIEVAL_CHUNK_OVERLAP = env_float("RETRIEVAL_CHUNK_OVERLAP", 0.2, minimum=0.0, maximum=0.5)
# Below this cosine similarity a chunk only counts if it also matches the words of the query.
RETRIEVAL_MIN_SIMILARITY = env_float("RETRIEVAL_MIN_SIMILARITY", 0.3, minimum=0.0, maximum=1.0)
# HNSW candidate list per vector search (pgvector's hnsw.ef_search; its default 40 found ~94%
# of the true top 10 among 100k chunks, 100 ~97% at p95 < 10 ms: `make bench BENCH=retrieval`).
RETRIEVAL_HNSW_EF_SEARCH = env_int("RETRIEVAL_HNSW_EF_SEARCH", 100, minimum=1, maximum=1000)
# Ingestions one tenant may run at once, across all workers (others' uploads get the rest), and
# how long a slot held by a killed worker stays taken (live holders renew theirs).
RETRIEVAL_TENANT_CONCURRENCY = env_int("RETRIEVAL_TENANT_CONCURRENCY", 2, minimum=1)
RETRIEVAL_TENANT_LEASE_S = env_int("RETRIEVAL_TENANT_LEASE_S", 60, minimum=5)

# --- webhooks --------------------------------------------------------------------------------

# Tenants' webhook endpoints (saas/webhooks/). Their signing secrets are encrypted with
# AI_ENCRYPTION_KEYS too: after putting a new key first, also run `rotate_webhook_secrets`.
# Plain http:// endpoint URLs (https only in production by default).
WEBHOOK_ALLOW_HTTP = env_bool("WEBHOOK_ALLOW_HTTP", not IS_PRODUCTION)
# Endpoints on private, loopback, link-local or reserved addresses (a local receiver in dev and
# tests). Off, every address a host resolves to is checked at delivery and the connection goes
# to the checked address, so a tenant cannot make Atrium call internal services.
WEBHOOK_ALLOW_PRIVATE_NETWORKS = env_bool("WEBHOOK_ALLOW_PRIVATE_NETWORKS", not IS_PRODUCTION)
WEBHOOK_MAX_ENDPOINTS = env_int("WEBHOOK_MAX_ENDPOINTS", 20, minimum=1)
# Seconds per connect, send and wait for the response; redirects are never followed.
WEBHOOK_TIMEOUT_S = env_int("WEBHOOK_TIMEOUT_S", 10, minimum=1, maximum=30)
# Attempts per delivery, the first retry's delay, each next one 4 times longer (+-20% jitter)
# up to the cap: 8 attempts over about 19 hours by default.
WEBHOOK_MAX_ATTEMPTS = env_int("WEBHOOK_MAX_ATTEMPTS", 8, minimum=1, maximum=20)
WEBHOOK_BACKOFF_BASE_S = env_int("WEBHOOK_BACKOFF_BASE_S", 30, minimum=0)
WEBHOOK_BACKOFF_MAX_S = env_int("WEBHOOK_BACKOFF_MAX_S", 8 * 3600, minimum=0)
# After a secret rotation, deliveries carry signatures with the new and the old secret this long.
WEBHOOK_SECRET_GRACE_S = env_int("WEBHOOK_SECRET_GRACE_S", 24 * 3600, minimum=0)
# Finished deliveries are kept (visible over the API) this many days.
WEBHOOK_DELIVERY_RETENTION_DAYS = env_int("WEBHOOK_DELIVERY_RETENTION_DAYS", 30, minimum=1)
# Retries due later than a few minutes wait in the database, not in the broker: beat queues
# them (and any delivery whose worker died) every minute, and prunes old deliveries daily.
CELERY_BEAT_SCHEDULE = {
    "webhook-deliveries-due": {
        "task": "saas.webhooks.tasks.webhook_deliveries_due_task",
        "schedule": 60.0,
    },
    "webhook-deliveries-prune": {
        "task": "saas.webhooks.tasks.webhook_deliveries_prune_task",
        "schedule": 24 * 3600.0,
    },
    # Bulk jobs whose tasks were lost (a worker crashed past its retries) are queued again.
    "jobs-resume-stalled": {"task": "ai.jobs.tasks.jobs_resume_stalled_task", "schedule": 60.0},
    # Chat answers whose task was lost end (failed, or incomplete with what was shown).
    "answers-end-lost": {"task": "ai.conversations.tasks.answers_end_lost_task", "schedule": 60.0},
}

# --- bulk jobs -------------------------------------------------------------------------------

# POST /api/v1/jobs (ai/jobs/): prompts per job, characters per prompt (and system prompt), and
# jobs a tenant may have queued or running at once (more: 429).
JOBS_MAX_ITEMS = env_int("JOBS_MAX_ITEMS", 1000, minimum=1)
JOBS_MAX_PROMPT_CHARS = env_int("JOBS_MAX_PROMPT_CHARS", 32_000, minimum=1)
JOBS_MAX_ACTIVE_PER_TENANT = env_int("JOBS_MAX_ACTIVE_PER_TENANT", 5, minimum=1)
# A job is worked through in tasks of at most this many items each; each task then queues its
# continuation at the tail of the `bulk` queue, behind other tenants' work.
JOBS_BATCH_SIZE = env_int("JOBS_BATCH_SIZE", 10, minimum=1, maximum=200)
# Bulk tasks one tenant may run at once across all workers, and how long the slot of a killed
# worker stays taken (live holders renew theirs).
JOBS_TENANT_CONCURRENCY = env_int("JOBS_TENANT_CONCURRENCY", 2, minimum=1)
JOBS_TENANT_LEASE_S = env_int("JOBS_TENANT_LEASE_S", 60, minimum=5)
# Bulk model calls in flight at once per provider (all tenants together), so bulk work leaves
# the providers' rate limits to interactive traffic.
JOBS_PROVIDER_CONCURRENCY = env_int("JOBS_PROVIDER_CONCURRENCY", 8, minimum=1)
# An item taken by a worker that died goes back to pending after this long; it must outlast
# one gateway call (AI_DEADLINE_S).
JOBS_ITEM_LEASE_S = env_int("JOBS_ITEM_LEASE_S", 300, minimum=AI_DEADLINE_S + 10)
# Model calls per item when providers are unavailable (then the item fails with the reason),
# and the delay before the first retry (doubled for each next one, at most 5 minutes).
JOBS_MAX_ATTEMPTS = env_int("JOBS_MAX_ATTEMPTS", 3, minimum=1, maximum=10)
JOBS_RETRY_BACKOFF_S = env_int("JOBS_RETRY_BACKOFF_S", 15, minimum=0, maximum=300)
# Jobs in batch mode ("mode": "batch", sent as one OpenAI/Anthropic batch at the batch price):
# seconds between looks at the provider's batch. Below the stalled-job check (2 x item lease).
JOBS_BATCH_POLL_S = env_int("JOBS_BATCH_POLL_S", 60, minimum=1, maximum=JOBS_ITEM_LEASE_S)
# Jobs over knowledge-base documents ("kind": "summarize" | "classify"): characters of a
# document's text put in its item's prompt, at most (the rest is cut, and the prompt says so);
# fewer when the tenant's plan allows fewer prompt tokens (AI_TIER_LIMITS).
JOBS_DOCUMENT_MAX_CHARS = env_int("JOBS_DOCUMENT_MAX_CHARS", 24_000, minimum=1000)

# --- API -------------------------------------------------------------------------------------

REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_AUTHENTICATION_CLASSES": ["saas.api.authentication.APIKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["saas.api.permissions.ScopeRequired"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["saas.api.parsers.SafeJSONParser"],
    "EXCEPTION_HANDLER": "saas.api.errors.problem_exception_handler",
    "DEFAULT_THROTTLE_CLASSES": ["saas.api.throttling.KeyAndTenantRateLimit"],
    "UNAUTHENTICATED_USER": None,
}
# API requests and model tokens per minute, per key and per tenant (all its keys together), by
# plan tier (defaults until plans carry their own).
_API_LIMIT_DEFAULTS = {
    # tier: requests per key, per tenant; tokens per key, per tenant
    "free": (60, 120, 40_000, 100_000),
    "standard": (600, 1200, 400_000, 1_000_000),
    "premium": (3000, 6000, 2_000_000, 5_000_000),
}
API_RATE_LIMITS = {
    tier: {
        "key_per_minute": env_int(f"API_{tier.upper()}_KEY_PER_MINUTE", key_rpm, minimum=1),
        "tenant_per_minute": env_int(
            f"API_{tier.upper()}_TENANT_PER_MINUTE", tenant_rpm, minimum=1
        ),
        "key_tokens_per_minute": env_int(
            f"API_{tier.upper()}_KEY_TOKENS_PER_MINUTE", key_tpm, minimum=1
        ),
        "tenant_tokens_per_minute": env_int(
            f"API_{tier.upper()}_TENANT_TOKENS_PER_MINUTE", tenant_tpm, minimum=1
        ),
    }
    for tier, (key_rpm, tenant_rpm, key_tpm, tenant_tpm) in _API_LIMIT_DEFAULTS.items()
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Atrium API",
    "VERSION": "1.0.0",
    "DESCRIPTION": "Tenant API: send `Authorization: Bearer <key>` (keys from Settings > API "
    "keys or `manage.py create_api_key`). Errors are RFC 9457 problem details.",
    # The schema and its docs are public (no key needed); assets are served from PyPI's
    # drf-spectacular-sidecar, not a CDN, so the strict CSP holds.
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
}

# --- logging ---------------------------------------------------------------------------------

LOG_LEVEL = env_choice("LOG_LEVEL", "INFO", {"DEBUG", "INFO", "WARNING", "ERROR"})
LOG_FORMAT = env_choice("LOG_FORMAT", "json", {"json", "text"})
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_context": {"()": "saas.logging.RequestContextFilter"}},
    "formatters": {
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s %(tenant)s",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
        },
        "text": {
            "format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s %(tenant)s] %(message)s"
        },
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": LOG_FORMAT,
            "filters": ["request_context"],
        }
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "daphne": {"level": "WARNING"},
        "httpx2": {"level": "WARNING"},  # one line per provider request otherwise
    },
}
