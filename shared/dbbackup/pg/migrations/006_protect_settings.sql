-- Nobody signed in to the app may change the backup settings or our migration record.
--
-- invoice_configurations belongs to the app: its other rows and its own access rules are not
-- ours to change, and Supabase's default privileges may let anon/authenticated write it. A guard
-- trigger therefore protects only the backup_* rows: anon can never write them, authenticated
-- only when dbbackup_is_manager() says so; the functions (table owner, service_role) are free.
-- Without it, anyone holding the public anon key could switch backups off, redirect the alerts,
-- or point backup_folder_path at a Drive folder of their own.
CREATE OR REPLACE FUNCTION public.dbbackup_guard_backup_settings() RETURNS trigger
LANGUAGE plpgsql SET search_path = '' AS $$
DECLARE
    is_manager boolean := false;
BEGIN
    IF current_user NOT IN ('anon', 'authenticated') THEN
        RETURN COALESCE(NEW, OLD);
    END IF;
    IF TG_OP = 'TRUNCATE' THEN
        RAISE EXCEPTION 'only the backup service may truncate invoice_configurations'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF (TG_OP <> 'INSERT' AND OLD.config_key LIKE 'backup\_%')
       OR (TG_OP <> 'DELETE' AND NEW.config_key LIKE 'backup\_%') THEN
        IF current_user = 'authenticated' AND to_regprocedure('public.dbbackup_is_manager()') IS NOT NULL THEN
            EXECUTE 'SELECT public.dbbackup_is_manager()' INTO is_manager;
        END IF;
        IF NOT COALESCE(is_manager, false) THEN
            RAISE EXCEPTION 'only managers may change the backup settings'
                USING ERRCODE = 'insufficient_privilege';
        END IF;
    END IF;
    RETURN COALESCE(NEW, OLD);
END;
$$;

DROP TRIGGER IF EXISTS dbbackup_guard_backup_settings ON public.invoice_configurations;
CREATE TRIGGER dbbackup_guard_backup_settings
    BEFORE INSERT OR UPDATE OR DELETE ON public.invoice_configurations
    FOR EACH ROW EXECUTE FUNCTION public.dbbackup_guard_backup_settings();
DROP TRIGGER IF EXISTS dbbackup_guard_backup_settings_truncate ON public.invoice_configurations;
CREATE TRIGGER dbbackup_guard_backup_settings_truncate
    BEFORE TRUNCATE ON public.invoice_configurations
    FOR EACH STATEMENT EXECUTE FUNCTION public.dbbackup_guard_backup_settings();

-- Our migration record: nobody signed in may read or forge it (a forged row would make migrate
-- skip a future security migration).
ALTER TABLE public.dbbackup_migrations ENABLE ROW LEVEL SECURITY;

DO $migration$
DECLARE
    role_name text;
BEGIN
    FOREACH role_name IN ARRAY ARRAY['anon', 'authenticated'] LOOP
        IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = role_name) THEN
            EXECUTE format('REVOKE ALL ON public.dbbackup_migrations FROM %I', role_name);
            EXECUTE format('REVOKE ALL ON FUNCTION public.dbbackup_guard_backup_settings() FROM %I', role_name);
            IF to_regprocedure('public.dbbackup_is_manager()') IS NOT NULL AND role_name = 'anon' THEN
                REVOKE ALL ON FUNCTION public.dbbackup_is_manager() FROM anon;
            END IF;
        END IF;
    END LOOP;
    IF (SELECT NOT relrowsecurity FROM pg_class WHERE oid = 'public.invoice_configurations'::regclass)
       AND EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'anon')
       AND has_table_privilege('anon', 'public.invoice_configurations', 'SELECT') THEN
        RAISE NOTICE 'invoice_configurations has no row level security and anon may read it (the backup '
                     'notification e-mail included): consider enabling RLS on it in the app';
    END IF;
END
$migration$;
