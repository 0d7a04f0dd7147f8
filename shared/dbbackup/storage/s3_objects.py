"""Supabase Storage through its S3-compatible endpoint (``core.ports.ObjectStore``): what a
backup reads when BACKUP_SUPABASE_STORAGE is on, and what ``storage-restore`` writes. Beside
``storage.s3`` and, like it, the only other module that imports boto3/botocore; their errors
become StorageError / StorageNotFound here, in one line naming "Supabase Storage", the endpoint
and the object, never a key.

Reads stream (``iter_chunks``); a write goes through boto3's managed transfer over a file-like
view of the chunks, one part uploading at a time (``max_concurrency=1``) and at most
``IN_MEMORY_PARTS`` parts read ahead of it (``max_in_memory_upload_chunks``: boto3's default, 10,
would buffer up to 80 MiB of a non-seekable stream), so memory holds about two 8 MiB parts
whatever the object's size.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

import botocore.exceptions
from boto3.s3.transfer import TransferConfig

from dbbackup.core.ports import ObjectHead, SourceObject
from dbbackup.errors import StorageError, StorageNotFound
from dbbackup.redact import redact
from dbbackup.storage.s3 import NOT_FOUND_CODES, THROTTLE_CODES, make_client
from dbbackup.storage.s3_config import SupabaseS3Config

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client

READ_CHUNK = 1 << 20
PART_SIZE = 8 << 20
IN_MEMORY_PARTS = 2  # parts of a non-seekable upload buffered at once
DENIED_CODES = ("AccessDenied", "Forbidden", "InvalidAccessKeyId", "SignatureDoesNotMatch")


class ChunkReader(io.RawIOBase):
    """A read-only file over an iterator of chunks (what boto3's upload_fileobj wants)."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = iter(chunks)
        self._rest = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._rest:
            try:
                self._rest = next(self._chunks)
            except StopIteration:
                return 0
        n = min(len(buffer), len(self._rest))
        buffer[:n] = self._rest[:n]
        self._rest = self._rest[n:]
        return n


def transfer_config() -> TransferConfig:
    config = TransferConfig(
        multipart_threshold=PART_SIZE,
        multipart_chunksize=PART_SIZE,
        max_concurrency=1,
        preferred_transfer_client="classic",  # the CRT client has no such bound
    )
    # Not a constructor argument of boto3's TransferConfig, an attribute of s3transfer's.
    config.max_in_memory_upload_chunks = IN_MEMORY_PARTS
    return config


class SupabaseObjects:
    def __init__(self, config: SupabaseS3Config, client: S3Client | None = None) -> None:
        self.config = config
        self.client: S3Client = client or self._client(config)

    @staticmethod
    def _client(config: SupabaseS3Config) -> S3Client:
        return make_client(
            access_key_id=config.access_key_id,
            secret_access_key=config.secret_access_key,
            session_token=None,
            region=config.region,
            endpoint_url=config.endpoint_url,
            max_attempts=config.max_attempts,
            timeout_seconds=config.timeout_seconds,
            path_style=True,  # Supabase's endpoint wants path-style URLs
        )

    @property
    def where(self) -> str:
        return self.config.endpoint_url

    def _error(self, exc: Exception, doing: str) -> StorageError:
        if isinstance(exc, botocore.exceptions.ClientError):
            err: dict[str, Any] = dict(exc.response.get("Error") or {})
            code = str(err.get("Code") or "")
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
            if code == "NoSuchBucket":
                text = f"Supabase Storage: {doing}: the bucket does not exist at {self.where}"
            elif code in NOT_FOUND_CODES:
                return StorageNotFound(f"Supabase Storage: {doing}: no such object")
            elif code in DENIED_CODES or status == 403:
                text = (
                    f"Supabase Storage: {doing}: access denied by {self.where} ({code or 'HTTP 403'}):"
                    " check SUPABASE_S3_ACCESS_KEY_ID / SUPABASE_S3_SECRET_ACCESS_KEY and SUPABASE_S3_REGION"
                )
            elif code in THROTTLE_CODES or status in (429, 503):
                text = f"Supabase Storage: {doing}: throttled by {self.where} ({code or status}); retries exhausted"
            else:
                text = f"Supabase Storage: {doing}: HTTP {status} {code}".rstrip()
        elif isinstance(exc, botocore.exceptions.BotoCoreError | OSError):
            text = f"Supabase Storage: {doing}: cannot reach {self.where} ({type(exc).__name__})"
        else:
            text = f"Supabase Storage: {doing}: {type(exc).__name__}: {exc}"
        return StorageError(redact(" ".join(text.split()), self.config.secrets))

    @staticmethod
    def _sdk_error(exc: BaseException) -> bool:
        return isinstance(exc, botocore.exceptions.BotoCoreError | botocore.exceptions.ClientError | OSError)

    @contextlib.contextmanager
    def _translated(self, doing: str) -> Iterator[None]:
        try:
            yield
        except Exception as exc:
            if self._sdk_error(exc):
                raise self._error(exc, doing) from None
            raise

    # -- reading ---------------------------------------------------------------------------

    def buckets(self) -> list[str]:
        with self._translated("list the buckets"):
            return sorted(b["Name"] for b in self.client.list_buckets().get("Buckets", []))

    def objects(self, bucket: str) -> Iterator[SourceObject]:
        with self._translated(f"list bucket {bucket}"):
            pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
            for page in pages:
                for item in page.get("Contents", []):
                    key = item["Key"]
                    if key.endswith("/") and not item["Size"]:
                        continue  # a folder placeholder, not a file
                    yield SourceObject(bucket, key, int(item["Size"]), str(item.get("ETag") or "").strip('"') or None)

    def head(self, bucket: str, key: str) -> ObjectHead:
        with self._translated(f"read {bucket}/{key}"):
            head = self.client.head_object(Bucket=bucket, Key=key)
        return ObjectHead(
            size=int(head["ContentLength"]),
            etag=str(head.get("ETag") or "").strip('"') or None,
            content_type=head.get("ContentType"),
            metadata=dict(head.get("Metadata") or {}),
        )

    def read(self, bucket: str, key: str) -> Iterator[bytes]:
        doing = f"read {bucket}/{key}"
        with self._translated(doing):
            body = self.client.get_object(Bucket=bucket, Key=key)["Body"]

        def chunks() -> Iterator[bytes]:
            with self._translated(doing), contextlib.closing(body):
                yield from body.iter_chunks(READ_CHUNK)

        return chunks()

    # -- writing (storage-restore) -----------------------------------------------------------

    def ensure_bucket(self, bucket: str) -> bool:
        with self._translated(f"create bucket {bucket}"):
            try:
                self.client.head_bucket(Bucket=bucket)
                return False
            except botocore.exceptions.ClientError as exc:
                status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
                code = str((exc.response.get("Error") or {}).get("Code") or "")
                if status != 404 and code not in ("NoSuchBucket", "404", "NotFound"):
                    raise
            self.client.create_bucket(Bucket=bucket)
            return True

    def write(
        self, bucket: str, key: str, chunks: Iterable[bytes], content_type: str | None, metadata: dict[str, str]
    ) -> None:
        extra: dict[str, Any] = {"Metadata": metadata}
        if content_type:
            extra["ContentType"] = content_type
        config = transfer_config()
        with self._translated(f"write {bucket}/{key}"):
            # A stream that raises makes the transfer abort its multipart upload: no object.
            self.client.upload_fileobj(
                io.BufferedReader(ChunkReader(chunks)), bucket, key, ExtraArgs=extra, Config=config
            )
