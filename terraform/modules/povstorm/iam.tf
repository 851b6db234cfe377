# One service account per component, each holding only the roles listed in
# docs/deploy.md ("Service accounts and roles"); tests/test_terraform.py
# compares that table with the bindings below in both directions.
#
# Scopes are as narrow as the API allows: a topic, a subscription, the
# bucket, one service or job. Firestore grants only at project level
# (roles/datastore.user).
#
# Starting render tasks (CloudRunRenderLauncher) takes two predefined roles on
# the render job, the narrowest that carry what it calls:
#   roles/run.jobsExecutorWithOverrides  run.jobs.run, run.jobs.runWithOverrides
#       (run_job with a task_count override) and run.executions.cancel
#       (`povstorm cancel`);
#   roles/run.viewer                     run.executions.list / get (active():
#       the tasks of executions not yet finished), read-only.
# Both are checked on the job (an execution's permissions are its job's):
# https://cloud.google.com/run/docs/reference/iam/roles,
# https://cloud.google.com/run/docs/reference/rest/v2/projects.locations.jobs.executions/list

resource "google_service_account" "submit" {
  project      = local.project
  account_id   = "${local.ns}-submit"
  display_name = "povstorm submit function"
  description  = "Writes new jobs to the ledger, publishes their work messages and starts render tasks."

  depends_on = [google_project_service.apis]
}

resource "google_service_account" "events" {
  project      = local.project
  account_id   = "${local.ns}-events"
  display_name = "povstorm frame_finalized and frame_failed functions"
  description  = "Counts frames and failures in the ledger, requeues retries, starts render tasks and the stitch."

  depends_on = [google_project_service.apis]
}

resource "google_service_account" "reconciler" {
  project      = local.project
  account_id   = "${local.ns}-reconciler"
  display_name = "povstorm reconcile function"
  description  = "Repairs lost events: republishes work, starts render tasks, recounts frames from the bucket, relaunches stitches."

  depends_on = [google_project_service.apis]
}

resource "google_service_account" "render" {
  project      = local.project
  account_id   = "${local.ns}-render"
  display_name = "povstorm render tasks"
  description  = "Pulls work, reads inputs, renders, writes frames and logs, reports failures, hands work on."

  depends_on = [google_project_service.apis]
}

resource "google_service_account" "stitch" {
  project      = local.project
  account_id   = "${local.ns}-stitch"
  display_name = "povstorm stitch job"
  description  = "Reads a job's frames, writes its video, records the result."

  depends_on = [google_project_service.apis]
}

resource "google_service_account" "invoker" {
  project      = local.project
  account_id   = "${local.ns}-invoker"
  display_name = "povstorm Eventarc invoker"
  description  = "Identity in the OIDC tokens of Eventarc deliveries to the event functions."

  depends_on = [google_project_service.apis]
}

resource "google_service_account" "scheduler" {
  project      = local.project
  account_id   = "${local.ns}-scheduler"
  display_name = "povstorm reconcile scheduler"
  description  = "Identity in the OIDC token of the Cloud Scheduler call to reconcile."

  depends_on = [google_project_service.apis]
}

resource "google_service_account" "builder" {
  project      = local.project
  account_id   = "${local.ns}-builder"
  display_name = "povstorm builds"
  description  = "Cloud Build identity of the function builds and of `make images`."

  depends_on = [google_project_service.apis]
}

# --- submit --------------------------------------------------------------------------

resource "google_project_iam_member" "submit_uses_firestore" {
  project = local.project
  role    = "roles/datastore.user"
  member  = "serviceAccount:${google_service_account.submit.email}"
}

resource "google_pubsub_topic_iam_member" "submit_publishes_work" {
  project = local.project
  topic   = google_pubsub_topic.work.name
  role    = "roles/pubsub.publisher"
  member  = "serviceAccount:${google_service_account.submit.email}"
}

resource "google_cloud_run_v2_job_iam_member" "submit_runs_render" {
  project  = local.project
  location = local.region
  name     = google_cloud_run_v2_job.render.name
  role     = "roles/run.jobsExecutorWithOverrides"
  member   = "serviceAccount:${google_service_account.submit.email}"
}

resource "google_cloud_run_v2_job_iam_member" "submit_views_render" {
  project  = local.project
  location = local.region
  name     = google_cloud_run_v2_job.render.name
  role     = "roles/run.viewer"
  member   = "serviceAccount:${google_service_account.submit.email}"
}

# --- frame_finalized / frame_failed ----------------------------------------------------

resource "google_project_iam_member" "events_uses_firestore" {
  project = local.project
  role    = "roles/datastore.user"
  member  = "serviceAccount:${google_service_account.events.email}"
}

