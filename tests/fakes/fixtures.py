"""Pytest fixtures that start the fake servers (a plugin: ``pytest_plugins = ["fakes.fixtures"]``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from . import USER, make_drive_storage
from .drive_fake import DriveFake
from .sendgrid_fake import FakeSendGrid
from .webhook_fake import FakeWebhook


@pytest.fixture
def drive_fake() -> Iterator[DriveFake]:
    with DriveFake() as fake:
        yield fake


@pytest.fixture
def drive_user(drive_fake: DriveFake) -> dict[str, Any]:
    """OAuth authorized-user credentials of the owner of a personal My Drive."""
    return drive_fake.authorized_user(USER)


@pytest.fixture
def drive_storage(drive_fake: DriveFake, drive_user: dict[str, Any]) -> Any:
    """The Drive backend on the fake, as a personal My Drive user."""
    return make_drive_storage(drive_fake, drive_user)


@pytest.fixture
def sendgrid() -> Iterator[FakeSendGrid]:
    fake = FakeSendGrid().start()
    yield fake
    fake.stop()


@pytest.fixture
def webhook() -> Iterator[FakeWebhook]:
    with FakeWebhook() as fake:
        yield fake
