-- The manual-backup rate limit lives in the database, not in an instance's memory, so it holds
-- however many function instances run. One row per (subject, action): when it last started.
-- Only the functions' own connection (the owner) touches it: RLS on, no policy, no API grants.
CREATE TABLE IF NOT EXISTS public.dbbackup_rate_limits (
    subject varchar(255) NOT NULL,
    action varchar(50) NOT NULL,
    last_at timestamptz NOT NULL,
    PRIMARY KEY (subject, action)
);
ALTER TABLE public.dbbackup_rate_limits ENABLE ROW LEVEL SECURITY;

DO $migration$
DECLARE
    role_name text;
BEGIN
    FOREACH role_name IN ARRAY ARRAY['anon', 'authenticated'] LOOP
        IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = role_name) THEN
            EXECUTE format('REVOKE ALL ON public.dbbackup_rate_limits FROM %I', role_name);
        END IF;
    END LOOP;
END
$migration$;
