"""The two database questions of the security layer, asked with the service connection:
which app role a user has (``user_profiles.role``), and whether a manual backup may start now
(the rate limit in ``dbbackup_rate_limits``, migration 005)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

import psycopg

from dbbackup.errors import ConfigError

MANUAL_BACKUP = "manual_backup"


class PgRoleDirectory:
    def __init__(self, conn: psycopg.Connection) -> None:
        self.conn = conn

    def role_of(self, user_id: str) -> str | None:
        # Apps name the key column id (= auth.users.id) or user_id; migration 003 picks the same way.
        try:
            columns = {
                r[0]
                for r in self.conn.execute(
                    "SELECT column_name FROM information_schema.columns"
                    " WHERE table_schema = 'public' AND table_name = 'user_profiles'"
                ).fetchall()
            }
        except psycopg.Error as exc:
            raise ConfigError(f"user_profiles could not be read: {type(exc).__name__}") from None
        key = "user_id" if "user_id" in columns else "id" if "id" in columns else None
        if key is None or "role" not in columns:
            raise ConfigError("public.user_profiles with an id/user_id and a role column is needed to authorise users")
        row = self.conn.execute(
            f"SELECT role FROM public.user_profiles WHERE {key}::text = %s LIMIT 1",  # key is one of two literals
            (user_id,),
        ).fetchone()
        return None if row is None or row[0] is None else str(row[0])


@dataclass(frozen=True)
class Slot:
    granted: bool
    claimed_at: datetime | None = None
    retry_after_seconds: int = 0


class RateLimiter:
    """At most one manual backup start per subject per interval, across every instance.

    One INSERT ... ON CONFLICT DO UPDATE ... WHERE is atomic: of two concurrent requests, the
    second waits for the first's row and then finds it too recent, so exactly one is granted."""

    def __init__(self, conn: psycopg.Connection, interval_seconds: int) -> None:
        self.conn = conn
        self.interval = interval_seconds

    def claim(self, subject: str, action: str = MANUAL_BACKUP) -> Slot:
        if self.interval <= 0:
            return Slot(True)
        try:
            row = self.conn.execute(
                "INSERT INTO public.dbbackup_rate_limits AS r (subject, action, last_at)"
                " VALUES (%s, %s, clock_timestamp())"
                " ON CONFLICT (subject, action) DO UPDATE SET last_at = clock_timestamp()"
                " WHERE r.last_at <= clock_timestamp() - make_interval(secs => %s)"
                " RETURNING last_at",
                (subject, action, self.interval),
            ).fetchone()
        except psycopg.errors.UndefinedTable:
            raise ConfigError("dbbackup_rate_limits does not exist: run `dbbackup migrate`") from None
        if row is not None:
            return Slot(True, row[0])
        left = self.conn.execute(
            "SELECT extract(epoch FROM last_at + make_interval(secs => %s) - clock_timestamp())"
            " FROM public.dbbackup_rate_limits WHERE subject = %s AND action = %s",
            (self.interval, subject, action),
        ).fetchone()
        seconds = float(left[0]) if left and left[0] is not None else 1.0
        return Slot(False, retry_after_seconds=max(1, math.ceil(seconds)))

    def release(self, subject: str, slot: Slot, action: str = MANUAL_BACKUP) -> None:
        """Give a slot back when the backup never started (409: another one was running), so a
        manager is not locked out for the interval by a run that was not theirs."""
        if slot.claimed_at is None:
            return
        self.conn.execute(
            "DELETE FROM public.dbbackup_rate_limits WHERE subject = %s AND action = %s AND last_at = %s",
            (subject, action, slot.claimed_at),
        )
