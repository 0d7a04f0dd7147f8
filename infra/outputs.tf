output "function_urls" {
  description = "URL of each function (the console's is the one managers open)."
  value       = { for name, f in google_cloudfunctions2_function.fn : name => f.service_config[0].uri }
}

output "scheduler_audiences" {
  description = "The audience each function checks on Scheduler's tokens (its SCHEDULER_AUDIENCE)."
  value       = module.function_env.urls
}

output "console_url" {
  description = "Open this in a browser; add its origin to the Supabase project's allowed redirect URLs."
  value       = google_cloudfunctions2_function.fn["backup_console"].service_config[0].uri
}

output "runtime_service_account" {
  description = "The scheduled functions' identity (no key). It reads the secrets but RESTORE_TARGETS; it is not the Drive identity."
  value       = google_service_account.runtime.email
}

output "console_service_account" {
  description = "backup_console's identity (no key): the secrets, RESTORE_TARGETS too, and the two Scheduler jobs' get/update."
  value       = google_service_account.console.email
}

output "scheduler_service_account" {
  description = "The account Scheduler's tokens are signed as (SCHEDULER_SERVICE_ACCOUNT)."
  value       = google_service_account.scheduler.email
}

output "secrets" {
  description = "Secrets to fill with `gcloud secrets versions add <id> --data-file=-` before the functions can start."
  value       = { for name, s in google_secret_manager_secret.this : name => s.secret_id }
}
