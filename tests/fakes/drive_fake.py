"""A Google Drive v3 fake: a real HTTP server on 127.0.0.1, in memory, speaking the subset of
Drive's documented protocol that dbbackup's Drive backend uses, with fault injection.

The backend is pointed at it with nothing but GOOGLE_DRIVE_ROOT_URL and the credentials'
``token_uri``; the real google-auth and google-api-python-client do the talking.

Implemented (checked against Google's documentation; "CHOICE" marks where the docs were silent
and this fake had to pick a behaviour):
- OAuth token endpoint ``POST /token``: the JWT-bearer grant (service accounts, RS256, ``sub``
  for domain-wide delegation) and the refresh-token grant (authorized-user JSON); tokens expire.
- ``GET /drive/v3/files`` with the ``q`` subset: ``name``/``mimeType`` ``=``/``!=``,
  ``'<id>' in parents``, ``trashed = true|false``, ``and``/``or``/``not``/parentheses; string
  literals escape ``'`` and ``\\`` with a backslash (Drive search guide). ``corpora``,
  ``driveId``, ``includeItemsFromAllDrives``, ``supportsAllDrives``, paging, ``fields``.
- ``GET /drive/v3/drives`` (``q`` on ``name``) for Shared drives the caller is a member of.
- ``POST /drive/v3/files`` (metadata-only create, folders), ``GET /drive/v3/files/{id}`` with
  ``fields`` and ``alt=media`` (``Range``), ``DELETE /drive/v3/files/{id}`` (no trash).
- Resumable upload: ``POST /upload/drive/v3/files?uploadType=resumable`` answers 200 with a
  ``Location``; ``PUT`` chunks with ``Content-Range: bytes a-b/N|*`` answer ``308`` with
  ``Range: bytes=0-x`` until the total is known and received, then 200 with the file; ``PUT``
  with ``bytes */N|*`` and no body is the status query (and finalises when N bytes are held).
- ``GET /drive/v3/about`` with ``fields=storageQuota``: ``usage`` (the sizes of the files the
  caller owns outside Shared drives) and ``limit`` (``quota_limit``; CHOICE: left out when None,
  as Drive does for unlimited storage), int64 as strings.
- Items in a Shared drive are invisible (404) unless ``supportsAllDrives=true``.
- A service account (no delegation) creating a file outside a Shared drive gets 403
  ``storageQuotaExceeded`` with Google's message.

Faults (``fail``, ``drop``, ``slow``, ``expire_token``, ``lose_session`` on the Nth matching
request; ``corrupt_next_upload``) let tests prove retries and clean failures.

Run on its own: ``python tests/fakes/drive_fake.py --port 8765`` prints the environment to
point ``dbbackup`` at it.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import re
import secrets
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import parse_qs

if __package__:
    from ._http import Exchange, FakeServer, Fault, Refused, Reply
else:  # run as a script (README: "python tests/fakes/drive_fake.py"): the package is beside it
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from fakes._http import Exchange, FakeServer, Fault, Refused, Reply

FOLDER = "application/vnd.google-apps.folder"
JSON = "application/json; charset=UTF-8"
GRANULE = 256 * 1024
HEAD_KEPT = 64 * 1024  # bytes of each upload kept with keep_content=False
DRIVE_SCOPE = "https://www.googleapis.com/auth/drive"
GOOGLE_TOKEN_AUD = "https://oauth2.googleapis.com/token"
QUOTA_MESSAGE = (
    "Service Accounts do not have storage quota. Leverage shared drives"
    " (https://developers.google.com/workspace/drive/api/guides/about-shareddrives), or use OAuth delegation"
    " (http://support.google.com/a/answer/7281227) instead."
)

_KEY_CACHE: dict[str, Any] = {}


def _rsa_key() -> Any:
    """One RSA key per process: generating one costs ~0.1 s and tests need many accounts."""
    if "key" not in _KEY_CACHE:
        from cryptography.hazmat.primitives.asymmetric import rsa

        _KEY_CACHE["key"] = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return _KEY_CACHE["key"]


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class ApiError(Refused):
    """An error answered in Google's JSON error format."""

    def __init__(self, code: int, message: str, reason: str = "invalid", domain: str = "global", **extra: Any) -> None:
        err = {"message": message, "domain": domain, "reason": reason, **extra}
        super().__init__(
            Reply.json(code, {"error": {"code": code, "message": message, "errors": [err]}}, content_type=JSON)
        )


# ---- the q grammar subset ------------------------------------------------------------------


class QueryError(ValueError):
    pass


_TOKEN = re.compile(r"\s*(?:(?P<str>'(?:[^'\\]|\\.)*')|(?P<op>!=|=|\(|\))|(?P<word>[A-Za-z]+))")


