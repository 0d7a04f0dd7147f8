"""The object stores the ``s3`` and ``gcs`` backends are tested against, on 127.0.0.1:

- S3: moto's standalone server (``moto[server]``'s ThreadedMotoServer), a real HTTP S3 endpoint
  driven through boto3. Where it differs from S3: it accepts parts smaller than 5 MiB when told
  to (``S3_UPLOAD_PART_MIN_SIZE``, lowered here so a test sends several small parts); it keeps
  everything in memory.
- GCS: ``gcp-storage-emulator`` (the JSON API and resumable uploads) driven through
  google-cloud-storage via ``STORAGE_EMULATOR_HOST``. Where it differs from GCS (see
  docs/storage.md): it ignores preconditions (``ifGenerationMatch=0`` does not refuse an existing
  name: the backend's own existence check is what the no-overwrite test exercises there), it has
  no bucket retention policy (the retained-delete answer is injected through ``FaultProxy``, in
  GCS's own wording), and it does not implement cancelling a resumable session (DELETE on the
  session URI): an unfinalised session is never an object in either, so "nothing left behind"
  holds all the same.

``FaultProxy`` (tests/fakes/_http.py's server) forwards every request to one of them and lets a
test arm ``Fault``s on the way: a 5xx, a cut connection, a 403, a throttle.
"""

from __future__ import annotations

import http.client
import itertools
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

from ._http import Exchange, FakeServer, Reply

S3_TEST_PART = 256 * 1024
GCS_TEST_CHUNK = 256 * 1024
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host", "proxy-connection"}
_names = itertools.count(1)


def bucket_name(kind: str) -> str:
    return f"dbbackup-{kind}-test-{next(_names)}"


class FaultProxy(FakeServer):
    """Forwards to ``upstream`` (http://host:port) what the armed faults let through."""

    methods = ("GET", "HEAD", "PUT", "POST", "DELETE", "PATCH")
    protocol_version = "HTTP/1.1"

    def __init__(self, upstream: str) -> None:
        super().__init__()
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)

    def respond(self, exchange: Exchange) -> Reply:
        headers = {k: v for k, v in exchange.headers.items() if k.lower() not in HOP_BY_HOP}
        body = exchange.body()
        conn = http.client.HTTPConnection(*self.upstream, timeout=30)
        try:
            conn.request(
                exchange.method,
                exchange.target,
                body=body if body or exchange.method in ("PUT", "POST") else None,
                headers=headers,
            )
            answer = conn.getresponse()
            data = answer.read()
            out = {k: v for k, v in answer.getheaders() if k.lower() not in HOP_BY_HOP}
            # Absolute URLs the upstream hands out (a resumable session URI) must come back here.
            host = f"{self.upstream[0]}:{self.upstream[1]}"
            mine = self.url.removeprefix("http://")
            out = {k: v.replace(host, mine) for k, v in out.items()}
            if exchange.method == "HEAD":
                out["Content-Length"] = answer.getheader("Content-Length", "0")
            return Reply(answer.status, data, out)
        finally:
            conn.close()


def s3_error(status: int, code: str, message: str = "injected") -> Reply:
    body = f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code><Message>{message}</Message></Error>'
    return Reply(status, body.encode(), {"Content-Type": "application/xml"})


def gcs_error(status: int, message: str, reason: str = "injected") -> Reply:
    error = {"code": status, "message": message, "errors": [{"message": message, "reason": reason}]}
    return Reply.json(status, {"error": error})


