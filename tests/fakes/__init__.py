"""Fake servers for the protocols the backends speak, and the pytest fixtures that start them.

The fixtures live in ``fakes.fixtures`` (``pytest_plugins = ["fakes.fixtures"]`` in a test
module); the fakes are real HTTP servers on 127.0.0.1, driven through the real client libraries.
"""

from __future__ import annotations

import json
from typing import Any

from .drive_fake import DriveFake

USER = "owner@example.com"
ROBOT = "backup@project.iam.gserviceaccount.com"
TEST_CHUNK = 256 * 1024


def drive_env(fake: DriveFake, credentials: dict[str, Any], **extra: str) -> dict[str, str]:
    """The GOOGLE_DRIVE_* environment that points dbbackup at ``fake`` (fast retries)."""
    return {
        "BACKUP_STORAGE": "google_drive",
        "GOOGLE_DRIVE_CREDENTIALS": json.dumps(credentials),
        "GOOGLE_DRIVE_ROOT_URL": fake.url,
        "GOOGLE_DRIVE_CHUNK_SIZE": str(TEST_CHUNK),
        "GOOGLE_DRIVE_RETRY_DELAY_SECONDS": "0.01",
        "GOOGLE_DRIVE_TIMEOUT_SECONDS": "5",
        **extra,
    }


def make_drive_storage(fake: DriveFake, credentials: dict[str, Any], **extra: str) -> Any:
    from dbbackup.storage.drive import DriveStorage
    from dbbackup.storage.drive_config import drive_config_from_env

    return DriveStorage(drive_config_from_env(drive_env(fake, credentials, **extra)))
