"""RESTORE_TARGETS: the databases a manager may restore into from the console, configured by the
operator and only ever named in the browser (docs/security.md says why no URL is typed there).

A JSON object, name -> target; a target is a URL (or libpq conninfo) string, or an object
``{"url": "...", "replace": true}``. ``replace`` (default false): the restore clears the target's
user schemas first, in the same transaction; without it the target must be empty."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

import psycopg
import psycopg.conninfo

from dbbackup.errors import ConfigError

VARIABLE = "RESTORE_TARGETS"
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
MAX_TARGETS = 50


@dataclass(frozen=True)
class RestoreTarget:
    name: str
    url: str = field(repr=False)
    replace: bool = False

    @property
    def secrets(self) -> tuple[str, ...]:
        try:
            password = psycopg.conninfo.conninfo_to_dict(self.url).get("password")
        except psycopg.ProgrammingError:
            password = None
        return (self.url,) + ((str(password),) if password else ())


def parse_restore_targets(text: str) -> tuple[RestoreTarget, ...]:
    """The targets of RESTORE_TARGETS, in the order written; ConfigError names the variable and
    the target, never a URL (it holds a password)."""
    if not text.strip():
        return ()
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        raise ConfigError(f'{VARIABLE} is not valid JSON: expected {{"name": "postgresql://…", …}}') from None
    if not isinstance(data, dict):
        raise ConfigError(f'{VARIABLE} must be a JSON object {{"name": "postgresql://…", …}}')
    if len(data) > MAX_TARGETS:
        raise ConfigError(f"{VARIABLE} lists more than {MAX_TARGETS} targets")
    targets = []
    for name, value in data.items():
        if not NAME.match(name):
            raise ConfigError(
                f"{VARIABLE}: target name {name[:40]!r} must be 1-63 letters, digits, '_', '.' or '-'"
                " starting with a letter or digit"
            )
        if isinstance(value, str):
            url, replace = value, False
        elif isinstance(value, dict) and set(value) <= {"url", "replace"} and isinstance(value.get("url"), str):
            url, replace = value["url"], value.get("replace", False)
            if not isinstance(replace, bool):
                raise ConfigError(f'{VARIABLE}: target {name!r}: "replace" must be true or false')
        else:
            raise ConfigError(
                f'{VARIABLE}: target {name!r} must be a URL string or {{"url": "postgresql://…", "replace": false}}'
            )
        try:
            psycopg.conninfo.conninfo_to_dict(url.strip())
        except psycopg.ProgrammingError:
            raise ConfigError(f"{VARIABLE}: target {name!r} is not a valid PostgreSQL URL or conninfo") from None
        if not url.strip():
            raise ConfigError(f"{VARIABLE}: target {name!r} has an empty URL")
        targets.append(RestoreTarget(name, url.strip(), replace))
    return tuple(targets)
