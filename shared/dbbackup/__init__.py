"""Streaming, restorable PostgreSQL backups, logged in ``backup_logs``."""

__version__ = "0.1.0"