resource "google_pubsub_topic_iam_member" "events_publishes_work" {
  project = local.project
  topic   = google_pubsub_topic.work.name
  role    = "roles/pubsub.publisher"
  member  = "serviceAccount:${google_service_account.events.email}"
}

# frame_failed starts a task for a requeued attempt when none is active.
resource "google_cloud_run_v2_job_iam_member" "events_runs_render" {
  project  = local.project
  location = local.region
  name     = google_cloud_run_v2_job.render.name
  role     = "roles/run.jobsExecutorWithOverrides"
  member   = "serviceAccount:${google_service_account.events.email}"
}

resource "google_cloud_run_v2_job_iam_member" "events_views_render" {
  project  = local.project
  location = local.region
  name     = google_cloud_run_v2_job.render.name
  role     = "roles/run.viewer"
  member   = "serviceAccount:${google_service_account.events.email}"
}

resource "google_cloud_run_v2_job_iam_member" "events_runs_stitch" {
  project  = local.project
  location = local.region
  name     = google_cloud_run_v2_job.stitch.name
  role     = "roles/run.jobsExecutorWithOverrides"
  member   = "serviceAccount:${google_service_account.events.email}"
}

# --- reconcile -------------------------------------------------------------------------

resource "google_project_iam_member" "reconciler_uses_firestore" {
  project = local.project
  role    = "roles/datastore.user"
  member  = "serviceAccount:${google_service_account.reconciler.email}"
}

resource "google_pubsub_topic_iam_member" "reconciler_publishes_work" {
  project = local.project
  topic   = google_pubsub_topic.work.name
  role    = "roles/pubsub.publisher"
  member  = "serviceAccount:${google_service_account.reconciler.email}"
}

resource "google_storage_bucket_iam_member" "reconciler_lists_frames" {
  bucket = google_storage_bucket.work.name
  role   = "roles/storage.objectViewer"
  member = "serviceAccount:${google_service_account.reconciler.email}"
}

# An active job with open units and no active task gets tasks again.
resource "google_cloud_run_v2_job_iam_member" "reconciler_runs_render" {
  project  = local.project
  location = local.region
  name     = google_cloud_run_v2_job.render.name
  role     = "roles/run.jobsExecutorWithOverrides"
  member   = "serviceAccount:${google_service_account.reconciler.email}"
}

resource "google_cloud_run_v2_job_iam_member" "reconciler_views_render" {
  project  = local.project
  location = local.region
  name     = google_cloud_run_v2_job.render.name
  role     = "roles/run.viewer"
  member   = "serviceAccount:${google_service_account.reconciler.email}"
}

resource "google_cloud_run_v2_job_iam_member" "reconciler_runs_stitch" {
  project  = local.project
  location = local.region
  name     = google_cloud_run_v2_job.stitch.name
  role     = "roles/run.jobsExecutorWithOverrides"
  member   = "serviceAccount:${google_service_account.reconciler.email}"
}

# --- render ----------------------------------------------------------------------------

resource "google_project_iam_member" "render_uses_firestore" {
  project = local.project
  role    = "roles/datastore.user"
  member  = "serviceAccount:${google_service_account.render.email}"
}

# objectUser, not objectCreator: a redelivered unit uploads its frame again,
# and replacing an object needs storage.objects.delete.
resource "google_storage_bucket_iam_member" "render_uses_objects" {
  bucket = google_storage_bucket.work.name
  role   = "roles/storage.objectUser"
  member = "serviceAccount:${google_service_account.render.email}"
}

resource "google_pubsub_topic_iam_member" "render_publishes_failures" {
  project = local.project
  topic   = google_pubsub_topic.failures.name
  role    = "roles/pubsub.publisher"
  member  = "serviceAccount:${google_service_account.render.email}"
}

# Render tasks pull chunks, extend their leases and acknowledge them.
resource "google_pubsub_subscription_iam_member" "render_pulls_work" {
  project      = local.project
  subscription = google_pubsub_subscription.work.name
  role         = "roles/pubsub.subscriber"
  member       = "serviceAccount:${google_service_account.render.email}"
}

# A task whose budget ends mid-chunk republishes the rest of it.
resource "google_pubsub_topic_iam_member" "render_publishes_work" {
  project = local.project
  topic   = google_pubsub_topic.work.name
  role    = "roles/pubsub.publisher"
  member  = "serviceAccount:${google_service_account.render.email}"
}

# --- stitch ----------------------------------------------------------------------------

resource "google_project_iam_member" "stitch_uses_firestore" {
  project = local.project
  role    = "roles/datastore.user"
  member  = "serviceAccount:${google_service_account.stitch.email}"
}

