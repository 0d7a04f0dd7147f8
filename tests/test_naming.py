"""File names: the spec's pattern, the time zone, and no overwrite within one minute."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from dbbackup.core import naming

MOMENT = datetime(2026, 3, 29, 0, 30, tzinfo=UTC)


def test_name_follows_the_spec_in_the_configured_time_zone() -> None:
    assert naming.base_name(MOMENT, ZoneInfo("UTC")) == "DB_Backup_2026-03-29_00-30.sql.gz"
    assert naming.base_name(MOMENT, ZoneInfo("Europe/Berlin")) == "DB_Backup_2026-03-29_01-30.sql.gz"
    assert naming.base_name(MOMENT, ZoneInfo("Asia/Kolkata")) == "DB_Backup_2026-03-29_06-00.sql.gz"


def test_same_minute_backups_get_a_numeric_suffix_the_pattern_accepts() -> None:
    tz = ZoneInfo("UTC")
    first = naming.free_name(MOMENT, tz, [])
    second = naming.free_name(MOMENT, tz, [first])
    third = naming.free_name(MOMENT, tz, [first, second])
    assert (second, third) == ("DB_Backup_2026-03-29_00-30_2.sql.gz", "DB_Backup_2026-03-29_00-30_3.sql.gz")
    for name in (first, second, third, "DB_Backup_2026-03-29_00-30_12.sql.gz"):
        assert naming.parse(name, tz) == datetime(2026, 3, 29, 0, 30, tzinfo=tz)


def test_names_that_are_not_backups_are_not_parsed() -> None:
    tz = ZoneInfo("UTC")
    for name in (
        "DB_Backup_2026-03-29_00-30.sql",
        "DB_Backup_2026-03-29_00-30_1.sql.gz",
        "DB_Backup_2026-03-29_00-30_02.sql.gz",
        "DB_Backup_2026-13-29_00-30.sql.gz",
        "x_DB_Backup_2026-03-29_00-30.sql.gz",
        "DB_Backup_2026-03-29_00-30.sql.gz.partial",
    ):
        assert naming.parse(name, tz) is None, name


def test_only_exact_ascii_backup_names_match() -> None:
    tz = ZoneInfo("UTC")
    for name in ("DB_Backup_2026-01-01_00-00.sql.gz\n", "DB_Backup_\u0662\u0660\u0662\u0666-01-01_00-00.sql.gz"):
        assert naming.parse(name, tz) is None, repr(name)
        assert not naming.PATTERN.match(name)


def test_an_ambiguous_local_time_is_read_as_the_later_moment() -> None:
    tz = ZoneInfo("Europe/Berlin")  # 2026-10-25 02:30 happens twice: 00:30 and 01:30 UTC
    early, late = datetime(2026, 10, 25, 0, 30, tzinfo=UTC), datetime(2026, 10, 25, 1, 30, tzinfo=UTC)
    assert naming.base_name(early, tz) == naming.base_name(late, tz) == "DB_Backup_2026-10-25_02-30.sql.gz"
    parsed = naming.parse("DB_Backup_2026-10-25_02-30.sql.gz", tz)
    assert parsed is not None and parsed.timestamp() == late.timestamp()  # (== is never true across zones here)


def test_encrypted_backups_end_in_age_and_share_the_minute_numbering() -> None:
    tz = ZoneInfo("UTC")
    first = naming.free_name(MOMENT, tz, [], naming.ENCRYPTED_SUFFIX)
    assert first == "DB_Backup_2026-03-29_00-30.sql.gz.age"
    second = naming.free_name(MOMENT, tz, [first], naming.ENCRYPTED_SUFFIX)
    assert second == "DB_Backup_2026-03-29_00-30_2.sql.gz.age"
    # A plain file of the same minute takes the number too: one minute, one sequence.
    assert naming.free_name(MOMENT, tz, ["DB_Backup_2026-03-29_00-30.sql.gz"], naming.ENCRYPTED_SUFFIX) == second
    assert naming.free_name(MOMENT, tz, [first, second]) == "DB_Backup_2026-03-29_00-30_3.sql.gz"
    for name in (first, second):
        assert naming.parse(name, tz) == datetime(2026, 3, 29, 0, 30, tzinfo=tz)
        assert naming.is_encrypted(name) and naming.media_type(name) == "application/octet-stream"
    assert naming.media_type("DB_Backup_2026-03-29_00-30.sql.gz") == "application/gzip"
    for name in (
        "DB_Backup_2026-03-29_00-30.sql.gz.age.partial",
        "DB_Backup_2026-03-29_00-30.sql.age",
        "DB_Backup_2026-03-29_00-30.sql.gz.agex",
        "DB_Backup_2026-03-29_00-30_1.sql.gz.age",
    ):
        assert naming.parse(name, tz) is None, name
