"""Reading backups back: resolving a SOURCE (``sources``), restoring into a database (``restorer``)
and checking a backup end to end (``verify``)."""
