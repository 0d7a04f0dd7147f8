-- Supabase Storage's objects in a backup (BACKUP_SUPABASE_STORAGE): one row per object of one
-- successful backup, naming the content-addressed blob (sha256) that holds its bytes under
-- storage-blobs/ in every target. Retention keeps a blob while a kept backup's rows refer to it;
-- storage-restore puts the rows' objects back. Readable by managers, like backup_logs; written
-- only by the functions' own connection (the owner). Additive only.
CREATE TABLE IF NOT EXISTS public.storage_manifest (
    backup_log_id uuid NOT NULL REFERENCES public.backup_logs (id) ON DELETE CASCADE,
    bucket text NOT NULL,
    object_key text NOT NULL,
    size_bytes bigint NOT NULL CHECK (size_bytes >= 0),
    sha256 text NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    content_type text,
    metadata jsonb NOT NULL DEFAULT '{}'::jsonb,
    etag text,
    PRIMARY KEY (backup_log_id, bucket, object_key)
);
CREATE INDEX IF NOT EXISTS idx_storage_manifest_sha256 ON public.storage_manifest (sha256);
ALTER TABLE public.storage_manifest ENABLE ROW LEVEL SECURITY;

DO $migration$
DECLARE
    role_name text;
BEGIN
    FOREACH role_name IN ARRAY ARRAY['anon', 'authenticated'] LOOP
        IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = role_name) THEN
            EXECUTE format('REVOKE ALL ON public.storage_manifest FROM %I', role_name);
        END IF;
    END LOOP;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'service_role') THEN
        GRANT SELECT, INSERT, UPDATE, DELETE ON public.storage_manifest TO service_role;
    END IF;
    IF to_regprocedure('public.dbbackup_is_manager()') IS NOT NULL THEN
        DROP POLICY IF EXISTS "Managers can view the storage manifest" ON public.storage_manifest;
        IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'authenticated') THEN
            GRANT SELECT ON public.storage_manifest TO authenticated;
            CREATE POLICY "Managers can view the storage manifest" ON public.storage_manifest
                FOR SELECT TO authenticated USING ((SELECT public.dbbackup_is_manager()));
        ELSE
            CREATE POLICY "Managers can view the storage manifest" ON public.storage_manifest
                FOR SELECT USING ((SELECT public.dbbackup_is_manager()));
        END IF;
    END IF;
END
$migration$;
