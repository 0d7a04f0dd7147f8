"""Storage backends: ``core.ports.Storage`` implementations (``local``, ``drive``) and wrappers
(``dryrun``). Each backend turns its SDK's errors into ``StorageNotFound`` / ``StorageExists`` /
``StorageError`` inside itself; nothing else imports an SDK's exceptions. ``wiring`` picks one."""

from dbbackup.core.ports import Folder, Storage, StoredFile

__all__ = ["Folder", "Storage", "StoredFile"]
