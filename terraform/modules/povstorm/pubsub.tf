# Topics and subscriptions, named '<namespace>-<name>' from names.json as
# povstorm.core.names.Namespace does.
#
#   work              submit / retries / reconciler -> render service (push, OIDC)
#   work-dead-letter  work messages Pub/Sub gave up on -> frame_failed
#   frame-events      GCS OBJECT_FINALIZE on frames/ -> frame_finalized
#   failures          render service's failure reports -> frame_failed
#
# The function consumers subscribe through Eventarc (functions.tf), which
# creates and names its own push subscriptions; the local stack names its
# subscriptions from names.json instead.

resource "google_pubsub_topic" "work" {
  # checkov:skip=CKV_GCP_83: Google-managed encryption; CMEK for a queue of work references (job id, unit, attempt) is not worth a KMS key.
  project = local.project
  name    = "${local.ns}-${local.names.topics.work}"
  labels  = local.labels

  depends_on = [google_project_service.apis]
}

resource "google_pubsub_topic" "work_dead_letter" {
  # checkov:skip=CKV_GCP_83: Google-managed encryption; the messages are copies of work messages.
  project = local.project
  name    = "${local.ns}-${local.names.topics.work_dead_letter}"
  labels  = local.labels

  depends_on = [google_project_service.apis]
}

resource "google_pubsub_topic" "frame_events" {
  # checkov:skip=CKV_GCP_83: Google-managed encryption; the messages are object notifications of a bucket with Google-managed encryption.
  project = local.project
  name    = "${local.ns}-${local.names.topics.frame_events}"
  labels  = local.labels

  depends_on = [google_project_service.apis]
}

resource "google_pubsub_topic" "failures" {
  # checkov:skip=CKV_GCP_83: Google-managed encryption; the messages hold error text and a log object name.
  project = local.project
  name    = "${local.ns}-${local.names.topics.failures}"
  labels  = local.labels

  depends_on = [google_project_service.apis]
}

# One work message per unit, pushed to the render service. The service
# answers when the frame is uploaded (2xx), reported as failed (2xx) or hit a
# transient error (503: redelivered with backoff). A message that is never
# answered in time is delivered again; after max_delivery_attempts it goes to
# the dead-letter topic and frame_failed records that attempt as failed.
resource "google_pubsub_subscription" "work" {
  project = local.project
  name    = "${local.ns}-${local.names.subscriptions.work}"
  topic   = google_pubsub_topic.work.id
  labels  = local.labels

  ack_deadline_seconds       = local.ack_deadline_seconds
  message_retention_duration = "604800s" # 7 days: a long job's queue survives a paused render service

  expiration_policy {
    ttl = "" # never expire, however long the farm sits idle
  }

  retry_policy {
    minimum_backoff = "10s"
    maximum_backoff = "600s"
  }

  dead_letter_policy {
    dead_letter_topic     = google_pubsub_topic.work_dead_letter.id
    max_delivery_attempts = local.names.defaults.max_delivery_attempts
  }

  push_config {
    push_endpoint = google_cloud_run_v2_service.render.uri
    oidc_token {
      service_account_email = google_service_account.invoker.email
      audience              = google_cloud_run_v2_service.render.uri
    }
  }

  depends_on = [
    google_cloud_run_v2_service_iam_member.invoker_runs_render,
    google_pubsub_topic_iam_member.pubsub_agent_publishes_dead_letters,
  ]
}
