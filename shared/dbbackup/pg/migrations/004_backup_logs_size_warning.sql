-- A backup much smaller than the previous successful one is still a success (the dump is
-- complete), but it is how a silently emptied table shows: the warning is kept on the row so
-- `dbbackup logs` and the status report can show it. NULL means no warning. Additive only.
ALTER TABLE public.backup_logs ADD COLUMN IF NOT EXISTS size_warning text;
