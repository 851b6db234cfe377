# Notifications: a job whose spec has a `notify` URL gets a JSON summary
# POSTed there when it ends (done, failed, cancelled), signed with
# HMAC-SHA256 under this deployment's secret (client/povstorm/farm/notify.py).
#
#   whoever moves a job -> topic job-events (pubsub.tf) -> push subscription
#   (retry backoff) -> function job_event -> POST to the job's URL, delivery
#   recorded on the job
#
# The secret is made here once and kept in Secret Manager; only job_event
# reads it (POVSTORM_NOTIFY_SECRET, a secret environment variable). Receivers
# get it with
#   gcloud secrets versions access latest --secret=<namespace>-notify-secret
# It is also in the terraform state, as every random_password is: keep the
# state where only the deployment's owners read it.

resource "random_password" "notify" {
  length  = 48
  special = false
}

resource "google_secret_manager_secret" "notify" {
  project   = local.project
  secret_id = "${local.ns}-notify-secret"
  labels    = local.labels

  replication {
    auto {}
  }

  depends_on = [google_project_service.apis]
}

resource "google_secret_manager_secret_version" "notify" {
  secret      = google_secret_manager_secret.notify.id
  secret_data = random_password.notify.result
}

resource "google_cloudfunctions2_function" "job_event" {
  project  = local.project
  name     = "${local.ns}-${replace(local.names.functions.job_event, "_", "-")}"
  location = local.region
  labels   = local.labels

  build_config {
    runtime           = "python311"
    entry_point       = local.names.functions.job_event
    service_account   = google_service_account.builder.id
    docker_repository = google_artifact_registry_repository.images.id
    source {
      storage_source {
        bucket = google_storage_bucket.sources.name
        object = google_storage_bucket_object.functions_source.name
      }
    }
  }

  service_config {
    service_account_email          = google_service_account.notify.email
    ingress_settings               = "ALLOW_INTERNAL_ONLY" # Pub/Sub push counts as internal
    all_traffic_on_latest_revision = true
    max_instance_count             = var.function_max_instance_count
    available_memory               = var.function_memory
    timeout_seconds                = var.event_timeout_seconds
    environment_variables          = local.function_env

    secret_environment_variables {
      key        = local.env.notify_secret
      project_id = local.project
      secret     = google_secret_manager_secret.notify.secret_id
      version    = "latest"
    }
  }

  # No event_trigger: the push subscription job_events (pubsub.tf) delivers
  # to it, with the retry backoff a trigger cannot set.

  depends_on = [
    google_project_iam_member.builder_writes_logs,
    google_project_iam_member.builder_reads_function_sources,
    google_artifact_registry_repository_iam_member.builder_pushes_images,
    google_storage_bucket_iam_member.builder_reads_sources,
    google_secret_manager_secret_iam_member.notify_reads_secret,
    google_secret_manager_secret_version.notify,
  ]
}
