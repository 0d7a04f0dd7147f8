-- The app owns invoice_configurations; create it only where it is missing (a fresh database),
-- and add the three backup settings without touching values a manager already changed.
CREATE TABLE IF NOT EXISTS public.invoice_configurations (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    config_key varchar(100) NOT NULL UNIQUE,
    config_value text,
    config_type varchar(50),
    description text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

INSERT INTO public.invoice_configurations (config_key, config_value, config_type, description)
VALUES
    ('backup_folder_path', 'MyDrive/DatabaseBackups', 'string',
     'Google Drive folder where database backups are stored'),
    ('backup_notification_email', 'pega2023test@gmail.com', 'email',
     'E-mail address that receives backup failure alerts'),
    ('backup_enabled', 'true', 'boolean',
     'Whether the scheduled nightly backup runs')
ON CONFLICT (config_key) DO NOTHING;
