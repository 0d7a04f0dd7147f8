"""The Google Cloud Storage backend (``BACKUP_STORAGE=gcs``), on google-cloud-storage. Only this
module imports it; its errors become StorageError / StorageNotFound / StorageExists /
StorageRetained here.

A file is the object ``<prefix>/<name>`` (``storage/object_keys.py``). Uploads are one resumable
session fed chunk by chunk (``blob.open("wb")``): memory holds one chunk plus one source piece,
a failed chunk is retried from the offset the server acknowledged (the library's recovery), and
``ifGenerationMatch=0`` makes the final write fail rather than replace an existing object. The
object is finalised only when the dump stream ended without raising; on any failure the session
is cancelled (DELETE on the session URI). A session that is never finalised is never an object
(it expires after a week even if the cancel did not reach GCS). The MD5 and CRC32C of what was
streamed are compared with the object's once it exists.

A bucket with a retention policy refuses to delete (or overwrite) an object younger than the
policy: ``delete`` raises ``StorageRetained`` naming the date it is retained until.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

import google.api_core.exceptions as gexc
import google.auth.exceptions
import google_crc32c
import requests
from google.api_core.client_options import ClientOptions
from google.api_core.retry import Retry
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage
from google.cloud.storage import exceptions as media_errors
from google.cloud.storage.retry import DEFAULT_RETRY

from dbbackup.core.ports import Folder, StoredFile
from dbbackup.errors import ConfigError, StorageError, StorageExists, StorageNotFound, StorageRetained
from dbbackup.storage.gcs_config import GcsConfig
from dbbackup.storage.object_keys import content_type, folder_prefix, object_key

READ_CHUNK = 1 << 20


def _json_error_message(response: Any) -> str:
    """The JSON API's ``error.message`` of a raw upload response (the media library keeps only
    "Request failed with status code")."""
    try:
        return str(response.json()["error"]["message"])
    except Exception:
        return ""


class GcsStorage:
    def __init__(self, config: GcsConfig) -> None:
        self.config = config
        self.retry: Retry = DEFAULT_RETRY.with_timeout(config.retry_seconds)
        try:
            if config.emulator_host:
                self.client = storage.Client(
                    project=config.project or "emulator",
                    credentials=AnonymousCredentials(),
                    client_options=ClientOptions(api_endpoint=config.emulator_host),
                )
            else:
                self.client = storage.Client(project=config.project)
        except google.auth.exceptions.DefaultCredentialsError:
            raise ConfigError(
                "gcs: no Google credentials (the function's service account, or GOOGLE_APPLICATION_CREDENTIALS)"
            ) from None
        self.bucket = self.client.bucket(config.bucket)

    # -- errors ----------------------------------------------------------------------------

    def _where(self, key: str = "") -> str:
        return f"gs://{self.config.bucket}/{key}"

    def _error(self, exc: BaseException, doing: str, key: str = "") -> StorageError:
        where = self._where(key)
        status = 0
        message = ""
        if isinstance(exc, gexc.RetryError) and exc.cause is not None:
            return self._error(exc.cause, doing, key)  # what the last attempt got says what to fix
        if isinstance(exc, gexc.RetryError):
            return StorageError(f"gcs: {doing} {where} failed: retries exhausted")
        if isinstance(exc, gexc.GoogleAPICallError):
            status = int(exc.code or 0)
            message = str(exc.message or "")
        elif isinstance(exc, media_errors.InvalidResponse):
            status = int(getattr(exc.response, "status_code", 0) or 0)
            message = _json_error_message(exc.response)
        elif isinstance(exc, media_errors.DataCorruption):
            return StorageError(f"gcs: {doing} {where}: the checksum the server computed differs from what was sent")
        elif isinstance(exc, requests.RequestException | google.auth.exceptions.TransportError | OSError):
            return StorageError(f"gcs: {doing} {where} failed: connection lost ({type(exc).__name__})")
        elif isinstance(exc, google.auth.exceptions.GoogleAuthError):
            return StorageError(f"gcs: {doing} {where} failed: credentials refused ({type(exc).__name__})")
        else:
            return StorageError(f"gcs: {doing} {where} failed: {type(exc).__name__}")
        first = (message.splitlines() or [""])[0][:200]
        if status == 404:
            # objects.list and an upload's start name no object: their 404 is the bucket's.
            if doing in ("list", "upload") or "specified bucket does not exist" in message.lower():
                return StorageError(f"gcs: bucket {self.config.bucket!r} does not exist ({doing})")
            return StorageNotFound(f"{where} does not exist")
        if status == 412:
            return StorageExists(f"{where} already exists")
        if status == 403 and "retention" in message.lower():
            return StorageRetained(f"{where} is under the bucket's retention policy; not deleted ({first})")
        if status in (401, 403):
            return StorageError(f"gcs: permission denied to {doing} {where} (HTTP {status}: {first})")
        if status == 429:
            return StorageError(f"gcs: {doing} {where} was rate-limited or over quota (HTTP 429); retries exhausted")
        return StorageError(f"gcs: {doing} {where} failed: HTTP {status}" + (f": {first}" if first else ""))

    @staticmethod
    def _sdk_error(exc: BaseException) -> bool:
        return isinstance(
            exc,
            gexc.GoogleAPIError
            | media_errors.InvalidResponse
            | media_errors.DataCorruption
            | requests.RequestException
            | google.auth.exceptions.GoogleAuthError,
        )

    # -- Storage ---------------------------------------------------------------------------

    def ensure_folder(self, path: str) -> Folder:
        prefix = folder_prefix(self.config.prefix, path)
        try:
            # objects.list (roles/storage.objectViewer): proves the bucket exists and is ours,
            # without storage.buckets.get, which the runtime account is not given.
            list(self.client.list_blobs(self.bucket, prefix=prefix + "/", max_results=1, timeout=self._timeout))
        except Exception as exc:
            if self._sdk_error(exc):
                raise self._error(exc, "list", prefix + "/") from None
            raise
        return Folder(id=prefix, path=self._where(prefix + "/"))

    @property
    def _timeout(self) -> float:
        return self.config.timeout_seconds

    def subfolder(self, folder: Folder, name: str, create: bool = True) -> Folder:
        # A bucket has no folders: the child is a longer key prefix, nothing to create.
        key = object_key(folder.id, name)
        return Folder(id=key, path=self._where(key + "/"))

    def _file(self, blob: Any) -> StoredFile:
        md5 = base64.b64decode(blob.md5_hash).hex() if blob.md5_hash else None
        return StoredFile(
            id=blob.name,
            name=blob.name.rsplit("/", 1)[-1],
            size=int(blob.size or 0),
            path=self._where(blob.name),
            modified=blob.updated,
            md5=md5,
        )

    def list(self, folder: Folder) -> list[StoredFile]:
        try:
            blobs = self.client.list_blobs(self.bucket, prefix=folder.id + "/", delimiter="/", timeout=self._timeout)
            return [self._file(b) for b in blobs]
        except Exception as exc:
            if self._sdk_error(exc):
                raise self._error(exc, "list", folder.id + "/") from None
            raise

    def discard_incomplete(self, folder: Folder) -> int:
        # An unfinalised resumable session is not an object and cannot be listed: nothing to do.
        return 0

    def put(self, folder: Folder, name: str, chunks: Iterable[bytes]) -> StoredFile:
        key = object_key(folder.id, name)
        with contextlib.suppress(StorageNotFound):
            self.stat(key)
            raise StorageExists(f"{self._where(key)} already exists")
        md5 = hashlib.md5(usedforsecurity=False)
        crc = google_crc32c.Checksum()
        total = 0
        blob = self.bucket.blob(key, chunk_size=self.config.chunk_size)
        doing = "upload"
        writer: Any = None
        try:
            writer = blob.open(
                "wb",
                chunk_size=self.config.chunk_size,
                content_type=content_type(name),
                if_generation_match=0,
                checksum="crc32c",  # the library compares it with the server's when finalising
                retry=self.retry,
                timeout=self._timeout,
            )
            for chunk in chunks:
                md5.update(chunk)
                crc.update(chunk)
                total += len(chunk)
                writer.write(chunk)
            doing = "finalise"
            writer.close()
        except BaseException as exc:
            if writer is not None and not writer.closed:
                with contextlib.suppress(Exception):
                    writer.terminate()  # cancel the session: it never becomes an object
            if not self._sdk_error(exc):
                raise  # the dump's own failure
            error = self._error(exc, doing, key)
            if doing == "finalise":
                error = self._remove_if_created(key, error)
            raise error from None
        stored = self._stat_blob(key)
        sent_md5 = base64.b64encode(md5.digest()).decode()
        sent_crc = base64.b64encode(crc.digest()).decode()
        if stored.md5_hash not in (None, sent_md5) or stored.crc32c not in (None, sent_crc) or stored.size != total:
            raise self._remove_if_created(
                key, StorageError(f"gcs: {self._where(key)} differs from what was streamed (size, MD5 or CRC32C)")
            )
        return StoredFile(**{**self._file(stored).__dict__, "md5": md5.hexdigest()})

    def _remove_if_created(self, key: str, error: StorageError) -> StorageError:
        """After a failed or wrong finalisation: the object, if it exists, is ours (we checked
        the name was free and wrote with ifGenerationMatch=0). Remove it; say so if we cannot."""
        try:
            self.delete(key)
        except StorageNotFound:
            return error
        except StorageError as exc:
            return StorageError(f"{error}; the object it left could not be removed: {exc}")
        return error

    def _stat_blob(self, file_id: str) -> Any:
        if not file_id or file_id.endswith("/"):
            raise StorageNotFound(f"{self._where(file_id)} does not exist")
        try:
            blob = self.bucket.get_blob(file_id, timeout=self._timeout, retry=self.retry)
        except Exception as exc:
            if self._sdk_error(exc):
                raise self._error(exc, "read", file_id) from None
            raise
        if blob is None:
            raise StorageNotFound(f"{self._where(file_id)} does not exist")
        return blob

    def stat(self, file_id: str) -> StoredFile:
        return self._file(self._stat_blob(file_id))

    def open(self, file_id: str) -> Iterator[bytes]:
        blob = self._stat_blob(file_id)  # StorageNotFound now, not at the first chunk
        return self._ranges(blob, file_id, 0, int(blob.size or 0))

    def open_range(self, file_id: str, offset: int, length: int) -> Iterator[bytes]:
        blob = self._stat_blob(file_id)
        return self._ranges(blob, file_id, offset, offset + length)

    def _ranges(self, blob: Any, file_id: str, offset: int, stop: int) -> Iterator[bytes]:
        size, generation = int(blob.size or 0), blob.generation

        def chunks() -> Iterator[bytes]:
            at = offset
            while at < stop:
                end = min(at + READ_CHUNK, stop) - 1
                if at >= size:
                    raise StorageError(f"gcs: {self._where(file_id)} ended at {size} of {stop} bytes")
                try:
                    # Pinned to the generation read above: every range comes from the same object.
                    data = blob.download_as_bytes(
                        start=at,
                        end=end,
                        if_generation_match=generation,
                        checksum=None,  # a range has no whole-object checksum; restore checks the MD5
                        timeout=self._timeout,
                        retry=self.retry,
                    )
                except Exception as exc:
                    if self._sdk_error(exc):
                        raise self._error(exc, "read", file_id) from None
                    raise
                if not data:
                    raise StorageError(f"gcs: {self._where(file_id)} ended at {at} of {size} bytes")
                if len(data) > end + 1 - at:  # not the range asked for: its bytes are not those
                    raise StorageError(f"gcs: {self._where(file_id)}: more bytes than the range {at}-{end} asked for")
                at += len(data)
                yield data

        return chunks()

    def delete(self, file_id: str) -> None:
        blob = self._stat_blob(file_id)
        until: datetime | None = blob.retention_expiration_time
        try:
            blob.delete(timeout=self._timeout, retry=self.retry)
        except Exception as exc:
            if not self._sdk_error(exc):
                raise
            error = self._error(exc, "delete", file_id)
            if isinstance(error, StorageRetained) and until is not None:
                error = StorageRetained(
                    f"{self._where(file_id)} is retained by the bucket's retention policy until"
                    f" {until:%Y-%m-%d %H:%M} UTC; not deleted",
                    until=until,
                )
            raise error from None
