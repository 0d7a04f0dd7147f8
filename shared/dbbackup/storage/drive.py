"""The Google Drive backend (``BACKUP_STORAGE=google_drive``), on google-api-python-client.

Every Google import of the project lives here (and nowhere in the core), and this module is
imported lazily by ``make_storage``. Google errors become StorageError / StorageNotFound /
StorageExists inside this module; their messages pass through ``_scrub`` so no key, refresh
token or access token reaches a log row, an e-mail or an HTTP answer.

Uploads stream the gzip output into one resumable upload session, chunk by chunk: only the
current chunk (plus one piece of look-ahead) is held in memory, whatever the dump's size. The
dump cannot be replayed, so a chunk that fails is retried from the offset the server reports
(the client library's ``Content-Range: bytes */*`` status query), and when that is exhausted
the backup fails and the unfinished session is abandoned: Drive never shows a partial file.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import random
import re
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from typing import Any, TypeVar

import google.auth.exceptions
import httplib2
from google.oauth2 import credentials as user_credentials
from google.oauth2 import service_account
from google_auth_httplib2 import AuthorizedHttp
from googleapiclient.discovery import build_from_document
from googleapiclient.discovery_cache import get_static_doc
from googleapiclient.errors import HttpError
from googleapiclient.http import HttpRequest, MediaIoBaseDownload, MediaUpload

from dbbackup.core import folder_path, naming
from dbbackup.core.ports import Folder, Quota, StoredFile
from dbbackup.errors import ConfigError, StorageError, StorageExists, StorageNotFound
from dbbackup.redact import MASK, redact
from dbbackup.storage.drive_config import SERVICE_ACCOUNT, DriveConfig

SCOPES = ["https://www.googleapis.com/auth/drive"]
FOLDER_MIME = "application/vnd.google-apps.folder"
FILE_FIELDS = "id,name,size,md5Checksum,modifiedTime,mimeType,trashed,driveId"
RATE_LIMIT_REASONS = {"rateLimitExceeded", "userRateLimitExceeded"}
PROBE_BYTES = 1024
MAX_BACKOFF_SECONDS = 30.0
_FILE_ID = re.compile(r"^[A-Za-z0-9_-]{1,200}$")
# Access tokens (ya29.…) and any bearer credential a library might echo back.
_TOKENS = re.compile(r"(ya29\.[A-Za-z0-9._-]+|(?i:bearer)\s+[A-Za-z0-9._~+/=-]+)")

T = TypeVar("T")


def quote(value: str) -> str:
    """A Drive query string literal. Drive's search guide: escape ' and \\ with a backslash."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


class _StreamingMedia(MediaUpload):
    """A MediaUpload over an iterator that can be read once.

    The library asks for ``getbytes(offset, chunksize)`` where ``offset`` is what the server has
    acknowledged; bytes before it are released, so memory is one chunk plus one source piece.
    ``size()`` stays unknown (``*``) until the source is exhausted: the upload is finalised only
    after the dump stream ended without raising (pg_dump exited 0, marker seen)."""

    def __init__(self, chunks: Iterable[bytes], chunk_size: int, media_type: str = "application/gzip") -> None:
        super().__init__()
        self._media_type = media_type
        self._chunks = iter(chunks)
        self._chunk_size = chunk_size
        self._buffer = bytearray()
        self._start = 0  # stream offset of _buffer[0]
        self.total = 0  # bytes taken from the source so far
        self.exhausted = False
        self.failure: BaseException | None = None  # what the source raised: the dump's failure, not Drive's
        self._md5 = hashlib.md5(usedforsecurity=False)
        self.head = b""  # the first bytes, compared with the download probe

    @property
    def md5(self) -> str:
        return self._md5.hexdigest()

    def chunksize(self) -> int:
        return self._chunk_size

    def mimetype(self) -> str:
        return self._media_type

    def size(self) -> int | None:
        return self.total if self.exhausted else None

    def resumable(self) -> bool:
        return True

    def has_stream(self) -> bool:
        return False  # the library then calls getbytes(), which we can serve from the window

    def fill(self, begin: int) -> None:
        """Release bytes before ``begin`` and read one byte past the next full chunk, so the last
        chunk is sent with the total size (a final empty chunk is malformed for the library:
        google-api-python-client issue #1801)."""
        self._release(begin)
        self._read_until(begin + self._chunk_size + 1)

    def getbytes(self, begin: int, length: int) -> bytes:
        self._release(begin)
        self._read_until(begin + length)
        offset = begin - self._start
        return bytes(self._buffer[offset : offset + length])

    def _release(self, begin: int) -> None:
        if begin < self._start:
            # Only possible if Drive forgot bytes it had acknowledged; the dump cannot be rewound.
            raise StorageError(
                f"Google Drive asked to resend bytes from offset {begin}, already released after it"
                f" acknowledged {self._start}; the upload cannot continue"
            )
        drop = begin - self._start
        if drop:
            del self._buffer[:drop]
            self._start = begin

    def _read_until(self, end: int) -> None:
        while not self.exhausted and self.total < end:
            try:
                piece = next(self._chunks)
            except StopIteration:
                self.exhausted = True
                break
            except BaseException as exc:
                self.failure = exc
                raise
            if not piece:
                continue
            self._md5.update(piece)
            self._buffer += piece
            self.total += len(piece)
            if len(self.head) < PROBE_BYTES:
                self.head += bytes(piece[: PROBE_BYTES - len(self.head)])


