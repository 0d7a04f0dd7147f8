"""Weekly and monthly retention (GFS): BACKUP_KEEP_WEEKLY / BACKUP_KEEP_MONTHLY on top of the
daily rule. The property test runs 400 simulated days of backups through ``retention.classify``
(deleting what it says each day) and compares every decision with a second, straightforward
implementation of the rule written here from the README's words."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import psycopg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dbbackup.core import naming, retention
from dbbackup.storage import StoredFile
from dbbackup.storage.local import LocalStorage
from support.cli import run_cli

BERLIN = ZoneInfo("Europe/Berlin")
FOLDER = "MyDrive/DatabaseBackups"


def stored(name: str) -> StoredFile:
    return StoredFile(id=name, name=name, size=1, path=name)


def expected_keep(
    files: list[tuple[str, datetime, str]],
    now: datetime,
    tz: ZoneInfo,
    days: int,
    keep_min: int,
    weekly: int,
    monthly: int,
) -> dict[str, str | None]:
    """The rule, straightforwardly: name -> why it is kept (None: deleted). ``files`` are
    (name, moment in tz, row status); successful means a success row or none."""

    def key(item: tuple[str, datetime, str]) -> tuple[datetime, int]:
        seq = naming.PATTERN.match(item[0])["seq"]  # type: ignore[index]
        return item[1].astimezone(UTC), int(seq) if seq else 1

    good = [f for f in files if f[2] in ("success", "none") and f[1] <= now]
    good.sort(key=key, reverse=True)
    floor = {f[0] for f in good[:keep_min]}
    today = now.astimezone(tz).date()
    # the last `weekly` ISO weeks, as (ISO year, ISO week), walking back one week at a time
    weeks = [(today - timedelta(weeks=k)).isocalendar()[:2] for k in range(weekly)]
    months = []
    y, m = today.year, today.month
    for _ in range(monthly):
        months.append((y, m))
        y, m = (y - 1, 12) if m == 1 else (y, m - 1)
    weekly_keep, monthly_keep = set(), set()
    for week in weeks:
        in_week = [f for f in good if f[1].date().isocalendar()[:2] == week]
        if in_week:
            weekly_keep.add(in_week[0][0])  # good is newest first
    for month in months:
        in_month = [f for f in good if (f[1].year, f[1].month) == month]
        if in_month:
            monthly_keep.add(in_month[0][0])
    verdict: dict[str, str | None] = {}
    for name, moment, status in files:
        if moment > now:
            verdict[name] = "future"
        elif status == "in_progress":
            verdict[name] = "in_progress"
        elif now - moment <= timedelta(days=days):
            verdict[name] = "daily"
        elif name in floor:
            verdict[name] = "floor"
        elif name in weekly_keep:
            verdict[name] = "weekly"
        elif name in monthly_keep:
            verdict[name] = "monthly"
        else:
            verdict[name] = None
    return verdict


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    start=st.datetimes(min_value=datetime(2024, 1, 1), max_value=datetime(2030, 12, 31)),
    days=st.integers(1, 20),
    keep_min=st.integers(1, 4),
    weekly=st.integers(0, 10),
    monthly=st.integers(0, 14),
    seed_value=st.integers(0, 2**32),
    tz=st.sampled_from([BERLIN, ZoneInfo("UTC"), ZoneInfo("America/New_York")]),
)
def test_400_simulated_days_keep_exactly_what_the_rule_says(
    start, days, keep_min, weekly, monthly, seed_value, tz
) -> None:  # type: ignore[no-untyped-def]
    now = start.replace(tzinfo=UTC)
    seed = random.Random(seed_value)
    files: dict[str, tuple[datetime, str]] = {}
    for _ in range(400):
        # Today's backups: usually one, sometimes none, two in one day, a failure or a running one.
        for _ in range(seed.choice([0, 1, 1, 1, 1, 1, 2])):
            moment = now - timedelta(minutes=seed.randint(0, 120))
            name = naming.free_name(moment, tz, files, naming.SUFFIX)
            status = seed.choice(["success"] * 8 + ["failed", "none", "in_progress"])
            files[name] = (naming.parse(name, tz), status)  # type: ignore[assignment]
        if seed.random() < 0.02:  # a wrong clock: a file dated tomorrow
            name = naming.free_name(now + timedelta(days=1), tz, files, naming.SUFFIX)
            files[name] = (naming.parse(name, tz), "success")  # type: ignore[assignment]
        plan = retention.classify(
            [stored(n) for n in files],
            now=now,
            tz=tz,
            retention_days=days,
            keep_min=keep_min,
            statuses={n: s for n, (_, s) in files.items()},
            keep_weekly=weekly,
            keep_monthly=monthly,
        )
        got = {
            d.file.name: retention.KEPT_AS.get(d.reason) if d.action == retention.KEEP else None for d in plan.decisions
        }
        want = expected_keep([(n, m, s) for n, (m, s) in files.items()], now, tz, days, keep_min, weekly, monthly)
        assert got == want, now
        for d in plan.with_action(retention.DELETE):
            del files[d.file.name]
        for name, (moment, status) in list(files.items()):
            if status == "in_progress" and moment < now - timedelta(hours=1):
                files[name] = (moment, "failed")  # the next run marks it interrupted
        now += timedelta(days=1, minutes=seed.randint(-90, 90))


def test_zero_weekly_and_monthly_is_the_daily_rule_exactly() -> None:
    now = datetime(2026, 11, 25, 3, 0, tzinfo=UTC)
    files = [stored(naming.base_name(now - timedelta(days=d), BERLIN, naming.SUFFIX)) for d in range(60)]
    base = retention.classify(files, now=now, tz=BERLIN, retention_days=15, keep_min=3)
    zero = retention.classify(files, now=now, tz=BERLIN, retention_days=15, keep_min=3, keep_weekly=0, keep_monthly=0)
    assert [(d.action, d.reason) for d in base.decisions] == [(d.action, d.reason) for d in zero.decisions]
    assert len(base.with_action(retention.DELETE)) == 44  # days 0..15 kept (15 x 24 h exactly is kept)


def test_dry_run_json_says_why_each_kept_file_is_kept(migrated_url: str, tmp_path: Path) -> None:
    root = tmp_path / "store"
    storage = LocalStorage(root)
    folder = storage.ensure_folder(FOLDER)
    now = datetime.now(UTC)
    names = {}
    for d in range(0, 70):
        moment = now - timedelta(days=d, hours=1)
        name = naming.base_name(moment, BERLIN, naming.SUFFIX)
        f = storage.put(folder, name, [b"x"])
        names[d] = name
        with psycopg.connect(migrated_url, autocommit=True) as conn:
            conn.execute(
                "INSERT INTO backup_logs (backup_type, status, file_name, google_drive_file_id, started_at)"
                " VALUES ('automatic', 'success', %s, %s, %s)",
                (name, f.id, moment),
            )
    proc = run_cli(
        ["cleanup", "--dry-run", "--json"],
        migrated_url,
        BACKUP_LOCAL_ROOT=str(root),
        BACKUP_TIMEZONE="Europe/Berlin",
        BACKUP_KEEP_WEEKLY="4",
        BACKUP_KEEP_MONTHLY="3",
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    kept = result["kept"]
    assert set(kept) | set(result["deleted"]) == set(names.values()) and not set(kept) & set(result["deleted"])
    assert {kept[names[d]] for d in range(0, 15)} == {"daily"}
    assert set(kept.values()) == {"daily", "weekly", "monthly"}
    # Each weekly file is the newest file of its ISO week, each monthly one the newest of its month
    # (compared with the files there are: 24 h apart, a day may have none across a clock change).
    moments = [m for m in (naming.parse(n, BERLIN) for n in names.values()) if m is not None]
    assert len(moments) == len(names)
    for name, why in kept.items():
        moment = naming.parse(name, BERLIN)
        assert moment is not None
        if why == "weekly":
            week = moment.date().isocalendar()[:2]
            assert moment == max(m for m in moments if m.date().isocalendar()[:2] == week), name
        if why == "monthly":
            assert moment == max(m for m in moments if (m.year, m.month) == (moment.year, moment.month)), name
    assert result["keep_weekly"] == 4 and result["keep_monthly"] == 3
    assert sorted(result["kept_weekly"]) == sorted(n for n, w in kept.items() if w == "weekly")
    assert sorted(result["kept_monthly"]) == sorted(n for n, w in kept.items() if w == "monthly")
