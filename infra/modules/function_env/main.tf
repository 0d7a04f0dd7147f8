# The environment of each function, and the URL each one answers on, from plain values only.
#
# No provider and no resource here, on purpose: tests/test_as_deployed.py evaluates this very
# module with `terraform console` (offline) and serves the functions locally with the result,
# so what is tested is what Terraform sets. Variable names are the code's (README "Configuration").

variable "project_id" {
  type = string
}

variable "project_number" {
  type = string
}

variable "region" {
  type = string
}

variable "name_prefix" {
  type = string
}

variable "scheduler_service_account" {
  description = "E-mail of the account Cloud Scheduler signs its OIDC tokens as."
  type        = string
}

variable "secret_ids" {
  description = "Secret Manager secret id per variable the code can read from a secret (secret_manager.SECRET_VARIABLES)."
  type        = map(string)
}

variable "secret_version" {
  type = string
}

variable "settings" {
  description = "Plain settings shared by every function: variable name => value (empty = the code's default)."
  type        = map(string)
}

variable "console_settings" {
  description = "Settings only the console reads (its sign-in page's Supabase project, the Scheduler jobs it may update)."
  type        = map(string)
}

locals {
  # One entry per function: the entry point in functions/<name>/main.py.
  functions = ["database_backup", "cleanup_old_backups", "verify_backup", "backup_console"]

  # Cloud Run service names (the function names) and their deterministic URLs, known before
  # the functions exist: each function must be told its own URL (SCHEDULER_AUDIENCE) and
  # Scheduler's token must carry it.
  service_names = { for f in local.functions : f => "${var.name_prefix}-${replace(f, "_", "-")}" }
  urls          = { for f, name in local.service_names : f => "https://${name}-${var.project_number}.${var.region}.run.app" }

  # Secrets are read by the code at the first request (X_SECRET = a version's resource name),
  # with the runtime account's own identity: no secret value is ever in Terraform's state.
  secret_env_all = {
    for name, id in var.secret_ids : name => "projects/${var.project_id}/secrets/${id}/versions/${var.secret_version}"
  }
  # Secrets only the console reads (RESTORE_TARGETS: its restore routes parse it), so a bad value
  # or a missing version never stops the backup, the cleanup or the drill.
  console_only_secrets = ["RESTORE_TARGETS"]
  secret_env           = { for name, v in local.secret_env_all : "${name}_SECRET" => v if !contains(local.console_only_secrets, name) }
  console_secret_env   = { for name, v in local.secret_env_all : "${name}_SECRET" => v if contains(local.console_only_secrets, name) }

  common_env = merge(
    # An empty setting is left out: the code's default applies (README "Configuration").
    { for name, value in var.settings : name => value if value != "" },
    local.secret_env,
    {
      # Deployed, backups go to Drive (and the object stores the settings add): a function's
      # local disk is memory and lasts one instance, so "local" is never a target here.
      BACKUP_STORAGE            = lookup(var.settings, "BACKUP_STORAGE", "") != "" ? var.settings["BACKUP_STORAGE"] : "google_drive"
      DBBACKUP_CACHE_DIR        = "/tmp/dbbackup-cache"
      SCHEDULER_SERVICE_ACCOUNT = var.scheduler_service_account
    },
  )

  env = {
    for f in local.functions : f => merge(
      local.common_env,
      { SCHEDULER_AUDIENCE = local.urls[f] },
      f == "backup_console" ? merge(
        { for name, value in var.console_settings : name => value if value != "" },
        local.console_secret_env,
      ) : {},
    )
  }
}

output "functions" {
  value = local.functions
}

output "service_names" {
  value = local.service_names
}

output "urls" {
  value = local.urls
}

output "env" {
  value = local.env
}