class _Sink:
    """The file object MediaIoBaseDownload writes to; drained after every chunk."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def write(self, data: bytes) -> int:
        self._parts.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        data = b"".join(self._parts)
        self._parts.clear()
        return data


def _error_reasons(exc: HttpError) -> tuple[set[str], str]:
    """Drive's error ``reason`` codes and message from a JSON error body."""
    try:
        error = json.loads(exc.content.decode("utf-8", "replace"))["error"]
        reasons = {e.get("reason", "") for e in error.get("errors", []) if isinstance(e, dict)}
        return reasons, str(error.get("message", ""))
    except (ValueError, KeyError, TypeError, AttributeError):
        return set(), ""


def _retryable(exc: BaseException) -> bool:
    """5xx, 429, 403 rate limits and transport failures (reset, timeout, refused): worth another
    try. Everything else (404, 401 after a refresh, quota, bad request) will not get better."""
    if isinstance(exc, HttpError):
        status = exc.resp.status
        if status >= 500 or status == 429:
            return True
        return status == 403 and bool(_error_reasons(exc)[0] & RATE_LIMIT_REASONS)
    return isinstance(
        exc,
        OSError | http.client.HTTPException | httplib2.ServerNotFoundError | google.auth.exceptions.TransportError,
    )


class DriveStorage:
    """Storage on Google Drive. Folder ids are Drive ids; file ids are Drive file ids."""

    def __init__(
        self,
        config: DriveConfig,
        sleep: Callable[[float], None] = time.sleep,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.config = config
        self._sleep = sleep
        self._rand = rand
        self._secrets = config.secrets
        info = config.credentials_info
        try:
            if config.kind == SERVICE_ACCOUNT:
                creds: Any = service_account.Credentials.from_service_account_info(
                    info, scopes=SCOPES, subject=config.subject
                )
            else:
                creds = user_credentials.Credentials.from_authorized_user_info(info, scopes=SCOPES)
                if info.get("token_uri"):
                    # from_authorized_user_info always sets Google's token endpoint, ignoring the
                    # JSON's token_uri (google-auth 2.63); the JSON's own endpoint must win.
                    creds = creds.with_token_uri(info["token_uri"])
        except (ValueError, KeyError) as exc:
            # google-auth's messages name fields, never values; scrub anyway.
            raise ConfigError(f"GOOGLE_DRIVE_CREDENTIALS cannot be used: {self._scrub(str(exc))}") from None
        transport = httplib2.Http(timeout=config.timeout_seconds)
        # httplib2 treats 308 as a redirect; for resumable uploads it means "resume incomplete".
        transport.redirect_codes = transport.redirect_codes - {308}
        self._http = AuthorizedHttp(creds, http=transport)
        # The static discovery document shipped with the client: no discovery fetch at run time.
        # Its rootUrl is replaced (client_options' api_endpoint would leave the upload URL on https
        # and the old host path, as checked against a fake) so API and upload calls both follow
        # GOOGLE_DRIVE_ROOT_URL. With the default root this is exactly build('drive', 'v3').
        doc = json.loads(get_static_doc("drive", "v3"))
        doc["rootUrl"] = config.root_url
        doc["baseUrl"] = config.root_url + doc["servicePath"]
        self._service = build_from_document(doc, http=self._http)
        self._files = self._service.files()
        self._drive_of: dict[str, str | None] = {}  # folder id -> shared drive id (None: My Drive)

    # ---- errors -------------------------------------------------------------------------

    def _scrub(self, text: str) -> str:
        return _TOKENS.sub(MASK, redact(text, self._secrets))

    def _quota_message(self) -> str:
        if self.config.kind == SERVICE_ACCOUNT and not self.config.subject:
            email = self.config.credentials_info.get("client_email", "the service account")
            return (
                f"Google Drive: the service account {email} has no storage quota of its own, so it cannot"
                " store files in a My Drive. Use a folder in a Shared drive the service account is a member"
                " of (Content manager): backup_folder_path SharedDrives/<drive name>/... or id:<folderId>;"
                " or set GOOGLE_DRIVE_SUBJECT (domain-wide delegation) to act as a user; or use OAuth user"
                " credentials (an authorized_user JSON) for a personal My Drive"
            )
        return f"Google Drive: the storage quota of {self.config.principal} is full; free space or add storage"

    def _translate(self, exc: BaseException, what: str) -> StorageError:
        if isinstance(exc, StorageError):
            return exc
        if isinstance(exc, HttpError):
            status = exc.resp.status
            reasons, message = _error_reasons(exc)
            detail = f"HTTP {status}" + (f" {', '.join(sorted(reasons))}" if reasons else "")
            detail += f": {message}" if message else ""
            if "storageQuotaExceeded" in reasons:
                return StorageError(self._quota_message())
            if status == 404:
                return StorageNotFound(
                    self._scrub(f"{what}: not found on Google Drive, or not shared with {self.config.principal}")
                )
            if status == 401:
                return StorageError(self._scrub(f"Google Drive rejected the credentials during {what} ({detail})"))
            if status == 403:
                return StorageError(
                    self._scrub(
                        f"Google Drive refused {what} ({detail}); share the folder with"
                        f" {self.config.principal} as Editor (Content manager in a Shared drive)"
                    )
                )
            return StorageError(self._scrub(f"Google Drive {what} failed ({detail})"))
        if isinstance(exc, google.auth.exceptions.RefreshError):
            return StorageError(
                self._scrub(f"could not get a Google access token for {self.config.principal}: {exc.args[0]}")
            )
        return StorageError(self._scrub(f"Google Drive {what} failed: {type(exc).__name__}: {exc}"))

    def _backoff(self, failures: int) -> None:
        """Exponential backoff with jitter (0.5x-1.5x), so that retries of many clients spread."""
        base = min(self.config.retry_delay_seconds * 2 ** (failures - 1), MAX_BACKOFF_SECONDS)
        self._sleep(base * (0.5 + self._rand()))

    def _retrying(self, what: str, call: Callable[[], T]) -> T:
        """One Drive call with our retry policy (the library's own num_retries stays 0: its
        sleeps cannot be configured and it would stack with ours)."""
        failures = 0
        while True:
            try:
                return call()
            except Exception as exc:
                failures = self._retry_or_raise(exc, what, failures)

    def _retry_or_raise(self, exc: BaseException, what: str, failures: int) -> int:
        """After a failed attempt: raise when it is permanent or the last one allowed, else wait
        (backoff with jitter) and return the new failure count."""
        if not _retryable(exc):
            raise self._translate(exc, what) from None
        failures += 1
        if failures >= self.config.max_attempts:
            raise StorageError(f"{self._translate(exc, what)} (gave up after {failures} attempts)") from None
        self._backoff(failures)
        return failures

    def _execute(self, what: str, request: HttpRequest) -> Any:
        return self._retrying(what, lambda: request.execute(num_retries=0))

    # ---- folders ------------------------------------------------------------------------

    def _children(self, parent: str, drive_id: str | None, extra: str, fields: str) -> list[dict[str, Any]]:
        query = f"{quote(parent)} in parents and trashed = false" + (f" and {extra}" if extra else "")
        params: dict[str, Any] = {
            "q": query,
            "fields": f"nextPageToken, files({fields})",
            "pageSize": 1000,
            "spaces": "drive",
            "supportsAllDrives": True,
            "includeItemsFromAllDrives": True,
        }
        if drive_id:
            params.update(corpora="drive", driveId=drive_id)
        found: list[dict[str, Any]] = []
        token: str | None = None
        while True:
            page = self._execute("list", self._files.list(**params, **({"pageToken": token} if token else {})))
            found += page.get("files", [])
            token = page.get("nextPageToken")
            if not token:
                return found

    def _get(self, file_id: str, what: str, fields: str = FILE_FIELDS) -> dict[str, Any]:
        if not _FILE_ID.match(file_id):
            raise StorageNotFound(f"{file_id!r} is not a Google Drive file id")
        request = self._files.get(fileId=file_id, fields=fields, supportsAllDrives=True)
        found: dict[str, Any] = self._execute(what, request)
        return found

    def _start(self, segments: list[str]) -> tuple[str, str | None, str, list[str]]:
        """(folder id, shared drive id, human path so far, segments still to walk)."""
        head, rest = segments[0], segments[1:]
        if head.startswith("id:"):
            folder_id = head[3:]
            meta = self._get(folder_id, f"folder {head}", "id,name,mimeType,trashed,driveId")
            if meta.get("mimeType") != FOLDER_MIME or meta.get("trashed"):
                raise StorageError(f"backup_folder_path {head}: that Drive item is not a folder (or is in the trash)")
            return meta["id"], meta.get("driveId"), head, rest
        if head == "SharedDrives":
            if not rest:
                raise ConfigError("backup_folder_path SharedDrives needs a drive name: SharedDrives/<drive name>/...")
            name, rest = rest[0], rest[1:]
            drives: list[dict[str, Any]] = []
            token: str | None = None
            while True:
                request = self._service.drives().list(
                    q=f"name = {quote(name)}",
                    fields="nextPageToken, drives(id,name)",
                    pageSize=100,
                    **({"pageToken": token} if token else {}),
                )
                page = self._execute("list of Shared drives", request)
                drives += page.get("drives", [])
                if not (token := page.get("nextPageToken")):
                    break
            if not drives:
                raise StorageError(
                    f"Google Drive: no Shared drive named {name!r} that {self.config.principal} is a member of;"
                    " add it as a member (Content manager)"
                )
            if len(drives) > 1:
                ids = ", ".join(d["id"] for d in drives)
                raise StorageError(f"Google Drive: {len(drives)} Shared drives are named {name!r} (ids {ids}); use id:")
            return drives[0]["id"], drives[0]["id"], f"SharedDrives/{name}", rest
        # MyDrive/... is the account's My Drive; a path without a prefix means the same.
        rest = segments[1:] if head == "MyDrive" else segments
        root = self._get("root", "My Drive root", "id")
        return root["id"], None, "MyDrive", rest

    def ensure_folder(self, path: str) -> Folder:
        segments = folder_path.split(path)  # rejects bad paths before any call
        folder_id, drive_id, human, rest = self._start(segments)
        for name in rest:
            human = f"{human}/{name}"
            folder_id = self._child_folder(folder_id, drive_id, name, human)
        self._drive_of[folder_id] = drive_id
        return Folder(id=folder_id, path=human)

    def subfolder(self, folder: Folder, name: str, create: bool = True) -> Folder:
        if not name or "/" in name or name.startswith(".") or any(ord(c) < 32 for c in name):
            raise StorageError(f"invalid folder name {name!r}")
        drive_id = self._drive_id(folder.id)
        human = f"{folder.path}/{name}"
        child = self._child_folder(folder.id, drive_id, name, human, create)
        self._drive_of[child] = drive_id
        return Folder(id=child, path=human)

    def _child_folder(self, parent: str, drive_id: str | None, name: str, human: str, create: bool = True) -> str:
        """The folder ``name`` in ``parent``, created if missing. A create that failed in
        transit may still have happened, so every retry looks again before creating again."""
        failures = 0
        while True:
            found = self._children(parent, drive_id, f"name = {quote(name)} and mimeType = {quote(FOLDER_MIME)}", "id")
            if len(found) > 1:
                ids = ", ".join(f["id"] for f in found)
                raise StorageError(
                    f"Google Drive folder {human} exists {len(found)} times (ids {ids}); Drive allows duplicate"
                    " names and guessing would scatter backups: remove or rename all but one, or set"
                    " backup_folder_path to id:<folderId>"
                )
            if found:
                return str(found[0]["id"])
            if not create:
                raise StorageNotFound(f"Google Drive folder {human} does not exist")
            body = {"name": name, "mimeType": FOLDER_MIME, "parents": [parent]}
            try:
                created = self._files.create(body=body, fields="id", supportsAllDrives=True).execute(num_retries=0)
                return str(created["id"])
            except Exception as exc:
                if not _retryable(exc):
                    raise self._translate(exc, f"creating folder {human}") from None
                failures += 1
                if failures >= self.config.max_attempts:
                    raise StorageError(
                        f"{self._translate(exc, f'creating folder {human}')} (gave up after {failures} attempts)"
                    ) from None
                self._backoff(failures)

    def _drive_id(self, folder_id: str) -> str | None:
        if folder_id not in self._drive_of:
            self._drive_of[folder_id] = self._get(folder_id, "folder", "id,driveId").get("driveId")
        return self._drive_of[folder_id]

    # ---- files --------------------------------------------------------------------------

    @staticmethod
    def _stored(meta: dict[str, Any], path: str) -> StoredFile:
        modified = meta.get("modifiedTime")
        return StoredFile(
            id=str(meta["id"]),
            name=str(meta["name"]),
            size=int(meta.get("size", 0)),
            path=path,
            modified=datetime.fromisoformat(modified.replace("Z", "+00:00")) if modified else None,
            md5=meta.get("md5Checksum"),
        )

    def list(self, folder: Folder) -> list[StoredFile]:
        found = self._children(folder.id, self._drive_id(folder.id), f"mimeType != {quote(FOLDER_MIME)}", FILE_FIELDS)
        # Google Docs have no size/md5: they are not backups.
        return [self._stored(f, f"{folder.path}/{f['name']}") for f in found if "size" in f]

    def discard_incomplete(self, folder: Folder) -> int:
        # An abandoned resumable session is never a file (Drive expires it): nothing to remove.
        return 0

    def put(self, folder: Folder, name: str, chunks: Iterable[bytes]) -> StoredFile:
        if not name or "/" in name or any(ord(c) < 32 for c in name):
            raise StorageError(f"invalid file name {name!r}")
        if self._children(folder.id, self._drive_id(folder.id), f"name = {quote(name)}", "id"):
            raise StorageExists(f"{folder.path}/{name} already exists on Google Drive")
        media = _StreamingMedia(chunks, self.config.chunk_size, naming.media_type(name))
        request = self._files.create(
            body={"name": name, "parents": [folder.id], "mimeType": media.mimetype()},
            media_body=media,
            fields=FILE_FIELDS,
            supportsAllDrives=True,
        )
        meta = self._upload(request, media, f"{folder.path}/{name}")
        stored = self._stored(meta, f"{folder.path}/{name}")
        try:
            if stored.size != media.total or stored.md5 != media.md5:
                raise StorageError(
                    f"Google Drive stored {stored.size} bytes with MD5 {stored.md5} but {media.total} bytes with"
                    f" MD5 {media.md5} were sent; the bad file was deleted"
                )
            self._probe(stored, media.head)
        except BaseException:
            # A finalised but invalid file must not stay behind looking like a backup.
            with contextlib.suppress(Exception):
                self.delete(stored.id)
            raise
        return stored

    def _upload(self, request: HttpRequest, media: _StreamingMedia, label: str) -> dict[str, Any]:
        """Drive the resumable session to the end. Raises the source's own exception when the
        dump fails (the session is then abandoned, never finalised)."""
        failures = 0
        acknowledged = -1
        while True:
            progress = request.resumable_progress
            if progress != acknowledged:  # the server took more bytes: this chunk gets fresh attempts
                acknowledged, failures = progress, 0
            media.fill(progress)  # reads the dump; its exceptions propagate untouched
            try:
                if request.resumable_uri is not None and media.exhausted and progress == media.total > 0:
                    # Everything sent while the size was still unknown: finalise with bytes */N.
                    body = self._finalise(request, media.total)
                else:
                    _, body = request.next_chunk(num_retries=0)
                if body is not None:
                    return body
            except BaseException as exc:
                if media.failure is not None or not isinstance(exc, Exception):
                    raise
                what = f"upload of {label}" + (f" at byte {progress}" if progress else "")
                if isinstance(exc, HttpError) and exc.resp.status in (404, 410) and request.resumable_uri:
                    raise StorageError(
                        f"Google Drive upload session of {label} expired or was lost (HTTP {exc.resp.status})"
                        f" after {progress} bytes; the dump cannot be replayed, so this backup failed"
                    ) from None
                failures = self._retry_or_raise(exc, what, failures)

    @staticmethod
    def _finalise(request: HttpRequest, total: int) -> dict[str, Any] | None:
        """The documented empty finalising request (``Content-Range: bytes */N``), sent on the
        library's own session and authorised transport."""
        headers = {"Content-Range": f"bytes */{total}", "Content-Length": "0"}
        resp, content = request.http.request(request.resumable_uri, method="PUT", headers=headers)
        if resp.status in (200, 201):
            done: dict[str, Any] = request.postproc(resp, content)
            return done
        if resp.status == 308:
            # The server holds less than we thought: resend from its offset (the size is known now).
            ranges = resp.get("range")
            request.resumable_progress = int(ranges.split("-")[1]) + 1 if ranges else 0
            return None
        raise HttpError(resp, content, uri=request.resumable_uri)

    def _probe(self, stored: StoredFile, head: bytes) -> None:
        """Read the first bytes back (alt=media with a Range) to prove the file can be read."""
        if not head:
            return
        request = self._files.get_media(fileId=stored.id, supportsAllDrives=True)
        request.headers["range"] = f"bytes=0-{len(head) - 1}"
        data = self._execute("download probe", request)
        if data != head:
            raise StorageError(f"Google Drive download probe of {stored.path} returned other bytes than were written")

    def open(self, file_id: str) -> Iterator[bytes]:
        meta = self._get(file_id, f"file {file_id}")  # eager, so a missing file raises here
        if meta.get("mimeType") == FOLDER_MIME or meta.get("trashed"):
            raise StorageNotFound(f"file {file_id}: not a file on Google Drive (a folder, or in the trash)")
        return self._download(file_id)

    def _download(self, file_id: str) -> Iterator[bytes]:
        """Streamed in chunk-size Range requests; each range is retried on its own."""
        request = self._files.get_media(fileId=file_id, supportsAllDrives=True)
        sink = _Sink()
        downloader = MediaIoBaseDownload(sink, request, chunksize=self.config.chunk_size)
        done = False
        while not done:
            _, done = self._retrying(f"download of {file_id}", lambda: downloader.next_chunk(num_retries=0))
            if data := sink.take():
                yield data

    def open_range(self, file_id: str, offset: int, length: int) -> Iterator[bytes]:
        meta = self._get(file_id, f"file {file_id}")
        if meta.get("mimeType") == FOLDER_MIME or meta.get("trashed"):
            raise StorageNotFound(f"file {file_id}: not a file on Google Drive (a folder, or in the trash)")
        return self._download_range(file_id, offset, offset + length)

    def _download_range(self, file_id: str, offset: int, stop: int) -> Iterator[bytes]:
        """alt=media with a Range header (Drive honours it: 206 Partial Content), chunk by chunk,
        each retried on its own. An answer that is not the range asked for (a 200 with the whole
        file from a server or proxy that ignored the header, more bytes than asked) raises: its
        bytes would be taken for the range's."""
        at = offset
        while at < stop:
            end = min(at + self.config.chunk_size, stop)
            request = self._files.get_media(fileId=file_id, supportsAllDrives=True)
            request.headers["range"] = f"bytes={at}-{end - 1}"
            request.postproc = lambda resp, content: (int(resp.status), content)
            status, data = self._execute(f"download of {file_id}", request)
            if not isinstance(data, bytes) or not data:
                raise StorageError(f"file {file_id} ended at byte {at:,}, before {stop:,}")
            whole = status == 200 and at == 0 and len(data) == end  # the range is the whole file
            if not (status == 206 or whole) or len(data) > end - at:
                raise StorageError(
                    f"file {file_id}: the download of bytes {at:,}-{end - 1:,} answered {status} with"
                    f" {len(data):,} bytes, not that range (the Range header was ignored)"
                )
            at += len(data)
            yield data

    def stat(self, file_id: str) -> StoredFile:
        meta = self._get(file_id, f"file {file_id}")
        if meta.get("mimeType") == FOLDER_MIME or meta.get("trashed"):
            raise StorageNotFound(f"file {file_id}: not a file on Google Drive (a folder, or in the trash)")
        return self._stored(meta, str(meta["name"]))

    def quota(self) -> Quota:
        """The Drive account's space (``about.get(fields=storageQuota)``); ``limit`` is absent for
        unlimited storage. Files in a Shared drive count against the drive's organisation, not here."""
        about = self._execute("storage quota", self._service.about().get(fields="storageQuota"))
        quota = about.get("storageQuota", {}) if isinstance(about, dict) else {}

        def number(key: str) -> int | None:
            value = quota.get(key)
            return int(value) if isinstance(value, str) and value.isdigit() else None

        return Quota(used_bytes=number("usage"), limit_bytes=number("limit"))

    def delete(self, file_id: str) -> None:
        if not _FILE_ID.match(file_id):
            raise StorageNotFound(f"{file_id!r} is not a Google Drive file id")
        # files.delete skips the trash: a deleted backup (retention, a failed check) frees its space.
        self._execute(f"delete of {file_id}", self._files.delete(fileId=file_id, supportsAllDrives=True))
