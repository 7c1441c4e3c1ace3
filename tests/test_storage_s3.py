"""Knowledge-base files in an S3-compatible bucket (moto's S3 server, on a local port in this
process) with the settings built from the STORAGE_S3_* variables: each tenant's objects under its
own prefix, read back for ingestion, removed on delete, private. Every S3 test also checks the
bucket itself, so it fails if files silently went to the local disk."""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest
import requests
from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.core.files.storage import FileSystemStorage, default_storage
from django_tenants.utils import schema_context
from moto.server import ThreadedMotoServer
from storages.backends.s3 import S3Storage

from retrieval.models import Document
from retrieval.services import document_delete, document_ingest, document_upload
from saas.storage import FILE_SYSTEM_BACKEND, S3_BACKEND, default_storage_from_env

needs_db = pytest.mark.django_db(databases=["default", "ledger"])  # ingestion meters usage

ACCESS_KEY, SECRET_KEY = "AKIATESTATRIUM", "test-secret-not-real"
STORAGE_VARS = [
    "STORAGE_S3_BUCKET",
    "STORAGE_S3_ENDPOINT_URL",
    "STORAGE_S3_REGION",
    "STORAGE_S3_ACCESS_KEY_ID",
    "STORAGE_S3_SECRET_ACCESS_KEY",
    "STORAGE_S3_ADDRESSING_STYLE",
    "STORAGE_S3_PREFIX",
    "STORAGE_S3_SERVER_SIDE_ENCRYPTION",
]
HANDBOOK = b"# Handbook\n\nExpense reports are due on the fifth working day of each month.\n"
ROADMAP = b"# Roadmap\n\nThe Globex launch of the orbital platform is planned for the spring.\n"


@pytest.fixture
def storage_env(monkeypatch):
    """No STORAGE_S3_* variable from the outer environment; set the ones a test needs."""
    for name in STORAGE_VARS:
        monkeypatch.delenv(name, raising=False)

    def set_env(**values: str) -> None:
        for name, value in values.items():
            monkeypatch.setenv(name, value)

    return set_env


@pytest.fixture(scope="module")
def s3_endpoint():
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@dataclass
class Bucket:
    name: str
    client: object

    def keys(self) -> set[str]:
        listing = self.client.list_objects_v2(Bucket=self.name)
        return {item["Key"] for item in listing.get("Contents", [])}

    def read(self, key: str) -> bytes:
        return self.client.get_object(Bucket=self.name, Key=key)["Body"].read()


@pytest.fixture
def bucket(s3_endpoint, storage_env, settings) -> Bucket:
    """A new, empty bucket per test, made the default storage through the same code (and
    variables) a deployment uses."""
    name = f"atrium-{uuid.uuid4().hex[:12]}"
    client = boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        region_name="us-east-1",
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
    )
    client.create_bucket(Bucket=name)
    storage_env(
        STORAGE_S3_BUCKET=name,
        STORAGE_S3_ENDPOINT_URL=s3_endpoint,
        STORAGE_S3_REGION="us-east-1",
        STORAGE_S3_ACCESS_KEY_ID=ACCESS_KEY,
        STORAGE_S3_SECRET_ACCESS_KEY=SECRET_KEY,
        STORAGE_S3_ADDRESSING_STYLE="path",
        STORAGE_S3_SERVER_SIDE_ENCRYPTION="AES256",
    )
    # setting_changed resets Django's storages: default_storage, and so the FileField's storage
    # (it holds the lazy default_storage), become the S3 backend for this test only.
    settings.STORAGES = {**settings.STORAGES, "default": default_storage_from_env()}
    assert isinstance(Document._meta.get_field("file").storage, S3Storage)
    return Bucket(name, client)


@pytest.fixture
def upload(django_capture_on_commit_callbacks):
    def upload(tenant, user, filename: str, data: bytes) -> Document:
        with django_capture_on_commit_callbacks(execute=True):
            return document_upload(
                tenant=tenant, user=user, filename=filename, data=data, enqueue=False
            )

    return upload


@needs_db
def test_each_tenants_files_land_under_its_own_prefix_and_ingestion_reads_them_back(
    world, bucket, upload, settings
):
    handbook = upload(world.acme, world.alice, "handbook.md", HANDBOOK)
    roadmap = upload(world.globex, world.charlie, "roadmap.md", ROADMAP)

    acme_prefix = f"tenants/{world.acme.schema_name}/documents/{handbook.public_id}/"
    globex_prefix = f"tenants/{world.globex.schema_name}/documents/{roadmap.public_id}/"
    assert handbook.file.name.startswith(acme_prefix)
    assert roadmap.file.name.startswith(globex_prefix)
    # Exactly these two objects: nothing outside the tenants' prefixes.
    assert bucket.keys() == {handbook.file.name, roadmap.file.name}
    assert bucket.read(handbook.file.name) == HANDBOOK
    assert bucket.read(roadmap.file.name) == ROADMAP
    assert not (Path(settings.MEDIA_ROOT) / handbook.file.name).exists()

    # Nothing on the local disk, so a ready document with the text was read from the bucket.
    for tenant, document, words in [
        (world.acme, handbook, "fifth working day"),
        (world.globex, roadmap, "orbital platform"),
    ]:
        ingested = document_ingest(tenant=tenant, document_id=document.pk)
        assert (ingested.status, ingested.error) == ("ready", "")
        assert ingested.chunk_count >= 1
        with schema_context(tenant.schema_name):
            assert any(words in text for text in ingested.chunks.values_list("text", flat=True))


