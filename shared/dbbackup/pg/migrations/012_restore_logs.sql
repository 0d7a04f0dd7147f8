-- One row per restore attempt started from the managers' console (POST
-- /api/backups/{id}/restore): who asked, when, which backup, into which configured target (its
-- NAME in RESTORE_TARGETS, never its URL), how it ended and what it restored. Readable by
-- managers, like backup_logs (003); written only by the functions' own connection (the owner).
CREATE TABLE IF NOT EXISTS public.restore_logs (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    backup_log_id uuid REFERENCES public.backup_logs (id) ON DELETE SET NULL,
    file_name text,
    target text NOT NULL,
    replace_target boolean NOT NULL DEFAULT false,
    requested_by varchar(255),
    status text NOT NULL DEFAULT 'in_progress' CHECK (status IN ('in_progress', 'success', 'failed')),
    started_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    completed_at timestamptz,
    duration_seconds numeric(12, 3),
    bytes_read bigint,
    tables_restored integer,
    rows_restored bigint,
    failure_reason text
);
CREATE INDEX IF NOT EXISTS idx_restore_logs_started_at ON public.restore_logs (started_at DESC);
CREATE INDEX IF NOT EXISTS idx_restore_logs_backup ON public.restore_logs (backup_log_id);
ALTER TABLE public.restore_logs ENABLE ROW LEVEL SECURITY;

DO $migration$
DECLARE
    role_name text;
BEGIN
    FOREACH role_name IN ARRAY ARRAY['anon', 'authenticated'] LOOP
        IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = role_name) THEN
            EXECUTE format('REVOKE ALL ON public.restore_logs FROM %I', role_name);
        END IF;
    END LOOP;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'service_role') THEN
        GRANT SELECT, INSERT, UPDATE, DELETE ON public.restore_logs TO service_role;
    END IF;
    -- The managers' read policy of backup_logs (003), when that database has one.
    IF to_regprocedure('public.dbbackup_is_manager()') IS NOT NULL THEN
        DROP POLICY IF EXISTS "Managers can view restore logs" ON public.restore_logs;
        IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'authenticated') THEN
            GRANT SELECT ON public.restore_logs TO authenticated;
            CREATE POLICY "Managers can view restore logs" ON public.restore_logs
                FOR SELECT TO authenticated USING ((SELECT public.dbbackup_is_manager()));
        ELSE
            CREATE POLICY "Managers can view restore logs" ON public.restore_logs
                FOR SELECT USING ((SELECT public.dbbackup_is_manager()));
        END IF;
    END IF;
END
$migration$;