# Reads frames/, writes videos/ (again, when a stitch is relaunched).
resource "google_storage_bucket_iam_member" "stitch_uses_objects" {
  bucket = google_storage_bucket.work.name
  role   = "roles/storage.objectUser"
  member = "serviceAccount:${google_service_account.stitch.email}"
}

# --- invoker (Eventarc) ----------------------------------------------------------------

# A gen 2 function is served by a Cloud Run service of the same name.
resource "google_cloud_run_v2_service_iam_member" "invoker_runs_frame_finalized" {
  project  = local.project
  location = local.region
  name     = google_cloudfunctions2_function.frame_finalized.name
  role     = "roles/run.invoker"
  member   = "serviceAccount:${google_service_account.invoker.email}"
}

resource "google_cloud_run_v2_service_iam_member" "invoker_runs_frame_failed" {
  project  = local.project
  location = local.region
  name     = google_cloudfunctions2_function.frame_failed.name
  role     = "roles/run.invoker"
  member   = "serviceAccount:${google_service_account.invoker.email}"
}

# --- scheduler -------------------------------------------------------------------------

resource "google_cloud_run_v2_service_iam_member" "scheduler_runs_reconcile" {
  project  = local.project
  location = local.region
  name     = google_cloudfunctions2_function.reconcile.name
  role     = "roles/run.invoker"
  member   = "serviceAccount:${google_service_account.scheduler.email}"
}

# --- builder (function builds, `make images`) ------------------------------------------

resource "google_project_iam_member" "builder_writes_logs" {
  project = local.project
  role    = "roles/logging.logWriter"
  member  = "serviceAccount:${google_service_account.builder.email}"
}

resource "google_artifact_registry_repository_iam_member" "builder_pushes_images" {
  project    = local.project
  location   = local.region
  repository = google_artifact_registry_repository.images.name
  role       = "roles/artifactregistry.writer"
  member     = "serviceAccount:${google_service_account.builder.email}"
}

# The archive uploaded by terraform (and `make images`' staged source).
resource "google_storage_bucket_iam_member" "builder_reads_sources" {
  bucket = google_storage_bucket.sources.name
  role   = "roles/storage.objectViewer"
  member = "serviceAccount:${google_service_account.builder.email}"
}

# Cloud Functions copies each source archive into its own bucket,
# gcf-v2-sources-<project number>-<region>, created on the first deploy (so it
# cannot take a bucket-level binding beforehand); the build reads it there.
resource "google_project_iam_member" "builder_reads_function_sources" {
  project = local.project
  role    = "roles/storage.objectViewer"
  member  = "serviceAccount:${google_service_account.builder.email}"

  condition {
    title       = "gcf-v2-sources bucket only"
    description = "The bucket Cloud Functions stages function sources in."
    expression  = "resource.name.startsWith(\"projects/_/buckets/${local.gcf_sources_bucket}\")"
  }
}

# --- Google-managed service agents -----------------------------------------------------

# Dead-lettering: Pub/Sub forwards an undeliverable work message to the
# dead-letter topic and acknowledges it on the work subscription.
resource "google_pubsub_topic_iam_member" "pubsub_agent_publishes_dead_letters" {
  project = local.project
  topic   = google_pubsub_topic.work_dead_letter.name
  role    = "roles/pubsub.publisher"
  member  = "serviceAccount:${local.pubsub_agent}"
}

resource "google_pubsub_subscription_iam_member" "pubsub_agent_acks_work" {
  project      = local.project
  subscription = google_pubsub_subscription.work.name
  role         = "roles/pubsub.subscriber"
  member       = "serviceAccount:${local.pubsub_agent}"
}

# Pub/Sub mints the OIDC tokens of Eventarc's pushes as the invoker;
# projects created before April 2021 need this grant explicitly.
resource "google_service_account_iam_member" "pubsub_agent_signs_as_invoker" {
  service_account_id = google_service_account.invoker.name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = "serviceAccount:${local.pubsub_agent}"
}

# Bucket notifications are published by the project's Cloud Storage agent.
resource "google_pubsub_topic_iam_member" "gcs_agent_publishes_frame_events" {
  project = local.project
  topic   = google_pubsub_topic.frame_events.name
  role    = "roles/pubsub.publisher"
  member  = "serviceAccount:${local.gcs_agent}"
}

# --- operators (var.operators: the people and CI accounts running povstorm) ------------

# Submit jobs (an ID token with this role passes the function's IAM check).
resource "google_cloud_run_v2_service_iam_member" "operators_run_submit" {
  for_each = toset(var.operators)

  project  = local.project
  location = local.region
  name     = google_cloudfunctions2_function.submit.name
  role     = "roles/run.invoker"
  member   = each.value
}

