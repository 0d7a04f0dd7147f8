"""Secret Manager v1's ``AccessSecretVersion`` over REST, on 127.0.0.1, for the real
google-cloud-secret-manager client (``transport="rest"``, ``api_endpoint`` pointed here).

``GET /v1/projects/P/secrets/S/versions/V:access`` answers
``{"name": "projects/P/secrets/S/versions/N", "payload": {"data": <base64>}}``;
``latest`` resolves to the newest version. An unknown secret or version answers 404 with
``{"error": {"code": 404, "message": "Secret [...] not found or has no versions.", "status": "NOT_FOUND"}}``,
which the client raises as ``google.api_core.exceptions.NotFound``. Every access is recorded.
"""

from __future__ import annotations

import base64
import re

from ._http import Exchange, FakeServer, Reply

_ACCESS = re.compile(r"^/v1/projects/([^/]+)/secrets/([^/]+)/versions/([^/:]+):access$")


class SecretManagerFake(FakeServer):
    def __init__(self, project: str = "test-project") -> None:
        super().__init__()
        self.project = project
        self.versions: dict[str, list[bytes]] = {}
        self.start()

    def add(self, secret: str, value: str | bytes) -> str:
        """A new version of ``secret``; returns its resource name."""
        data = value.encode() if isinstance(value, str) else value
        self.versions.setdefault(secret, []).append(data)
        return f"projects/{self.project}/secrets/{secret}/versions/{len(self.versions[secret])}"

    @property
    def endpoint(self) -> str:
        return self.url

    @property
    def accesses(self) -> list[str]:
        return [e.path for e in self.exchanges if ":access" in e.target]

    def respond(self, exchange: Exchange) -> Reply:
        match = _ACCESS.match(exchange.path)
        if not match:
            return Reply.json(404, {"error": {"code": 404, "message": "Not Found", "status": "NOT_FOUND"}})
        project, secret, version = match.groups()
        versions = self.versions.get(secret, []) if project == self.project else []
        number = len(versions) if version == "latest" else int(version) if version.isdigit() else 0
        if not 1 <= number <= len(versions):
            name = f"projects/{project}/secrets/{secret}/versions/{version}"
            message = f"Secret [{name}] not found or has no versions."
            return Reply.json(404, {"error": {"code": 404, "message": message, "status": "NOT_FOUND"}})
        data = versions[number - 1]
        return Reply.json(
            200,
            {
                "name": f"projects/{self.project}/secrets/{secret}/versions/{number}",
                # dataCrc32c (CRC32C) is optional in the API and unchecked by the client; left out here.
                "payload": {"data": base64.b64encode(data).decode()},
            },
        )
