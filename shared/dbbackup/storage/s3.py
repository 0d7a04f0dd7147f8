"""The S3-compatible backend (``BACKUP_STORAGE=s3``): AWS S3, Cloudflare R2, Backblaze B2,
MinIO, Supabase Storage's S3 endpoint, on boto3. Only this module imports boto3/botocore; their
errors become StorageError / StorageNotFound / StorageExists / StorageRetained here.

A file is the object ``<prefix>/<name>`` (``storage/object_keys.py``). Uploads stream: the dump
is cut into parts of ``part_size`` bytes, so memory holds one part (plus one source chunk)
whatever the dump's size. A dump that fits in one part is one PutObject. Each part carries its
Content-MD5 (the server refuses a corrupted part) and the completed object's ETag is checked
against the one computed from the parts' MD5s. Whatever fails (the dump, a part, the network),
the multipart upload is aborted: an upload that is never completed is never an object, and
the abort frees its parts. Nothing is overwritten: the key is checked first, and the final
write is conditional (``If-None-Match: *``, which AWS, R2 and MinIO honour).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import re
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import boto3
import botocore.exceptions
from botocore.config import Config

from dbbackup.core.ports import Folder, StoredFile
from dbbackup.errors import StorageError, StorageExists, StorageNotFound, StorageRetained
from dbbackup.redact import redact
from dbbackup.storage.object_keys import content_type, folder_prefix, object_key
from dbbackup.storage.s3_config import S3Config

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef

READ_CHUNK = 1 << 20
LOCK_MODE = "COMPLIANCE"  # not even the bucket's owner can shorten it: the point of a second copy
_SIMPLE_ETAG = re.compile(r"^[0-9a-f]{32}$")
_MULTIPART_ETAG = re.compile(r"^[0-9a-f]{32}-[0-9]+$")
NOT_FOUND_CODES = {"404", "NoSuchKey", "NotFound", "NoSuchVersion"}
THROTTLE_CODES = {"SlowDown", "Throttling", "ThrottlingException", "RequestLimitExceeded", "TooManyRequests"}


def _b64_md5(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode()


def make_client(
    *,
    access_key_id: str | None,
    secret_access_key: str | None,
    session_token: str | None,
    region: str | None,
    endpoint_url: str | None,
    max_attempts: int,
    timeout_seconds: float,
    path_style: bool,
) -> S3Client:
    """A boto3 S3 client with our retries and timeouts, for the backup target and for Supabase
    Storage's objects (storage.s3_objects) alike."""
    session = boto3.session.Session(
        aws_access_key_id=access_key_id,
        aws_secret_access_key=secret_access_key,
        aws_session_token=session_token,
        region_name=region,
    )
    botocore_config = Config(
        retries={"mode": "standard", "max_attempts": max_attempts},
        connect_timeout=timeout_seconds,
        read_timeout=timeout_seconds,
        # Other S3 implementations want path-style URLs (MinIO, Supabase) and reject or mishandle
        # the CRC trailers botocore now adds by default (R2, B2): we send Content-MD5 ourselves.
        s3={"addressing_style": "path"} if path_style else {},
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    return session.client("s3", endpoint_url=endpoint_url, config=botocore_config)


class S3Storage:
    def __init__(self, config: S3Config, client: S3Client | None = None) -> None:
        self.config = config
        self.client: S3Client = client or self._client(config)

    @staticmethod
    def _client(config: S3Config) -> S3Client:
        return make_client(
            access_key_id=config.access_key_id,
            secret_access_key=config.secret_access_key,
            session_token=config.session_token,
            region=config.region,
            endpoint_url=config.endpoint_url,
            max_attempts=config.max_attempts,
            timeout_seconds=config.timeout_seconds,
            path_style=bool(config.endpoint_url),
        )

    # -- errors ----------------------------------------------------------------------------

    def _where(self, key: str = "") -> str:
        return f"s3://{self.config.bucket}/{key}"

    def _error(self, exc: Exception, doing: str, key: str = "") -> StorageError:
        """One line naming the operation, the object and what to fix; never a secret."""
        where = self._where(key)
        if isinstance(exc, botocore.exceptions.ClientError):
            err: dict[str, Any] = dict(exc.response.get("Error") or {})
            code = str(err.get("Code") or "")
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
            if code == "NoSuchBucket":
                return StorageError(f"s3: bucket {self.config.bucket!r} does not exist ({doing})")
            if code in NOT_FOUND_CODES:
                return StorageNotFound(f"{where} does not exist")
            if code == "PreconditionFailed" or status == 412:
                return StorageExists(f"{where} already exists")
            if code in ("AccessDenied", "Forbidden", "InvalidAccessKeyId", "SignatureDoesNotMatch") or status == 403:
                text = f"s3: permission denied to {doing} {where} ({code or 'HTTP 403'})"
            elif code in THROTTLE_CODES or status in (429, 503):
                text = f"s3: {doing} {where} was throttled by the server ({code or status}); retries exhausted"
            elif code in ("QuotaExceeded", "StorageQuotaExceeded", "EntityTooLarge") or status == 507:
                text = f"s3: {doing} {where} refused: storage quota or size limit ({code or status})"
            else:
                message = str(err.get("Message") or "").splitlines()[0:1]
                text = f"s3: {doing} {where} failed: HTTP {status} {code}" + (f": {message[0]}" if message else "")
        elif isinstance(exc, botocore.exceptions.NoCredentialsError):
            text = "s3: no credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or their *_SECRET)"
        elif isinstance(exc, botocore.exceptions.BotoCoreError | OSError):
            endpoint = self.config.endpoint_url or "AWS"
            text = f"s3: {doing} {where} failed: connection to {endpoint} lost ({type(exc).__name__})"
        else:
            text = f"s3: {doing} {where} failed: {type(exc).__name__}: {exc}"
        return StorageError(redact(" ".join(text.split()), self.config.secrets))

    @staticmethod
    def _sdk_error(exc: BaseException) -> bool:
        return isinstance(exc, botocore.exceptions.BotoCoreError | botocore.exceptions.ClientError)

    # -- Storage ---------------------------------------------------------------------------

    def ensure_folder(self, path: str) -> Folder:
        prefix = folder_prefix(self.config.prefix, path)
        try:
            # Proves the bucket exists and is listable (s3:ListBucket) before a dump starts.
            self.client.list_objects_v2(Bucket=self.config.bucket, Prefix=prefix + "/", MaxKeys=1)
        except Exception as exc:
            if self._sdk_error(exc):
                raise self._error(exc, "list", prefix + "/") from None
            raise
        return Folder(id=prefix, path=self._where(prefix + "/"))

    def subfolder(self, folder: Folder, name: str, create: bool = True) -> Folder:
        # A bucket has no folders: the child is a longer key prefix, nothing to create.
        key = object_key(folder.id, name)
        return Folder(id=key, path=self._where(key + "/"))

    def _file(self, key: str, size: int, modified: datetime | None, etag: str | None) -> StoredFile:
        etag = (etag or "").strip('"')
        return StoredFile(
            id=key,
            name=key.rsplit("/", 1)[-1],
            size=size,
            path=self._where(key),
            modified=modified,
            md5=etag if _SIMPLE_ETAG.match(etag) else None,  # a multipart ETag is not the file's MD5
        )

    def list(self, folder: Folder) -> list[StoredFile]:
        found: list[StoredFile] = []
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.config.bucket, Prefix=folder.id + "/", Delimiter="/"
            )
            for page in pages:
                for item in page.get("Contents", []):
                    found.append(self._file(item["Key"], item["Size"], item.get("LastModified"), item.get("ETag")))
        except Exception as exc:
            if self._sdk_error(exc):
                raise self._error(exc, "list", folder.id + "/") from None
            raise
        return found

    def discard_incomplete(self, folder: Folder) -> int:
        # A killed function never ran put()'s abort: its parts are invisible but billed.
        removed = 0
        try:
            pages = self.client.get_paginator("list_multipart_uploads").paginate(
                Bucket=self.config.bucket, Prefix=folder.id + "/"
            )
            for page in pages:
                for upload in page.get("Uploads", []):
                    if "/" in upload["Key"][len(folder.id) + 1 :]:
                        continue  # a deeper "folder": not ours
                    self.client.abort_multipart_upload(
                        Bucket=self.config.bucket, Key=upload["Key"], UploadId=upload["UploadId"]
                    )
                    removed += 1
        except Exception as exc:
            if self._sdk_error(exc):
                raise self._error(exc, "abort the unfinished uploads in", folder.id + "/") from None
            raise
        return removed

    def _lock(self) -> dict[str, Any]:
        if not self.config.object_lock_days:
            return {}
        until = datetime.now(UTC) + timedelta(days=self.config.object_lock_days)
        return {"ObjectLockMode": LOCK_MODE, "ObjectLockRetainUntilDate": until}

    def put(self, folder: Folder, name: str, chunks: Iterable[bytes]) -> StoredFile:
        key = object_key(folder.id, name)
        bucket, part_size = self.config.bucket, self.config.part_size
        with contextlib.suppress(StorageNotFound):
            self.stat(key)
            raise StorageExists(f"{self._where(key)} already exists")
        md5 = hashlib.md5(usedforsecurity=False)
        total = 0
        buffer = bytearray()
        upload_id: str | None = None
        parts: list[CompletedPartTypeDef] = []
        digests: list[bytes] = []
        doing = "upload"

        def send_part(data: bytes) -> None:
            nonlocal upload_id, doing
            if upload_id is None:
                doing = "start the multipart upload of"
                upload_id = self.client.create_multipart_upload(
                    Bucket=bucket, Key=key, ContentType=content_type(name), **self._lock()
                )["UploadId"]
            number = len(parts) + 1
            digest = hashlib.md5(data, usedforsecurity=False)
            doing = f"upload part {number} of"
            answer = self.client.upload_part(
                Bucket=bucket,
                Key=key,
                UploadId=upload_id,
                PartNumber=number,
                Body=data,
                ContentMD5=base64.b64encode(digest.digest()).decode(),
            )
            etag = answer["ETag"].strip('"')
            if _SIMPLE_ETAG.match(etag) and etag != digest.hexdigest():
                raise StorageError(
                    f"s3: part {number} of {self._where(key)} was stored with ETag {etag}, expected its MD5"
                )
            parts.append({"ETag": answer["ETag"], "PartNumber": number})
            digests.append(digest.digest())

        try:
            for chunk in chunks:
                md5.update(chunk)
                total += len(chunk)
                buffer += chunk
                # Strictly more than a part: the last part is sent only once the stream has ended.
                while len(buffer) > part_size:
                    with memoryview(buffer) as view:  # one copy of the part, not a slice and then a copy
                        part = bytes(view[:part_size])
                    del buffer[:part_size]
                    send_part(part)
                    del part
            if upload_id is None:
                doing = "upload"
                answer = self.client.put_object(
                    Bucket=bucket,
                    Key=key,
                    Body=bytes(buffer),
                    ContentMD5=_b64_md5(bytes(buffer)),
                    ContentType=content_type(name),
                    IfNoneMatch="*",
                    **self._lock(),
                )
                expected = md5.hexdigest()
            else:
                send_part(bytes(buffer))
                buffer.clear()
                doing = "complete the multipart upload of"
                answer = self.client.complete_multipart_upload(  # type: ignore[assignment]  # both answers carry ETag
                    Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}, IfNoneMatch="*"
                )
                upload_id = None  # completed: nothing left to abort
                expected = hashlib.md5(b"".join(digests), usedforsecurity=False).hexdigest() + f"-{len(parts)}"
        except BaseException as exc:
            if upload_id is not None:
                self._abort(key, upload_id)
            if self._sdk_error(exc):
                raise self._error(exc, doing, key) from None  # type: ignore[arg-type]  # an SDK error is an Exception
            raise
        etag = str(answer.get("ETag") or "").strip('"')
        if (_SIMPLE_ETAG.match(etag) or _MULTIPART_ETAG.match(etag)) and etag != expected:
            # Another MD5 than what was streamed (an ETag of another form, e.g. SSE-KMS, proves nothing).
            with contextlib.suppress(StorageError):
                self.delete(key)
            raise StorageError(f"s3: {self._where(key)} was stored with ETag {etag}, expected {expected}")
        stored = self.stat(key)
        if stored.size != total:
            raise StorageError(f"s3: {self._where(key)} holds {stored.size} bytes, {total} were sent")
        return StoredFile(**{**stored.__dict__, "md5": md5.hexdigest()})

    def _abort(self, key: str, upload_id: str) -> None:
        try:
            self.client.abort_multipart_upload(Bucket=self.config.bucket, Key=key, UploadId=upload_id)
        except Exception:
            # Still never an object; the next backup's discard_incomplete aborts it.
            return

    def open(self, file_id: str) -> Iterator[bytes]:
        return self._get_object(file_id, None)

    def open_range(self, file_id: str, offset: int, length: int) -> Iterator[bytes]:
        return self._get_object(file_id, (offset, length))

    def _get_object(self, file_id: str, span: tuple[int, int] | None) -> Iterator[bytes]:
        try:
            if span is None:
                body = self.client.get_object(Bucket=self.config.bucket, Key=file_id)["Body"]
            else:
                wanted = f"bytes={span[0]}-{span[0] + span[1] - 1}"
                body = self.client.get_object(Bucket=self.config.bucket, Key=file_id, Range=wanted)["Body"]
        except Exception as exc:
            if self._sdk_error(exc):
                raise self._error(exc, "read", file_id) from None
            raise

        def chunks() -> Iterator[bytes]:
            got = 0
            try:
                with contextlib.closing(body):
                    for chunk in body.iter_chunks(READ_CHUNK):
                        got += len(chunk)
                        if span is not None and got > span[1]:  # the Range was ignored: not those bytes
                            raise StorageError(f"{self._where(file_id)}: more bytes than the range asked for")
                        yield chunk
            except Exception as exc:
                if self._sdk_error(exc) or isinstance(exc, OSError):
                    raise self._error(exc, "read", file_id) from None
                raise
            if span is not None and got != span[1]:
                raise StorageError(f"{self._where(file_id)} ended before byte {span[0] + span[1]:,}")

        return chunks()

    def _head(self, file_id: str) -> dict[str, Any]:
        if not file_id or file_id.endswith("/"):
            raise StorageNotFound(f"{self._where(file_id)} does not exist")
        try:
            return dict(self.client.head_object(Bucket=self.config.bucket, Key=file_id))
        except Exception as exc:
            if self._sdk_error(exc):
                raise self._error(exc, "read", file_id) from None
            raise

    def stat(self, file_id: str) -> StoredFile:
        head = self._head(file_id)
        return self._file(file_id, int(head["ContentLength"]), head.get("LastModified"), head.get("ETag"))

    def delete(self, file_id: str) -> None:
        head = self._head(file_id)
        until = head.get("ObjectLockRetainUntilDate")
        if isinstance(until, datetime) and until > datetime.now(UTC):
            mode = head.get("ObjectLockMode", "")
            raise StorageRetained(
                f"{self._where(file_id)} is under S3 Object Lock ({mode}) until {until:%Y-%m-%d %H:%M} UTC;"
                " not deleted",
                until=until,
            )
        # In a versioned bucket (Object Lock requires one) deleting by key only adds a delete
        # marker and keeps the bytes: delete the version itself so retention frees the space.
        version = head.get("VersionId")
        extra: dict[str, Any] = {"VersionId": version} if version and version != "null" else {}
        try:
            self.client.delete_object(Bucket=self.config.bucket, Key=file_id, **extra)
        except Exception as exc:
            if self._sdk_error(exc):
                raise self._error(exc, "delete", file_id) from None
            raise
