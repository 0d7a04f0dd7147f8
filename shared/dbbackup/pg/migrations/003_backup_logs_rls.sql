-- Row level security for backup_logs.
-- Managers and admins (user_profiles.role) may read; nobody signed in may write. The spec's
-- write policies WITH CHECK (true) / USING (true) named no role, which would have let any
-- signed-in user forge or erase logs through the Supabase API: writes are left to roles that
-- bypass RLS (service_role, and the table owner the functions connect as).
ALTER TABLE public.backup_logs ENABLE ROW LEVEL SECURITY;

DROP POLICY IF EXISTS "Allow insert for service role" ON public.backup_logs;
DROP POLICY IF EXISTS "Allow update for service role" ON public.backup_logs;

DO $migration$
DECLARE
    has_uid boolean := to_regprocedure('auth.uid()') IS NOT NULL;
    has_profiles boolean := to_regclass('public.user_profiles') IS NOT NULL;
    key_column text;
    role_name text;
BEGIN
    -- Supabase grants every table in public to anon/authenticated by default privileges;
    -- TRUNCATE is not subject to RLS at all, so the write privileges go.
    FOREACH role_name IN ARRAY ARRAY['anon', 'authenticated'] LOOP
        IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = role_name) THEN
            EXECUTE format('REVOKE INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER '
                           'ON public.backup_logs FROM %I', role_name);
        ELSE
            RAISE NOTICE 'skipped: role % does not exist (not a Supabase database)', role_name;
        END IF;
    END LOOP;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'anon') THEN
        REVOKE SELECT ON public.backup_logs FROM anon;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'service_role') THEN
        GRANT SELECT, INSERT, UPDATE, DELETE ON public.backup_logs TO service_role;
    ELSE
        RAISE NOTICE 'skipped: role service_role does not exist; writes stay with the table owner';
    END IF;

    IF NOT (has_uid AND has_profiles) THEN
        RAISE NOTICE 'skipped: manager read policy (needs auth.uid() and public.user_profiles; '
                     'found auth.uid(): %, user_profiles: %). Only the owner can read backup_logs.',
                     has_uid, has_profiles;
        RETURN;
    END IF;

    SELECT c.column_name INTO key_column
      FROM information_schema.columns c
     WHERE c.table_schema = 'public' AND c.table_name = 'user_profiles'
       AND c.column_name IN ('id', 'user_id')
     ORDER BY c.column_name = 'user_id' DESC
     LIMIT 1;
    IF key_column IS NULL OR NOT EXISTS (
        SELECT 1 FROM information_schema.columns
         WHERE table_schema = 'public' AND table_name = 'user_profiles' AND column_name = 'role') THEN
        RAISE NOTICE 'skipped: manager read policy (user_profiles lacks a user_id/id or role column)';
        RETURN;
    END IF;

    -- SECURITY DEFINER so the policy works whatever RLS user_profiles itself has; it only
    -- answers "is the caller a manager", never exposes a row.
    EXECUTE format($fn$
        CREATE OR REPLACE FUNCTION public.dbbackup_is_manager() RETURNS boolean
        LANGUAGE sql STABLE SECURITY DEFINER SET search_path = '' AS $body$
            SELECT EXISTS (
                SELECT 1 FROM public.user_profiles p
                 WHERE p.%I::text = auth.uid()::text AND p.role IN ('manager', 'admin'))
        $body$ $fn$, key_column);
    REVOKE ALL ON FUNCTION public.dbbackup_is_manager() FROM PUBLIC;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'authenticated') THEN
        GRANT EXECUTE ON FUNCTION public.dbbackup_is_manager() TO authenticated;
        GRANT SELECT ON public.backup_logs TO authenticated;
    END IF;

    DROP POLICY IF EXISTS "Managers can view backup logs" ON public.backup_logs;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'authenticated') THEN
        CREATE POLICY "Managers can view backup logs" ON public.backup_logs
            FOR SELECT TO authenticated USING ((SELECT public.dbbackup_is_manager()));
    ELSE
        CREATE POLICY "Managers can view backup logs" ON public.backup_logs
            FOR SELECT USING ((SELECT public.dbbackup_is_manager()));
    END IF;
END
$migration$;