def _tokens(q: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    while pos < len(q.rstrip()):
        m = _TOKEN.match(q, pos)
        if not m:
            raise QueryError(f"cannot parse q at {pos}")
        pos = m.end()
        if m["str"] is not None:
            raw = m["str"][1:-1]
            # Drive: only \' and \\ are escapes (CHOICE: any other backslash sequence is invalid).
            if not re.fullmatch(r"(?:[^\\]|\\['\\])*", raw):
                raise QueryError("bad escape")
            out.append(("str", re.sub(r"\\(.)", r"\1", raw)))
        elif m["op"] is not None:
            out.append(("op", m["op"]))
        else:
            out.append(("word", m["word"]))
    return out


Predicate = Callable[[dict[str, Any]], bool]


class _Parser:
    """expr := and ('or' and)*; and := unary ('and' unary)*; unary := 'not' unary | '(' expr ')' | cmp"""

    def __init__(self, q: str, fields: tuple[str, ...]) -> None:
        self.toks, self.i, self.fields = _tokens(q), 0, fields

    def peek(self) -> tuple[str, str] | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self) -> tuple[str, str]:
        tok = self.peek()
        if tok is None:
            raise QueryError("unexpected end of q")
        self.i += 1
        return tok

    def parse(self) -> Predicate:
        pred = self.expr()
        if self.peek() is not None:
            raise QueryError("trailing input in q")
        return pred

    def expr(self) -> Predicate:
        parts = [self.conj()]
        while self.peek() == ("word", "or"):
            self.take()
            parts.append(self.conj())
        return parts[0] if len(parts) == 1 else (lambda f: any(p(f) for p in parts))

    def conj(self) -> Predicate:
        parts = [self.unary()]
        while self.peek() == ("word", "and"):
            self.take()
            parts.append(self.unary())
        return parts[0] if len(parts) == 1 else (lambda f: all(p(f) for p in parts))

    def unary(self) -> Predicate:
        tok = self.take()
        if tok == ("word", "not"):
            inner = self.unary()
            return lambda f: not inner(f)
        if tok == ("op", "("):
            inner = self.expr()
            if self.take() != ("op", ")"):
                raise QueryError("missing )")
            return inner
        if tok[0] == "str":  # 'id' in parents
            if self.take() != ("word", "in") or self.take() != ("word", "parents") or "parents" not in self.fields:
                raise QueryError("expected: 'id' in parents")
            value = tok[1]
            return lambda f: value in f.get("parents", [])
        if tok[0] == "word" and tok[1] in self.fields and tok[1] != "parents":
            name = tok[1]
            kind, op = self.take()
            if kind != "op" or op not in ("=", "!="):
                raise QueryError(f"unsupported operator after {name}")
            vkind, value = self.take()
            if name == "trashed":
                if vkind != "word" or value not in ("true", "false"):
                    raise QueryError("trashed takes true or false")
                want: Any = value == "true"
            elif vkind != "str":
                raise QueryError(f"{name} takes a quoted string")
            else:
                want = value
            if op == "=":
                return lambda f: f.get(name) == want
            return lambda f: f.get(name) != want
        raise QueryError(f"unexpected {tok[1]!r} in q")


def parse_query(q: str, fields: tuple[str, ...] = ("name", "mimeType", "trashed", "parents")) -> Predicate:
    return _Parser(q, fields).parse()


def _parse_fields(spec: str) -> dict[str, Any]:
    """``nextPageToken, files(id,name)`` -> nested dict (None = whole value)."""
    out: dict[str, Any] = {}
    i = 0
    while i < len(spec):
        m = re.match(r"\s*([A-Za-z0-9*]+)\s*", spec[i:])
        if not m:
            raise QueryError("bad fields")
        name, i = m.group(1), i + m.end()
        if i < len(spec) and spec[i] == "(":
            depth, j = 1, i + 1
            while depth:
                if j >= len(spec):
                    raise QueryError("bad fields")
                depth += {"(": 1, ")": -1}.get(spec[j], 0)
                j += 1
            out[name] = _parse_fields(spec[i + 1 : j - 1])
            i = j
        else:
            out[name] = None
        m = re.match(r"\s*,?", spec[i:])
        i += m.end() if m else 0
    return out


def _select(value: Any, spec: dict[str, Any] | None) -> Any:
    if spec is None or "*" in spec:
        return value
    if isinstance(value, list):
        return [_select(v, spec) for v in value]
    return {k: _select(value[k], sub) for k, sub in spec.items() if k in value}


# ---- state ---------------------------------------------------------------------------------