# Follow progress (Firestore listeners), cancel and retry through the ledger;
# `povstorm rm` and `gc` delete jobs' documents.
resource "google_project_iam_member" "operators_use_firestore" {
  for_each = toset(var.operators)

  project = local.project
  role    = "roles/datastore.user"
  member  = each.value
}

# Upload inputs, download frames, logs and videos; `povstorm rm` and `gc`
# delete jobs' objects.
resource "google_storage_bucket_iam_member" "operators_use_objects" {
  for_each = toset(var.operators)

  bucket = google_storage_bucket.work.name
  role   = "roles/storage.objectUser"
  member = each.value
}

# `povstorm retry` publishes the requeued units itself (and starts tasks for them, below).
resource "google_pubsub_topic_iam_member" "operators_publish_work" {
  for_each = toset(var.operators)

  project = local.project
  topic   = google_pubsub_topic.work.name
  role    = "roles/pubsub.publisher"
  member  = each.value
}

# `povstorm stitch` starts an execution of the stitch job itself (`JOB --video KEY`).
resource "google_cloud_run_v2_job_iam_member" "operators_run_stitch" {
  for_each = toset(var.operators)

  project  = local.project
  location = local.region
  name     = google_cloud_run_v2_job.stitch.name
  role     = "roles/run.jobsExecutorWithOverrides"
  member   = each.value
}

# `povstorm retry` starts render tasks for the requeued units; `povstorm cancel`
# cancels the executions recorded on the job.
resource "google_cloud_run_v2_job_iam_member" "operators_run_render" {
  for_each = toset(var.operators)

  project  = local.project
  location = local.region
  name     = google_cloud_run_v2_job.render.name
  role     = "roles/run.jobsExecutorWithOverrides"
  member   = each.value
}

resource "google_cloud_run_v2_job_iam_member" "operators_view_render" {
  for_each = toset(var.operators)

  project  = local.project
  location = local.region
  name     = google_cloud_run_v2_job.render.name
  role     = "roles/run.viewer"
  member   = each.value
}

# --- notifications (notify.tf) ---------------------------------------------------------

resource "google_service_account" "notify" {
  project      = local.project
  account_id   = "${local.ns}-notify"
  display_name = "povstorm job_event function"
  description  = "Reads finished jobs, POSTs their signed summaries to their notify URLs, records the deliveries."

  depends_on = [google_project_service.apis]
}

resource "google_project_iam_member" "notify_uses_firestore" {
  project = local.project
  role    = "roles/datastore.user"
  member  = "serviceAccount:${google_service_account.notify.email}"
}

resource "google_secret_manager_secret_iam_member" "notify_reads_secret" {
  project   = local.project
  secret_id = google_secret_manager_secret.notify.secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.notify.email}"
}

resource "google_cloud_run_v2_service_iam_member" "invoker_runs_job_event" {
  project  = local.project
  location = local.region
  name     = google_cloudfunctions2_function.job_event.name
  role     = "roles/run.invoker"
  member   = "serviceAccount:${google_service_account.invoker.email}"
}

# Whoever moves a job announces it on job-events (cloud/pubsub.py:
# publish_job_event): submit (submitted, rendering), the event functions (the
# end of rendering), the reconciler (the moves it repairs, and a finished
# job's event again), the stitch (done, failed) and the operators' cancel
# and retry.
resource "google_pubsub_topic_iam_member" "submit_publishes_job_events" {
  project = local.project
  topic   = google_pubsub_topic.job_events.name
  role    = "roles/pubsub.publisher"
  member  = "serviceAccount:${google_service_account.submit.email}"
}

resource "google_pubsub_topic_iam_member" "events_publishes_job_events" {
  project = local.project
  topic   = google_pubsub_topic.job_events.name
  role    = "roles/pubsub.publisher"
  member  = "serviceAccount:${google_service_account.events.email}"
}

resource "google_pubsub_topic_iam_member" "reconciler_publishes_job_events" {
  project = local.project
  topic   = google_pubsub_topic.job_events.name
  role    = "roles/pubsub.publisher"
  member  = "serviceAccount:${google_service_account.reconciler.email}"
}

resource "google_pubsub_topic_iam_member" "stitch_publishes_job_events" {
  project = local.project
  topic   = google_pubsub_topic.job_events.name
  role    = "roles/pubsub.publisher"
  member  = "serviceAccount:${google_service_account.stitch.email}"
}

resource "google_pubsub_topic_iam_member" "operators_publish_job_events" {
  for_each = toset(var.operators)

  project = local.project
  topic   = google_pubsub_topic.job_events.name
  role    = "roles/pubsub.publisher"
  member  = each.value
}