@needs_db
def test_deleting_a_document_removes_its_object_and_no_other(
    world, bucket, upload, django_capture_on_commit_callbacks
):
    handbook = upload(world.acme, world.alice, "handbook.md", HANDBOOK)
    roadmap = upload(world.globex, world.charlie, "roadmap.md", ROADMAP)
    assert bucket.keys() == {handbook.file.name, roadmap.file.name}

    with django_capture_on_commit_callbacks(execute=True):  # the object goes after commit
        document_delete(tenant=world.acme, document=handbook, user=world.alice)

    assert bucket.keys() == {roadmap.file.name}


@needs_db
def test_a_refused_duplicate_leaves_no_object_behind(world, bucket, upload):
    handbook = upload(world.acme, world.alice, "handbook.md", HANDBOOK)

    with pytest.raises(ValidationError, match="already in the knowledge base"):
        upload(world.acme, world.alice, "copy-of-handbook.md", HANDBOOK)

    assert bucket.keys() == {handbook.file.name}


@needs_db
def test_objects_are_private_and_readable_only_through_signed_urls(world, bucket, upload):
    handbook = upload(world.acme, world.alice, "handbook.md", HANDBOOK)
    key = handbook.file.name

    acl = bucket.client.get_object_acl(Bucket=bucket.name, Key=key)
    assert [grant["Permission"] for grant in acl["Grants"]] == ["FULL_CONTROL"]
    assert acl["Grants"][0]["Grantee"]["Type"] == "CanonicalUser"  # the owner, no group
    head = bucket.client.head_object(Bucket=bucket.name, Key=key)
    assert head["ServerSideEncryption"] == "AES256"

    signed = handbook.file.url
    assert "X-Amz-Signature=" in signed
    assert requests.get(signed, timeout=5).content == HANDBOOK
    unsigned = requests.get(signed.split("?", 1)[0], timeout=5)
    assert unsigned.status_code == 403
    assert HANDBOOK not in unsigned.content


def test_local_disk_is_the_default(storage_env):
    assert default_storage_from_env() == {"BACKEND": FILE_SYSTEM_BACKEND}
    storage_env(STORAGE_S3_BUCKET="")  # `STORAGE_S3_BUCKET=` in an env file: still unset
    assert default_storage_from_env() == {"BACKEND": FILE_SYSTEM_BACKEND}
    # And the S3 tests above left the test settings' storage as it was.
    if not os.environ.get("STORAGE_S3_BUCKET"):
        assert isinstance(default_storage, FileSystemStorage)


def test_s3_settings_are_built_from_the_environment(storage_env):
    storage_env(
        STORAGE_S3_BUCKET="atrium-files",
        STORAGE_S3_ENDPOINT_URL="https://minio.internal:9000",
        STORAGE_S3_REGION="eu-west-3",
        STORAGE_S3_ACCESS_KEY_ID="AKIAEXAMPLE",
        STORAGE_S3_SECRET_ACCESS_KEY="wJalrXUtnFEMI/EXAMPLE",
        STORAGE_S3_ADDRESSING_STYLE="path",
        STORAGE_S3_PREFIX="/prod/",
        STORAGE_S3_SERVER_SIDE_ENCRYPTION="aws:kms",
    )
    assert default_storage_from_env() == {
        "BACKEND": S3_BACKEND,
        "OPTIONS": {
            "bucket_name": "atrium-files",
            "endpoint_url": "https://minio.internal:9000",
            "region_name": "eu-west-3",
            "access_key": "AKIAEXAMPLE",
            "secret_key": "wJalrXUtnFEMI/EXAMPLE",
            "addressing_style": "path",
            "location": "prod",
            "object_parameters": {"ServerSideEncryption": "aws:kms"},
            "signature_version": "s3v4",
            "file_overwrite": False,
            "default_acl": None,
            "querystring_auth": True,
        },
    }


def test_unset_s3_credentials_fall_back_to_the_boto3_chain(storage_env):
    storage_env(STORAGE_S3_BUCKET="atrium-files")
    options = default_storage_from_env()["OPTIONS"]
    assert options == {
        "bucket_name": "atrium-files",
        "addressing_style": "auto",
        "signature_version": "s3v4",
        "file_overwrite": False,
        "default_acl": None,
        "querystring_auth": True,
    }
    S3Storage(**options)  # django-storages accepts every option


@pytest.mark.parametrize(
    ("variables", "named"),
    [
        ({"STORAGE_S3_ACCESS_KEY_ID": "AKIAEXAMPLE"}, "STORAGE_S3_SECRET_ACCESS_KEY"),
        ({"STORAGE_S3_SECRET_ACCESS_KEY": "s3cr3t-value"}, "STORAGE_S3_ACCESS_KEY_ID"),
        ({"STORAGE_S3_ADDRESSING_STYLE": "dns"}, "STORAGE_S3_ADDRESSING_STYLE"),
        ({"STORAGE_S3_ENDPOINT_URL": "minio:9000"}, "STORAGE_S3_ENDPOINT_URL"),
        ({"STORAGE_S3_SERVER_SIDE_ENCRYPTION": "yes"}, "STORAGE_S3_SERVER_SIDE_ENCRYPTION"),
    ],
)
def test_bad_s3_settings_stop_start_up_naming_the_variable(storage_env, variables, named):
    storage_env(STORAGE_S3_BUCKET="atrium-files", **variables)
    with pytest.raises(ImproperlyConfigured, match=named) as error:
        default_storage_from_env()
    assert "s3cr3t-value" not in str(error.value)