@dataclass
class FakeFile:
    id: str
    name: str
    mime: str
    parents: list[str]
    owner: str
    drive_id: str | None
    content: bytes | None = None
    size: int = 0
    md5: str = ""
    created: str = field(default_factory=_now_rfc3339)
    trashed: bool = False
    shared_with: set[str] = field(default_factory=set)

    def resource(self) -> dict[str, Any]:
        res: dict[str, Any] = {
            "kind": "drive#file",
            "id": self.id,
            "name": self.name,
            "mimeType": self.mime,
            "parents": list(self.parents),
            "trashed": self.trashed,
            "createdTime": self.created,
            "modifiedTime": self.created,
        }
        if self.mime != FOLDER:
            res["size"] = str(self.size)  # int64 travels as a string in Drive's JSON
            res["md5Checksum"] = self.md5
        if self.drive_id:
            res["driveId"] = self.drive_id
        return res


@dataclass
class Token:
    principal: str
    kind: str  # service_account | user
    expires: float


@dataclass
class Session:
    id: str
    principal: str
    kind: str
    name: str
    parent: str
    mime: str
    fields: str | None
    declared: int | None
    parts: list[bytes] = field(default_factory=list)
    received: int = 0
    md5: Any = field(default_factory=lambda: hashlib.md5(usedforsecurity=False))
    finalised: str | None = None  # file id
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, str]
    content_range: str | None
    status: int = 0


