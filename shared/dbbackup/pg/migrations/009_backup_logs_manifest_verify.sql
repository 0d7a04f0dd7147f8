-- Proof in production (issue 16), additive only:
-- * manifest: what the backup holds, counted while the dump streamed (core.manifest):
--   {"tables": {"schema.table": {"rows": N, "bytes": B}, ...}}; NULL for older backups.
-- * shrink_warnings: the tables that shrank since the previous successful backup, one line each
--   (a JSON array of strings); NULL when none did. The backup is still a success.
-- * verified_at / verify_status / verify_detail: the last restore drill of this backup
--   (verify_backup): passed, failed or skipped, and why.
ALTER TABLE public.backup_logs ADD COLUMN IF NOT EXISTS manifest jsonb;
ALTER TABLE public.backup_logs ADD COLUMN IF NOT EXISTS shrink_warnings jsonb;
ALTER TABLE public.backup_logs ADD COLUMN IF NOT EXISTS verified_at timestamptz;
ALTER TABLE public.backup_logs ADD COLUMN IF NOT EXISTS verify_status varchar(20);
ALTER TABLE public.backup_logs ADD COLUMN IF NOT EXISTS verify_detail text;

DO $migration$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'backup_logs_verify_status_check'
                   AND conrelid = 'public.backup_logs'::regclass) THEN
        ALTER TABLE public.backup_logs ADD CONSTRAINT backup_logs_verify_status_check
            CHECK (verify_status::text IN ('passed'::text, 'failed'::text, 'skipped'::text));
    END IF;
END
$migration$;

CREATE INDEX IF NOT EXISTS idx_backup_logs_verified_at ON public.backup_logs (verified_at DESC)
    WHERE verified_at IS NOT NULL;
