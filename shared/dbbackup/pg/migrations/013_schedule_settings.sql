-- The schedule and retention settings a manager may change in the console (issue 20), beside the
-- three backup settings of 002. NULL means "not changed in the console": the deployment's own
-- setting applies (the Scheduler job as Terraform made it, BACKUP_TIMEZONE, BACKUP_RETENTION_DAYS,
-- BACKUP_KEEP_WEEKLY, BACKUP_KEEP_MONTHLY). The backup_ prefix puts them under 006's guard trigger:
-- only managers (and the functions) may change them.
INSERT INTO public.invoice_configurations (config_key, config_value, config_type, description)
VALUES
    ('backup_schedule_cron', NULL, 'cron', 'Cron schedule of the nightly backup (applied to its Scheduler job)'),
    ('backup_schedule_time_zone', NULL, 'time_zone',
     'Time zone of the backup schedule and of the backup file names'),
    ('backup_cleanup_cron', NULL, 'cron', 'Cron schedule of the retention cleanup (applied to its Scheduler job)'),
    ('backup_cleanup_time_zone', NULL, 'time_zone', 'Time zone of the cleanup schedule'),
    ('backup_retention_days', NULL, 'integer', 'The cleanup deletes backups older than this many days'),
    ('backup_keep_weekly', NULL, 'integer', 'Also keep the newest backup of each of the last N ISO weeks'),
    ('backup_keep_monthly', NULL, 'integer', 'Also keep the newest backup of each of the last N calendar months')
ON CONFLICT (config_key) DO NOTHING;
