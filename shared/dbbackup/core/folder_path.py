"""Validation of ``backup_folder_path`` values, before any storage call is made."""

from __future__ import annotations

import unicodedata

from dbbackup.errors import ConfigError

MAX_SEGMENT = 255
MAX_DEPTH = 20


def split(path: str) -> list[str]:
    """The path's segments; raises ConfigError naming what is wrong with it."""
    if not isinstance(path, str) or not path.strip():
        raise ConfigError("backup_folder_path is empty")
    if path.startswith("id:"):
        folder_id = path[3:]
        if not folder_id or not all(c.isalnum() or c in "-_" for c in folder_id):
            raise ConfigError(f"backup_folder_path {path!r}: a folder id has only letters, digits, - and _")
        return [path]
    segments = path.strip("/").split("/")
    if len(segments) > MAX_DEPTH:
        raise ConfigError(f"backup_folder_path is nested deeper than {MAX_DEPTH} folders")
    for seg in segments:
        if seg == "":
            raise ConfigError(f"backup_folder_path {path!r} has an empty segment (//)")
        if seg in (".", ".."):
            raise ConfigError(f"backup_folder_path {path!r} may not contain '.' or '..'")
        if seg != seg.strip():
            raise ConfigError(f"backup_folder_path segment {seg!r} starts or ends with a space")
        if len(seg) > MAX_SEGMENT:
            raise ConfigError(f"backup_folder_path segment is longer than {MAX_SEGMENT} characters")
        if any(unicodedata.category(c) in ("Cc", "Cf") for c in seg):
            raise ConfigError(f"backup_folder_path {path!r} contains a control character")
        if any(unicodedata.category(c) == "Cs" for c in seg):
            # A lone surrogate (JSON's "\ud800") is no character at all: no UTF-8 encodes it.
            raise ConfigError(f"backup_folder_path {path!r} contains a lone surrogate, not a character")
    return segments
