"""BACKUP_S3_* / BACKUP_GCS_* are parsed once, each bad value refused with a message naming its
variable, secrets kept out of repr; ``wiring.storage_named`` builds each backend by name."""

from __future__ import annotations

import pytest

from dbbackup.errors import ConfigError
from dbbackup.settings import Settings
from dbbackup.storage.gcs_config import gcs_config_from_env
from dbbackup.storage.s3_config import s3_config_from_env
from dbbackup.wiring import storage_named

DB = {"DATABASE_URL": "postgresql://u:p@127.0.0.1:5432/db"}
S3 = {"BACKUP_S3_BUCKET": "backups", "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE", "AWS_SECRET_ACCESS_KEY": "s3cr3t-key-value"}


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({}, "BACKUP_S3_BUCKET"),
        ({**S3, "BACKUP_S3_BUCKET": "a/b"}, "BACKUP_S3_BUCKET"),
        ({**S3, "BACKUP_S3_ENDPOINT_URL": "http://minio.example.com:9000"}, "BACKUP_S3_ENDPOINT_URL"),
        ({**S3, "BACKUP_S3_ENDPOINT_URL": "https://host/s3?x=1"}, "BACKUP_S3_ENDPOINT_URL"),
        ({**S3, "BACKUP_S3_PART_SIZE": "1024"}, "BACKUP_S3_PART_SIZE"),
        ({**S3, "BACKUP_S3_OBJECT_LOCK_DAYS": "-1"}, "BACKUP_S3_OBJECT_LOCK_DAYS"),
        ({**S3, "BACKUP_S3_PREFIX": "a/../b"}, "BACKUP_S3_PREFIX"),
        ({**S3, "BACKUP_S3_REGION": "eu west"}, "BACKUP_S3_REGION"),
        ({"BACKUP_S3_BUCKET": "backups", "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE"}, "AWS_SECRET_ACCESS_KEY"),
    ],
)
def test_bad_s3_settings_name_their_variable(env: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigError, match=variable):
        s3_config_from_env(env)


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({}, "BACKUP_GCS_BUCKET"),
        ({"BACKUP_GCS_BUCKET": "gs://b"}, "BACKUP_GCS_BUCKET"),
        ({"BACKUP_GCS_BUCKET": "b-1", "BACKUP_GCS_CHUNK_SIZE": "300000"}, "BACKUP_GCS_CHUNK_SIZE"),
        ({"BACKUP_GCS_BUCKET": "b-1", "BACKUP_GCS_PREFIX": "a//b"}, "BACKUP_GCS_PREFIX"),
    ],
)
def test_bad_gcs_settings_name_their_variable(env: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigError, match=variable):
        gcs_config_from_env(env)


def test_s3_settings_hold_the_secret_key_out_of_repr() -> None:
    settings = Settings.from_env({**DB, **S3, "BACKUP_STORAGE": "s3", "BACKUP_S3_PREFIX": "/backups/prod/"})
    assert settings.s3 is not None and settings.s3.prefix == "backups/prod"
    assert "s3cr3t-key-value" in settings.secrets
    assert "s3cr3t-key-value" not in repr(settings) and "s3cr3t-key-value" not in repr(settings.s3)


def test_storage_named_builds_each_backend() -> None:
    s3 = Settings.from_env({**DB, **S3, "BACKUP_STORAGE": "s3", "BACKUP_S3_ENDPOINT_URL": "http://127.0.0.1:9"})
    assert type(storage_named(s3, "s3")).__name__ == "S3Storage"
    gcs = Settings.from_env(
        {**DB, "BACKUP_STORAGE": "gcs", "BACKUP_GCS_BUCKET": "b-1", "STORAGE_EMULATOR_HOST": "127.0.0.1:9"}
    )
    assert gcs.gcs is not None and gcs.gcs.emulator_host == "http://127.0.0.1:9"
    assert type(storage_named(gcs, "gcs")).__name__ == "GcsStorage"
    with pytest.raises(ConfigError, match="'gcs' is not supported"):
        storage_named(s3, "gcs")  # no BACKUP_GCS_* parsed for this deployment


def test_an_endpoint_with_a_path_such_as_supabase_storages_addresses_buckets_under_it() -> None:
    env = {**S3, "BACKUP_STORAGE": "s3", "BACKUP_S3_ENDPOINT_URL": "https://abcd.supabase.co/storage/v1/s3"}
    storage = storage_named(Settings.from_env({**DB, **env}), "s3")
    # Signed offline: where the client would send a request for one object.
    url = storage.client.generate_presigned_url("get_object", Params={"Bucket": "backups", "Key": "A/f.sql.gz"})
    assert url.startswith("https://abcd.supabase.co/storage/v1/s3/backups/A/f.sql.gz?")
