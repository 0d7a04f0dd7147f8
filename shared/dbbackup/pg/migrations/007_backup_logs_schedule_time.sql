-- Cloud Scheduler retries a job with the same X-CloudScheduler-ScheduleTime. The slot is kept on
-- the attempt's row so that a retry arriving after that slot's backup succeeded is answered
-- "already done" instead of starting a second backup (a retry after a failure still runs).
-- NULL: a manual or CLI backup, or a call without the header. Additive only.
ALTER TABLE public.backup_logs ADD COLUMN IF NOT EXISTS schedule_time timestamptz;

-- The lookup of a slot's success, and a guard in the database itself: at most one successful
-- backup per scheduled slot, whatever reaches the table.
CREATE UNIQUE INDEX IF NOT EXISTS idx_backup_logs_schedule_time_success
    ON public.backup_logs (schedule_time) WHERE status::text = 'success'::text AND schedule_time IS NOT NULL;
