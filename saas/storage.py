"""Where uploaded files live: local disk (MEDIA_ROOT) by default, an S3-compatible bucket (AWS
S3, MinIO, Cloudflare R2, ...) through django-storages when STORAGE_S3_BUCKET is set. Either
way the code only uses Django's storage API, and the names it stores carry the tenant prefix
(`tenants/<schema>/...`, see retrieval.models.document_upload_path)."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ImproperlyConfigured

from saas.env import env_choice, env_str

FILE_SYSTEM_BACKEND = "django.core.files.storage.FileSystemStorage"
S3_BACKEND = "storages.backends.s3.S3Storage"
ADDRESSING_STYLES = {"auto", "path", "virtual"}
# Empty: none requested (the bucket's own default encryption, if any, still applies).
SERVER_SIDE_ENCRYPTION = {"", "AES256", "aws:kms"}


def _optional(name: str) -> str | None:
    # An empty value (`VAR=` in an env file) counts as unset.
    return env_str(name, "").strip() or None


def default_storage_from_env() -> dict[str, Any]:
    """The STORAGES["default"] entry for the environment: FileSystemStorage unless
    STORAGE_S3_BUCKET is set, then a private S3Storage on that bucket. Credentials left unset
    fall back to boto3's own chain (AWS_* variables, shared config files, instance or pod role).
    Raises ImproperlyConfigured (naming the variable, never a secret) for a bad value."""
    bucket = _optional("STORAGE_S3_BUCKET")
    if bucket is None:
        return {"BACKEND": FILE_SYSTEM_BACKEND}
    options: dict[str, Any] = {
        "bucket_name": bucket,
        "addressing_style": env_choice("STORAGE_S3_ADDRESSING_STYLE", "auto", ADDRESSING_STYLES),
        # Names are unique (a UUID per document), but never overwrite an object regardless.
        "file_overwrite": False,
        # Private objects, readable only with credentials or a short-lived signed URL.
        "default_acl": None,
        "querystring_auth": True,
        # Signature V4 everywhere (botocore would otherwise sign URLs for us-east-1 with the
        # deprecated V2); MinIO, R2 and other S3-compatible servers accept it.
        "signature_version": "s3v4",
    }
    endpoint_url = _optional("STORAGE_S3_ENDPOINT_URL")
    if endpoint_url is not None:
        if not endpoint_url.startswith(("https://", "http://")):
            raise ImproperlyConfigured(
                "STORAGE_S3_ENDPOINT_URL must start with https:// or http://."
            )
        options["endpoint_url"] = endpoint_url
    region = _optional("STORAGE_S3_REGION")
    if region is not None:
        options["region_name"] = region
    access_key = _optional("STORAGE_S3_ACCESS_KEY_ID")
    secret_key = _optional("STORAGE_S3_SECRET_ACCESS_KEY")
    if (access_key is None) != (secret_key is None):
        raise ImproperlyConfigured(
            "Set both STORAGE_S3_ACCESS_KEY_ID and STORAGE_S3_SECRET_ACCESS_KEY, or neither "
            "(to use boto3's default credential chain)."
        )
    if access_key is not None:
        options["access_key"] = access_key
        options["secret_key"] = secret_key
    prefix = (_optional("STORAGE_S3_PREFIX") or "").strip("/")
    if prefix:
        options["location"] = prefix
    encryption = env_choice("STORAGE_S3_SERVER_SIDE_ENCRYPTION", "", SERVER_SIDE_ENCRYPTION)
    if encryption:
        options["object_parameters"] = {"ServerSideEncryption": encryption}
    return {"BACKEND": S3_BACKEND, "OPTIONS": options}
