# Topics and subscriptions, named '<namespace>-<name>' from names.json as
# povstorm.core.names.Namespace does.
#
#   work              submit / retries / reconciler / hand-offs -> render tasks (pull)
#   work-dead-letter  work messages Pub/Sub gave up on -> frame_failed
#   frame-events      GCS OBJECT_FINALIZE on frames/ -> frame_finalized
#   failures          render tasks' failure reports -> frame_failed
#
# The render tasks pull the work subscription below. The function consumers
# subscribe through Eventarc (functions.tf), which creates and names its own
# push subscriptions; the local stack names its subscriptions from names.json
# instead.

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

# One work message per chunk, pulled by the render job's tasks (run.tf). A
# task pulls one message at a time and holds it with a lease of its own that
# it keeps extending (modifyAckDeadline) while POV-Ray runs, so no frame has to
# fit in the ack deadline: it is only the lease of a message until its task's
# first extension, and how soon a task that died takes its chunk back to the
# queue. The task acknowledges on every outcome (rendered, failed and
# reported, handed on, skipped, poison); a message whose lease lapses is
# delivered again, and after max_delivery_attempts it goes to the dead-letter
# topic and frame_failed records that attempt as failed.
resource "google_pubsub_subscription" "work" {
  project = local.project
  name    = "${local.ns}-${local.names.subscriptions.work}"
  topic   = google_pubsub_topic.work.id
  labels  = local.labels

  ack_deadline_seconds       = local.work_ack_deadline_seconds
  message_retention_duration = "604800s" # 7 days: a long job's queue survives a stopped farm

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

  depends_on = [google_pubsub_topic_iam_member.pubsub_agent_publishes_dead_letters]
}
