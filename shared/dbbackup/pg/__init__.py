"""Everything that speaks SQL or runs PostgreSQL: connection policy (``conninfo``), ``connect``, the
backup log repository (``backup_log``, the ``BackupLog`` port), the app's settings table, console
queries, catalog questions, migrations, the security layer's queries (``access``), the bundled
binaries and the throwaway server (``embedded``)."""
