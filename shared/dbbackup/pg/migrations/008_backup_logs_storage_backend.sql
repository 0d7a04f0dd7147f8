-- Which storage backend holds a successful backup's file (BACKUP_STORAGE when it was written:
-- local, google_drive). `verify latest` / `restore latest` pick the newest backup that the
-- configured storage holds, not one a machine with another backend wrote. NULL: written before
-- this migration (then the storage itself is asked). Additive only.
ALTER TABLE public.backup_logs ADD COLUMN IF NOT EXISTS storage_backend text;