class DriveFake(FakeServer):
    methods = ("GET", "POST", "PUT", "DELETE")
    protocol_version = "HTTP/1.1"
    server_version = "DriveFake/1"
    poll_interval = 0.02  # shutdown() waits for it, once per test

    def __init__(self, host: str = "127.0.0.1", port: int = 0, keep_content: bool = True) -> None:
        super().__init__(host, port)
        self.keep_content = keep_content  # False: size, MD5 and the first 64 KiB only (huge uploads)
        self.files: dict[str, FakeFile] = {}
        self.drives: dict[str, tuple[str, set[str]]] = {}  # id -> (name, members)
        self.roots: dict[str, str] = {}  # principal -> My Drive root id
        self.service_accounts: dict[str, tuple[Any, bool]] = {}  # email -> (public key, delegation allowed)
        self.oauth: dict[str, tuple[str, str, str]] = {}  # refresh token -> (client id, secret, user)
        self.tokens: dict[str, Token] = {}
        self.sessions: dict[str, Session] = {}
        self.grants: list[str] = []  # principals that obtained a token, in order
        self.token_lifetime = 3600
        self.page_size_cap = 1000
        self.corrupt_uploads = 0
        self.quota_limit: int | None = 15 << 30  # a free account's 15 GiB

    @property
    def url(self) -> str:
        return super().url + "/"  # GOOGLE_DRIVE_ROOT_URL, as the client library joins it

    @property
    def token_uri(self) -> str:
        return self.url + "token"

    @property
    def log(self) -> list[Seen]:
        """Every request, as received, with the status it got (-1: dropped without an answer)."""
        with self.lock:
            return [Seen(e.method, e.path, e.query, e.headers.get("Content-Range"), e.status) for e in self.exchanges]

    def respond(self, exchange: Exchange) -> Reply:
        return _Api(self, exchange).route()

    # -- set-up helpers ----------------------------------------------------------------------

    def _new_id(self) -> str:
        return secrets.token_urlsafe(24).replace("-", "x").replace("_", "y")

    def add_user(self, email: str) -> str:
        """A Google account with its own My Drive; returns the root folder id."""
        with self.lock:
            if email not in self.roots:
                root = FakeFile(self._new_id(), "My Drive", FOLDER, [], email, None)
                self.files[root.id] = root
                self.roots[email] = root.id
            return self.roots[email]

    def service_account_key(self, email: str = "backup@project.iam.gserviceaccount.com", delegation: bool = False):
        """A service account key JSON (dict) whose token_uri is this fake."""
        from cryptography.hazmat.primitives import serialization

        key = _rsa_key()
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()
        with self.lock:
            self.service_accounts[email] = (key.public_key(), delegation)
        self.add_user(email)  # a service account has a (quota-less) My Drive of its own
        return {
            "type": "service_account",
            "project_id": "project",
            "private_key_id": secrets.token_hex(20),
            "private_key": pem,
            "client_email": email,
            "client_id": str(secrets.randbits(64)),
            "token_uri": self.token_uri,
        }

    def authorized_user(self, email: str = "owner@example.com") -> dict[str, str]:
        """An OAuth authorized-user JSON (client id/secret + refresh token) for ``email``."""
        client_id = f"{secrets.token_hex(8)}.apps.googleusercontent.com"
        client_secret = "GOCSPX-" + secrets.token_urlsafe(18)
        refresh = "1//" + secrets.token_urlsafe(40)
        with self.lock:
            self.oauth[refresh] = (client_id, client_secret, email)
        self.add_user(email)
        return {
            "type": "authorized_user",
            "client_id": client_id,
            "client_secret": client_secret,
            "refresh_token": refresh,
            "token_uri": self.token_uri,
        }

    def add_shared_drive(self, name: str, members: list[str]) -> str:
        with self.lock:
            drive_id = "0A" + self._new_id()[:17]
            self.drives[drive_id] = (name, set(members))
            # A Shared drive's root folder has the drive's id.
            self.files[drive_id] = FakeFile(drive_id, name, FOLDER, [], "", drive_id)
            return drive_id

    def add_folder(self, name: str, parent: str, owner: str) -> str:
        with self.lock:
            parent_file = self.files[parent]
            folder = FakeFile(self._new_id(), name, FOLDER, [parent], owner, parent_file.drive_id)
            self.files[folder.id] = folder
            return folder.id

    def share(self, file_id: str, email: str) -> None:
        with self.lock:
            self.files[file_id].shared_with.add(email)

    # -- faults -------------------------------------------------------------------------------

    def fail(self, status: int, nth: int = 1, method: str | None = None, path: str = "/", times: int = 1,
             reason: str = "backendError") -> Fault:  # fmt: skip
        """Answer the Nth matching request (and ``times``-1 more) with ``status``."""
        reply = ApiError(status, f"Injected failure ({status}).", reason).reply
        return self.arm(Fault(lambda _: reply, nth, times, method, path))

    def drop(self, nth: int = 1, method: str | None = "PUT", path: str = "/upload/", after_bytes: int = 0,
             times: int = 1) -> Fault:  # fmt: skip
        """Read ``after_bytes`` of the body, keep the whole 256 KiB units of it, then close the
        connection without an answer (CHOICE: Drive persists uploads in 256 KiB units)."""
        return self.arm(Fault(lambda e: self._drop(e, after_bytes), nth, times, method, path))

    def slow(self, seconds: float, nth: int = 1, method: str | None = None, path: str = "/", times: int = 1) -> Fault:
        """Handle the request, then wait ``seconds`` before answering."""

        def delay(exchange: Exchange) -> None:
            exchange.delay += seconds

        return self.arm(Fault(delay, nth, times, method, path))

    def expire_token(self, nth: int = 1, method: str | None = None, path: str = "/") -> Fault:
        """Expire every access token just before the Nth matching request (it gets a 401)."""

        def expire(_: Exchange) -> None:
            with self.lock:
                for token in self.tokens.values():
                    token.expires = 0

        return self.arm(Fault(expire, nth, 1, method, path))

    def lose_session(self, nth: int = 1, method: str | None = "PUT", path: str = "/upload/") -> Fault:
        """Forget every upload session just before the Nth matching request."""

        def forget(_: Exchange) -> None:
            with self.lock:
                self.sessions.clear()

        return self.arm(Fault(forget, nth, 1, method, path))

    def _drop(self, exchange: Exchange, after_bytes: int) -> NoReturn:
        """Take part of a chunk, keep its whole 256 KiB units, then cut the connection."""
        data = exchange.take(after_bytes)
        session = self.sessions.get(exchange.query.get("upload_id", ""))
        cr = _parse_range(exchange.headers.get("Content-Range"))
        if session is not None and cr is not None and cr[0] is not None and data:
            keep = len(data) // GRANULE * GRANULE
            with session.lock:
                if cr[0] == session.received and keep:
                    session.parts.append(data[:keep])
                    session.md5.update(data[:keep])
                    session.received += keep
        exchange.drop()

    def corrupt_next_upload(self) -> None:
        """Flip a byte of the next finalised upload (its md5Checksum then differs)."""
        with self.lock:
            self.corrupt_uploads += 1

    def corrupt_file(self, file_id: str) -> None:
        with self.lock:
            f = self.files[file_id]
            assert f.content is not None
            data = bytearray(f.content)
            data[len(data) // 2] ^= 0xFF
            f.content = bytes(data)
            f.md5 = hashlib.md5(f.content, usedforsecurity=False).hexdigest()

    # -- inspection -------------------------------------------------------------------------

    def children(self, folder_id: str) -> list[FakeFile]:
        with self.lock:
            return [f for f in self.files.values() if folder_id in f.parents and not f.trashed]

    def open_sessions(self) -> list[Session]:
        with self.lock:
            return [s for s in self.sessions.values() if s.finalised is None]

    def find(self, name: str) -> list[FakeFile]:
        with self.lock:
            return [f for f in self.files.values() if f.name == name]

    # -- semantics --------------------------------------------------------------------------

    def can_access(self, principal: str, f: FakeFile) -> bool:
        if f.drive_id:
            return principal in self.drives[f.drive_id][1]
        node: FakeFile | None = f
        while node is not None:
            if node.owner == principal or principal in node.shared_with:
                return True
            node = self.files.get(node.parents[0]) if node.parents else None
        return False

    def lookup(self, principal: str, file_id: str, all_drives: bool) -> FakeFile:
        if file_id == "root":
            file_id = self.roots.get(principal, "")
        f = self.files.get(file_id)
        # Drive answers 404 (not 403) for what the caller cannot see; Shared drive items are
        # invisible to callers that do not declare supportsAllDrives=true.
        if f is None or not self.can_access(principal, f) or (f.drive_id and not all_drives):
            raise ApiError(404, f"File not found: {file_id}.", "notFound", locationType="parameter",
                           location="fileId")  # fmt: skip
        return f

    def check_parent(self, token: Token, parent_id: str, all_drives: bool, is_folder: bool) -> FakeFile:
        parent = self.lookup(token.principal, parent_id, all_drives)
        if parent.mime != FOLDER:
            raise ApiError(400, "The specified parent is not a folder.", "invalidParent")
        if not parent.drive_id and not is_folder and token.kind == "service_account":
            # A service account owns what it creates; outside a Shared drive that needs quota it
            # does not have (Google's documented answer). CHOICE: folders use no quota.
            raise ApiError(403, QUOTA_MESSAGE, "storageQuotaExceeded", "usageLimits")
        return parent

    def finalise(self, session: Session) -> FakeFile:
        content = b"".join(session.parts)
        md5 = session.md5.hexdigest()
        with self.lock:
            parent = self.files[session.parent]
            if self.corrupt_uploads and session.received:
                self.corrupt_uploads -= 1
                data = bytearray(content)
                data[len(data) // 2] ^= 0xFF
                content = bytes(data)
                md5 = hashlib.md5(content, usedforsecurity=False).hexdigest()
            f = FakeFile(self._new_id(), session.name, session.mime, [session.parent], session.principal,
                         parent.drive_id, content, session.received, md5)  # fmt: skip
            self.files[f.id] = f
            session.finalised = f.id
            session.parts = []
            return f


# ---- HTTP ----------------------------------------------------------------------------------


class _Api:
    """One request's handling: the routes of Drive's protocol over the fake's state."""

    def __init__(self, fake: DriveFake, exchange: Exchange) -> None:
        self.fake = fake
        self.exchange = exchange
        self.headers = exchange.headers

    def _read_body(self) -> bytes:
        return self.exchange.body()

    def _json(self, status: int, obj: Any) -> Reply:
        return Reply.json(status, obj, content_type=JSON)

    def _auth(self) -> Token:
        header = self.headers.get("Authorization", "")
        token = self.fake.tokens.get(header[7:]) if header.startswith("Bearer ") else None
        if token is None or token.expires <= time.time():
            raise ApiError(401, "Request had invalid authentication credentials. Expected OAuth 2 access token,"
                           " login cookie or other valid authentication credential.", "authError",
                           location="Authorization", locationType="header")  # fmt: skip
        return token

    # -- routes -------------------------------------------------------------------------------

    def route(self) -> Reply:
        method, path, q = self.exchange.method, self.exchange.path, self.exchange.query
        if path == "/token" and method == "POST":
            return self._token()
        token = self._auth()
        all_drives = q.get("supportsAllDrives") == "true"
        if path == "/drive/v3/files" and method == "GET":
            return self._list(token, q, all_drives)
        if path == "/drive/v3/files" and method == "POST":
            return self._create(token, q, all_drives)
        if path == "/drive/v3/drives" and method == "GET":
            return self._drives(token, q)
        if path == "/drive/v3/about" and method == "GET":
            return self._about(token, q)
        m = re.fullmatch(r"/drive/v3/files/([^/]+)", path)
        if m and method == "GET":
            return self._get(token, m.group(1), q, all_drives)
        if m and method == "DELETE":
            with self.fake.lock:
                f = self.fake.lookup(token.principal, m.group(1), all_drives)
                doomed = [f.id]
                for other in list(self.fake.files.values()):  # a folder takes its descendants along
                    node = other
                    while node.parents and node.parents[0] in self.fake.files:
                        node = self.fake.files[node.parents[0]]
                        if node.id == f.id:
                            doomed.append(other.id)
                            break
                for file_id in doomed:
                    self.fake.files.pop(file_id, None)
            return Reply(204)
        if path == "/upload/drive/v3/files" and method == "POST":
            return self._initiate(token, q, all_drives)
        if path == "/upload/drive/v3/files" and method == "PUT":
            return self._chunk(q)
        raise ApiError(404, f"Not Found: {method} {path}", "notFound")

    def _token(self) -> Reply:
        form = {k: v[-1] for k, v in parse_qs(self._read_body().decode()).items()}
        grant = form.get("grant_type")
        if grant == "urn:ietf:params:oauth:grant-type:jwt-bearer":
            principal, kind = self._verify_jwt(form.get("assertion", ""))
        elif grant == "refresh_token":
            entry = self.fake.oauth.get(form.get("refresh_token", ""))
            if entry is None or entry[:2] != (form.get("client_id"), form.get("client_secret")):
                return self._json(
                    400, {"error": "invalid_grant", "error_description": "Token has been expired or revoked."}
                )
            principal, kind = entry[2], "user"
        else:
            return self._json(400, {"error": "unsupported_grant_type", "error_description": "Invalid grant_type."})
        if principal is None:
            return self._json(400, {"error": "invalid_grant", "error_description": kind})
        access = "ya29.fake-" + secrets.token_urlsafe(32)
        with self.fake.lock:
            self.fake.tokens[access] = Token(principal, kind, time.time() + self.fake.token_lifetime)
            self.fake.grants.append(principal)
        body = {"access_token": access, "expires_in": self.fake.token_lifetime, "token_type": "Bearer"}
        if grant == "refresh_token":
            body["scope"] = DRIVE_SCOPE
        return self._json(200, body)

    def _verify_jwt(self, assertion: str) -> tuple[str | None, str]:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        try:
            head, payload, sig = assertion.split(".")
            header = json.loads(_b64url_decode(head))
            claims = json.loads(_b64url_decode(payload))
        except ValueError:
            return None, "Invalid JWT."
        entry = self.fake.service_accounts.get(claims.get("iss", ""))
        if header.get("alg") != "RS256" or entry is None:
            return None, "Invalid JWT: unknown issuer or algorithm."
        public_key, delegation = entry
        try:
            public_key.verify(_b64url_decode(sig), f"{head}.{payload}".encode(), padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature:
            return None, "Invalid JWT Signature."
        now = time.time()
        iat, exp = claims.get("iat", now + 999), claims.get("exp", 0)
        # Google: a JWT assertion lives at most one hour; allow a minute of clock skew.
        # Google's service-account guide: "aud" is always https://oauth2.googleapis.com/token
        # (google-auth sends that constant even when token_uri points elsewhere).
        if claims.get("aud") not in (GOOGLE_TOKEN_AUD, self.fake.token_uri) or not (
            iat <= now + 60 and now - 60 < exp <= iat + 3600
        ):
            return None, "Invalid JWT: Token must be a short-lived token and in a reasonable timeframe."
        if DRIVE_SCOPE not in str(claims.get("scope", "")).split():
            return None, "Invalid JWT: no Drive scope."
        if sub := claims.get("sub"):
            if not delegation or sub not in self.fake.roots:
                return None, "Client is unauthorized to retrieve access tokens using this method."
            return sub, "user"
        return claims["iss"], "service_account"

    def _list(self, token: Token, q: dict[str, str], all_drives: bool) -> Reply:
        include_all = q.get("includeItemsFromAllDrives") == "true"
        corpora = q.get("corpora", "user")
        drive_id = q.get("driveId")
        if (include_all or drive_id) and not all_drives:
            raise ApiError(403, "The includeItemsFromAllDrives parameter can only be set when supportsAllDrives"
                           " is true.", "teamDrivesSupportRequired")  # fmt: skip
        if corpora == "drive" and (not drive_id or not include_all):
            raise ApiError(400, "The driveId parameter must be specified with corpora=drive and"
                           " includeItemsFromAllDrives=true.", "invalid")  # fmt: skip
        try:
            pred = parse_query(q["q"]) if q.get("q") else (lambda f: True)
            spec = (
                _parse_fields(q["fields"])
                if "fields" in q
                else {"files": {"kind": None, "id": None, "name": None, "mimeType": None}}
            )
        except QueryError:
            raise ApiError(400, "Invalid Value", "invalid", locationType="parameter", location="q") from None
        with self.fake.lock:
            items = []
            for f in self.fake.files.values():
                if not f.parents or not self.fake.can_access(token.principal, f):
                    continue
                # CHOICE (from the corpora docs): 'user' is My Drive + shared with me; Shared drive
                # items only with corpora=drive (that drive) or allDrives, and includeItemsFromAllDrives.
                if f.drive_id:
                    if not include_all or (corpora == "drive" and f.drive_id != drive_id) or corpora == "user":
                        continue
                elif corpora == "drive":
                    continue
                res = f.resource()
                if pred(res):
                    items.append(res)
        size = min(int(q.get("pageSize", 100)), 1000, self.fake.page_size_cap)
        start = int(q.get("pageToken", "0") or 0)
        page: dict[str, Any] = {
            "kind": "drive#fileList",
            "incompleteSearch": False,
            "files": items[start : start + size],
        }
        if start + size < len(items):
            page["nextPageToken"] = str(start + size)
        return self._json(200, _select(page, spec))

    def _about(self, token: Token, q: dict[str, str]) -> Reply:
        if "fields" not in q:
            raise ApiError(400, "The 'fields' parameter is required for this method.", "required", location="fields")
        with self.fake.lock:
            used = sum(f.size for f in self.fake.files.values() if f.owner == token.principal and not f.drive_id)
            quota = {"usage": str(used), "usageInDrive": str(used)}
            if self.fake.quota_limit is not None:
                quota["limit"] = str(self.fake.quota_limit)
        return self._json(200, _select({"kind": "drive#about", "storageQuota": quota}, _parse_fields(q["fields"])))

    def _drives(self, token: Token, q: dict[str, str]) -> Reply:
        try:
            pred = parse_query(q["q"], ("name",)) if q.get("q") else (lambda d: True)
            spec = _parse_fields(q["fields"]) if "fields" in q else None
        except QueryError:
            raise ApiError(400, "Invalid Value", "invalid", locationType="parameter", location="q") from None
        with self.fake.lock:
            found = [
                {"kind": "drive#drive", "id": drive_id, "name": name}
                for drive_id, (name, members) in self.fake.drives.items()
                if token.principal in members and pred({"name": name})
            ]
        return self._json(200, _select({"kind": "drive#driveList", "drives": found}, spec))

    def _create(self, token: Token, q: dict[str, str], all_drives: bool) -> Reply:
        meta = json.loads(self._read_body() or b"{}")
        parents = meta.get("parents") or ["root"]
        mime = meta.get("mimeType", "application/octet-stream")
        with self.fake.lock:
            parent = self.fake.check_parent(token, parents[0], all_drives, mime == FOLDER)
            f = FakeFile(self.fake._new_id(), meta.get("name", "Untitled"), mime, [parent.id], token.principal,
                         parent.drive_id, b"", 0, hashlib.md5(b"", usedforsecurity=False).hexdigest())  # fmt: skip
            self.fake.files[f.id] = f
        return self._json(200, self._fields(f.resource(), q))

    def _fields(self, res: dict[str, Any], q: dict[str, str]) -> dict[str, Any]:
        if "fields" not in q:
            return {k: res[k] for k in ("kind", "id", "name", "mimeType")}
        try:
            return _select(res, _parse_fields(q["fields"]))
        except QueryError:
            raise ApiError(400, "Invalid field selection", "invalidParameter") from None

    def _get(self, token: Token, file_id: str, q: dict[str, str], all_drives: bool) -> Reply:
        with self.fake.lock:
            f = self.fake.lookup(token.principal, file_id, all_drives)
        if q.get("alt") != "media":
            return self._json(200, self._fields(f.resource(), q))
        if f.mime == FOLDER or f.content is None:
            raise ApiError(403, "Only files with binary content can be downloaded.", "fileNotDownloadable")
        data, total = f.content, f.size
        # An absent or unparsable Range means the whole file (RFC 9110).
        m = re.fullmatch(r"bytes=(\d+)-(\d*)", (self.headers.get("Range") or "").strip())
        if not m:
            m = re.fullmatch(r"bytes=(\d+)-(\d*)", "bytes=0-")
            assert m is not None
            if total == 0:
                return Reply(200, b"", {"Content-Type": f.mime})
        first = int(m.group(1))
        last = min(int(m.group(2)) if m.group(2) else total - 1, total - 1)
        if first >= total:
            # CHOICE: RFC 9110 416 with bytes */total (the client library reads it for empty files).
            return Reply(416, b"", {"Content-Range": f"bytes */{total}"})
        if last >= len(data):
            raise ApiError(403, "This fake kept only the first bytes of the file (--no-content).", "forbidden")
        if not self.headers.get("Range"):
            return Reply(200, data, {"Content-Type": f.mime})
        return Reply(
            206, data[first : last + 1], {"Content-Type": f.mime, "Content-Range": f"bytes {first}-{last}/{total}"}
        )

    def _initiate(self, token: Token, q: dict[str, str], all_drives: bool) -> Reply:
        if q.get("uploadType") != "resumable":
            raise ApiError(400, "This fake implements uploadType=resumable only.", "badRequest")
        meta = json.loads(self._read_body() or b"{}")
        parents = meta.get("parents") or ["root"]
        declared = self.headers.get("X-Upload-Content-Length")
        with self.fake.lock:
            parent = self.fake.check_parent(token, parents[0], all_drives, False)
            session = Session(self.fake._new_id(), token.principal, token.kind, meta.get("name", "Untitled"),
                              parent.id, meta.get("mimeType") or self.headers.get("X-Upload-Content-Type")
                              or "application/octet-stream", q.get("fields"),
                              int(declared) if declared else None)  # fmt: skip
            self.fake.sessions[session.id] = session
        location = f"{self.fake.url}upload/drive/v3/files?uploadType=resumable&upload_id={session.id}"
        return Reply(200, b"", {"Location": location})

    def _chunk(self, q: dict[str, str]) -> Reply:
        # CHOICE: chunk PUTs must carry a valid token if they carry one at all (the library always
        # sends it); that is what lets a test expire a token in the middle of an upload.
        if self.headers.get("Authorization"):
            self._auth()
        session = self.fake.sessions.get(q.get("upload_id", ""))
        if session is None:
            # Drive's upload guide: 404 means the session expired; start the upload again.
            raise ApiError(404, "Upload session not found or expired; restart the upload.", "notFound")
        body = self._read_body()
        with session.lock:
            if session.finalised is not None:
                with self.fake.lock:
                    done = self.fake.files.get(session.finalised)
                if done is None:
                    raise ApiError(404, "Upload session not found or expired; restart the upload.", "notFound")
                return self._json(
                    200, self._fields(done.resource(), {"fields": session.fields} if session.fields else {})
                )
            raw = self.headers.get("Content-Range")
            parsed = _parse_range(raw) if raw else (0, len(body) - 1, len(body)) if body else (None, None, 0)
            if parsed is None:
                raise ApiError(400, "Failed to parse Content-Range header.", "badContent")
            first, last, total = parsed
            if total is not None and session.declared is not None and total != session.declared:
                raise ApiError(400, "Content-Range total does not match X-Upload-Content-Length.", "badContent")
            if first is not None:
                assert last is not None
                if len(body) != last - first + 1:
                    raise ApiError(400, "Content-Length does not match Content-Range.", "badContent")
                if first > session.received:
                    raise ApiError(400, f"Chunk starts at {first}, {session.received} bytes received.", "badContent")
                is_last = total is not None and last + 1 == total
                if not is_last and len(body) % GRANULE:
                    raise ApiError(400, "Chunks other than the last must be a multiple of 256 KiB.", "badContent")
                # CHOICE: bytes the server already holds are skipped (a client resending a chunk).
                new = body[session.received - first :]
                if new:
                    if self.fake.keep_content:
                        session.parts.append(new)
                    elif session.received < HEAD_KEPT:  # enough for the download probe
                        session.parts.append(new[: HEAD_KEPT - session.received])
                    session.md5.update(new)
                    session.received += len(new)
            if total is not None and session.received == total:
                f = self.fake.finalise(session)
                return self._json(200, self._fields(f.resource(), {"fields": session.fields} if session.fields else {}))
            if total is not None and session.received > total:
                raise ApiError(400, "More bytes received than the declared total.", "badContent")
            headers = {"Range": f"bytes=0-{session.received - 1}"} if session.received else {}
            return Reply(308, b"", headers)


def _parse_range(raw: str | None) -> tuple[int | None, int | None, int | None] | None:
    """``bytes a-b/N``, ``bytes a-b/*``, ``bytes */N``, ``bytes */*`` -> (a, b, N); None if bad.
    ``bytes N-(N-1)/N`` (what google-api-python-client sends for an empty last chunk, issue
    #1801) is rejected like Drive does: "Failed to parse Content-Range header."."""
    if raw is None:
        return None
    m = re.fullmatch(r"bytes (?:(\d+)-(\d+)|\*)/(\d+|\*)", raw.strip())
    if not m:
        return None
    total = None if m.group(3) == "*" else int(m.group(3))
    if m.group(1) is None:
        return None, None, total
    first, last = int(m.group(1)), int(m.group(2))
    if last < first:
        return None
    return first, last, total


def main() -> None:
    parser = argparse.ArgumentParser(description="Run the Google Drive v3 fake on 127.0.0.1.")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--dir", type=Path, default=None, help="where to write the credential files")
    parser.add_argument("--no-content", action="store_true", help="keep only size and MD5 of uploads (huge files)")
    args = parser.parse_args()
    fake = DriveFake(port=args.port, keep_content=not args.no_content)
    out = args.dir or Path(tempfile.mkdtemp(prefix="drive-fake-"))
    out.mkdir(parents=True, exist_ok=True)
    user = fake.authorized_user("owner@example.com")
    robot = fake.service_account_key("backup@project.iam.gserviceaccount.com")
    fake.add_shared_drive("Backups", ["backup@project.iam.gserviceaccount.com", "owner@example.com"])
    (out / "user.json").write_text(json.dumps(user))
    (out / "service-account.json").write_text(json.dumps(robot))
    print(f"Drive fake listening on {fake.url}  (Ctrl-C stops it; everything is in memory)")
    print("Point dbbackup at it (a personal My Drive, OAuth user credentials):")
    print("  export BACKUP_STORAGE=google_drive")
    print(f"  export GOOGLE_DRIVE_ROOT_URL={fake.url}")
    print(f"  export GOOGLE_DRIVE_CREDENTIALS={out / 'user.json'}")
    print("Or as a service account, with backup_folder_path SharedDrives/Backups/...:")
    print(f"  export GOOGLE_DRIVE_CREDENTIALS={out / 'service-account.json'}", flush=True)
    fake.serve_forever()


if __name__ == "__main__":
    main()
