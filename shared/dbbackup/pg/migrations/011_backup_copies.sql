-- One row per copy of a backup attempt: BACKUP_STORAGE may list several targets (local,
-- google_drive, gcs, s3) and one dump is written to each. backup_logs keeps describing the
-- attempt and its first target's file, as before; this table says where every copy is, whether
-- it is complete, and when retention deleted it. Readable by managers, like backup_logs; written
-- only by the functions' own connection (the owner). Additive only.
CREATE TABLE IF NOT EXISTS public.backup_copies (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    backup_log_id uuid NOT NULL REFERENCES public.backup_logs (id) ON DELETE CASCADE,
    target varchar(20) NOT NULL CHECK (target IN ('local', 'google_drive', 'gcs', 's3')),
    file_id text,
    path text,
    file_size_bytes bigint,
    md5_checksum varchar(32),
    status varchar(20) NOT NULL CHECK (status IN ('success', 'failed')),
    failure_reason text,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp(),  -- per row: the targets' order
    deleted_at timestamptz,
    UNIQUE (backup_log_id, target)
);
CREATE INDEX IF NOT EXISTS idx_backup_copies_target_file ON public.backup_copies (target, file_id);
ALTER TABLE public.backup_copies ENABLE ROW LEVEL SECURITY;

DO $migration$
DECLARE
    role_name text;
BEGIN
    FOREACH role_name IN ARRAY ARRAY['anon', 'authenticated'] LOOP
        IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = role_name) THEN
            EXECUTE format('REVOKE ALL ON public.backup_copies FROM %I', role_name);
        END IF;
    END LOOP;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'service_role') THEN
        GRANT SELECT, INSERT, UPDATE, DELETE ON public.backup_copies TO service_role;
    END IF;
    -- The managers' read policy of backup_logs (003), when that database has one.
    IF to_regprocedure('public.dbbackup_is_manager()') IS NOT NULL THEN
        DROP POLICY IF EXISTS "Managers can view backup copies" ON public.backup_copies;
        IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'authenticated') THEN
            GRANT SELECT ON public.backup_copies TO authenticated;
            CREATE POLICY "Managers can view backup copies" ON public.backup_copies
                FOR SELECT TO authenticated USING ((SELECT public.dbbackup_is_manager()));
        ELSE
            CREATE POLICY "Managers can view backup copies" ON public.backup_copies
                FOR SELECT USING ((SELECT public.dbbackup_is_manager()));
        END IF;
    END IF;
END
$migration$;
