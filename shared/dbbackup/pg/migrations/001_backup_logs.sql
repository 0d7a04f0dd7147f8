-- backup_logs exactly as the spec defines it, plus three columns of our own
-- (triggered_by, md5_checksum, sql_bytes). Everything is IF NOT EXISTS so a re-run is a no-op.
-- The CHECKs compare as text: PostgreSQL prints `varchar IN ('a', 'b')` in a form that reads back
-- differently, so a restored schema would not match the original's dump; this form round-trips.
CREATE TABLE IF NOT EXISTS public.backup_logs (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    backup_type varchar(20) NOT NULL CHECK (backup_type::text IN ('automatic'::text, 'manual'::text)),
    status varchar(20) NOT NULL CHECK (status::text IN ('success'::text, 'failed'::text, 'in_progress'::text)),
    file_name varchar(255) NOT NULL,
    file_size_bytes bigint,
    google_drive_file_id varchar(255),
    google_drive_path text,
    failure_reason text,
    started_at timestamptz NOT NULL DEFAULT now(),
    completed_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    deleted_at timestamptz
);

ALTER TABLE public.backup_logs ADD COLUMN IF NOT EXISTS triggered_by varchar(255);
ALTER TABLE public.backup_logs ADD COLUMN IF NOT EXISTS md5_checksum varchar(32);
ALTER TABLE public.backup_logs ADD COLUMN IF NOT EXISTS sql_bytes bigint;

CREATE INDEX IF NOT EXISTS idx_backup_logs_status ON public.backup_logs (status);
CREATE INDEX IF NOT EXISTS idx_backup_logs_backup_type ON public.backup_logs (backup_type);
CREATE INDEX IF NOT EXISTS idx_backup_logs_started_at ON public.backup_logs (started_at DESC);
CREATE INDEX IF NOT EXISTS idx_backup_logs_created_at ON public.backup_logs (created_at DESC);

CREATE OR REPLACE FUNCTION public.backup_logs_set_updated_at() RETURNS trigger
LANGUAGE plpgsql SET search_path = '' AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END;
$$;

DROP TRIGGER IF EXISTS backup_logs_updated_at ON public.backup_logs;
CREATE TRIGGER backup_logs_updated_at BEFORE UPDATE ON public.backup_logs
    FOR EACH ROW EXECUTE FUNCTION public.backup_logs_set_updated_at();