class MotoS3:
    """One moto server for the session; each test gets buckets of its own."""

    def __init__(self) -> None:
        import moto.s3.models
        from moto.server import ThreadedMotoServer

        # A test sends several parts of 256 KiB; S3 itself wants 5 MiB (S3Config enforces that).
        moto.s3.models.S3_UPLOAD_PART_MIN_SIZE = S3_TEST_PART  # type: ignore[attr-defined]
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.server.start()
        host, port = self.server.get_host_and_port()
        self.url = f"http://{host}:{port}"
        self._admin: Any = None
        self._clients: dict[tuple[str, int], Any] = {}  # a boto3 client takes ~0.3 s to build: one per endpoint

    def env(self, bucket: str, url: str | None = None, **extra: str) -> dict[str, str]:
        return {
            "BACKUP_STORAGE": "s3",
            "BACKUP_S3_BUCKET": bucket,
            "BACKUP_S3_ENDPOINT_URL": url or self.url,
            "BACKUP_S3_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "testing-key-id",
            "AWS_SECRET_ACCESS_KEY": "testing-secret-access-key",
            **extra,
        }

    def client(self) -> Any:
        import boto3

        if self._admin is not None:
            return self._admin
        self._admin = boto3.client(
            "s3",
            endpoint_url=self.url,
            region_name="us-east-1",
            aws_access_key_id="testing-key-id",
            aws_secret_access_key="testing-secret-access-key",
        )
        return self._admin

    def bucket(self, lock: bool = False) -> str:
        name = bucket_name("s3")
        self.client().create_bucket(Bucket=name, ObjectLockEnabledForBucket=lock)
        return name

    def storage(self, bucket: str, url: str | None = None, **config: Any) -> Any:
        from dataclasses import replace

        from dbbackup.storage.s3 import S3Storage
        from dbbackup.storage.s3_config import s3_config_from_env

        # Built from the environment as a deployment is, then with the test's small parts.
        cfg = replace(s3_config_from_env(self.env(bucket, url)), part_size=S3_TEST_PART, timeout_seconds=5, **config)
        cfg = replace(cfg, max_attempts=config.get("max_attempts", 2))
        key = (cfg.endpoint_url or "", cfg.max_attempts)
        if key not in self._clients:
            self._clients[key] = S3Storage(cfg).client
        return S3Storage(cfg, client=self._clients[key])

    def open_uploads(self, bucket: str) -> list[dict[str, Any]]:
        return list(self.client().list_multipart_uploads(Bucket=bucket).get("Uploads", []))

    def keys(self, bucket: str) -> list[str]:
        return [o["Key"] for o in self.client().list_objects_v2(Bucket=bucket).get("Contents", [])]

    def stop(self) -> None:
        self.server.stop()


class GcsEmulator:
    """One gcp-storage-emulator server (in memory) for the session; each test gets its buckets."""

    def __init__(self) -> None:
        from gcp_storage_emulator.server import create_server

        self.server = create_server("127.0.0.1", 0, in_memory=True)
        self.server.start()
        host, port = self.server._api._httpd.socket.getsockname()[:2]
        self.url = f"http://{host}:{port}"

    def env(self, bucket: str, url: str | None = None, **extra: str) -> dict[str, str]:
        return {
            "BACKUP_STORAGE": "gcs",
            "BACKUP_GCS_BUCKET": bucket,
            "STORAGE_EMULATOR_HOST": url or self.url,
            "BACKUP_GCS_CHUNK_SIZE": str(GCS_TEST_CHUNK),
            **extra,
        }

    def client(self) -> Any:
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        return storage.Client(
            project="test", credentials=AnonymousCredentials(), client_options={"api_endpoint": self.url}
        )

    def bucket(self) -> str:
        name = bucket_name("gcs")
        self.client().create_bucket(name)
        return name

    def storage(self, bucket: str, url: str | None = None, **config: Any) -> Any:
        from dataclasses import replace

        from dbbackup.storage.gcs import GcsStorage
        from dbbackup.storage.gcs_config import gcs_config_from_env

        base = gcs_config_from_env(self.env(bucket, url))
        return GcsStorage(replace(base, **{"timeout_seconds": 5, "retry_seconds": 1.5, **config}))

    def names(self, bucket: str) -> list[str]:
        return [b.name for b in self.client().list_blobs(bucket)]

    def stop(self) -> None:
        self.server.stop()


def started(kind: type[MotoS3] | type[GcsEmulator]) -> Iterator[Any]:
    server = kind()
    try:
        yield server
    finally:
        server.stop()
