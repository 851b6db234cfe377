# Topics and subscriptions, named '<namespace>-<name>' from names.json as
# povstorm.core.names.Namespace does.
#
#   work              submit / retries / reconciler / hand-offs -> render tasks (pull)
#   work-dead-letter  work messages Pub/Sub gave up on -> frame_failed
#   frame-events      GCS OBJECT_FINALIZE on frames/ -> frame_finalized
#   failures          render tasks' failure reports -> frame_failed
#   job-events        every job state change, from whoever made it -> job_event
#
# The render tasks pull the work subscription below. The function consumers
# subscribe through Eventarc (functions.tf), which creates and names its own
# push subscriptions; the local stack names its subscriptions from names.json
# instead. job_event is pushed to by a subscription of this module's own
# (below), whose backoff paces the retries of a notification.

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

resource "google_pubsub_topic" "job_events" {
  # checkov:skip=CKV_GCP_83: Google-managed encryption; the messages hold a job id, its state and a time.
  project = local.project
  name    = "${local.ns}-${local.names.topics.job_events}"
  labels  = local.labels

  depends_on = [google_project_service.apis]
}

# Every job state change reaches job_event, which notifies a finished job's
# `notify` URL (client/povstorm/farm/notify.py). A receiver that does not
# answer 2xx makes the function answer 500, and this subscription delivers the
# event again after its backoff (10 s doubling to 600 s): the function gives up
# after 8 attempts, about 20 minutes, and acknowledges, so no dead-letter
# topic is needed. The push carries an OIDC token of the invoker account,
# as Eventarc's pushes to the other event functions do.
resource "google_pubsub_subscription" "job_events" {
  project = local.project
  name    = "${local.ns}-${local.names.subscriptions.job_events}"
  topic   = google_pubsub_topic.job_events.id
  labels  = local.labels

  ack_deadline_seconds       = 60
  message_retention_duration = "86400s"

  expiration_policy {
    ttl = ""
  }

  retry_policy {
    minimum_backoff = "10s"
    maximum_backoff = "600s"
  }

  push_config {
    # The topic in the path, as the local stack's pushes: functions-framework
    # names the CloudEvent's source from it.
    push_endpoint = "${google_cloudfunctions2_function.job_event.service_config[0].uri}/projects/${local.project}/topics/${google_pubsub_topic.job_events.name}"
    oidc_token {
      service_account_email = google_service_account.invoker.email
      audience              = google_cloudfunctions2_function.job_event.service_config[0].uri
    }
  }

  depends_on = [google_cloud_run_v2_service_iam_member.invoker_runs_job_event]
}
