# The Cloud Functions (gen 2): submit and reconcile over HTTP, frame_finalized
# and frame_failed on Pub/Sub through Eventarc (job_event, pushed to by a
# subscription of its own, is in notify.tf). All five run functions/main.py
# from one source archive staged by `make functions-zip`:
#
#   build/functions/main.py            functions/main.py
#   build/functions/requirements.txt   functions/requirements.txt
#   build/functions/povstorm/...       client/povstorm (with names.json)

locals {
  functions_source_dir = var.functions_source_dir != "" ? var.functions_source_dir : "${path.module}/../../../build/functions"

  # What every function process reads through Settings.from_env(). Both
  # launchers are Cloud Run Jobs: submit, frame_failed (a requeue when no task
  # runs) and the reconciler start render tasks; the last frame's event and
  # the reconciler start the stitch. The render slots are the most render
  # tasks at once: the chunk plan's width (client/povstorm/core/chunks.py) and
  # what a launch may add to the tasks still active. The task sizes are what
  # submit records on each job, to compute its cost with (core/cost.py).
  function_env = {
    (local.env.project)           = local.project
    (local.env.namespace)         = local.ns
    (local.env.bucket)            = google_storage_bucket.work.name
    (local.env.region)            = local.region
    (local.env.stitch_launcher)   = "cloud-run"
    (local.env.stitch_job)        = google_cloud_run_v2_job.stitch.id
    (local.env.render_launcher)   = "cloud-run"
    (local.env.render_job)        = google_cloud_run_v2_job.render.id
    (local.env.render_slots)      = tostring(var.render_service_max_instance_count)
    (local.env.frame_cache_days)  = tostring(var.frame_cache_days)
    (local.env.frame_cache_bytes) = tostring(var.frame_cache_max_bytes)
    (local.env.render_cpus)       = tostring(var.render_service_cpus)
    (local.env.render_memory)     = var.render_service_ram
    (local.env.stitch_cpus)       = tostring(var.stitch_job_cpus)
    (local.env.stitch_memory)     = var.stitch_job_ram

    # How long after its end a job expires: submit records it on the job,
    # whose expire_at the TTL policy of firestore.tf acts on.
    (local.env.jobs_retention_days) = tostring(var.jobs_retention_days)
  }

  pubsub_event_type = "google.cloud.pubsub.topic.v1.messagePublished"
}

data "archive_file" "functions" {
  type        = "zip"
  source_dir  = local.functions_source_dir
  output_path = "${local.functions_source_dir}/../functions-source.zip"
  excludes    = ["**/__pycache__/**", "**/*.pyc"]

  lifecycle {
    precondition {
      condition = alltrue([
        for f in ["main.py", "requirements.txt", "povstorm/names.json"] : fileexists("${local.functions_source_dir}/${f}")
      ])
      error_message = "The functions source is not staged: run `make functions-zip` (main.py, requirements.txt and povstorm/ at the root of build/functions)."
    }
  }
}

resource "google_storage_bucket_object" "functions_source" {
  # Named by content: a changed archive is a new object, which redeploys the functions.
  name   = "functions/${data.archive_file.functions.output_md5}.zip"
  bucket = google_storage_bucket.sources.name
  source = data.archive_file.functions.output_path
}

resource "google_cloudfunctions2_function" "submit" {
  # checkov:skip=CKV_GCP_124: the client submits from outside Google Cloud; only callers with roles/run.invoker on this function (var.operators) and a Google-signed ID token get through.
  project  = local.project
  name     = "${local.ns}-${replace(local.names.functions.submit, "_", "-")}"
  location = local.region
  labels   = local.labels

  build_config {
    runtime           = "python311"
    entry_point       = local.names.functions.submit
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
    service_account_email = google_service_account.submit.email
    # The client calls it from outside Google Cloud; only principals holding
    # roles/run.invoker on it (var.operators) get through.
    ingress_settings               = "ALLOW_ALL"
    all_traffic_on_latest_revision = true
    max_instance_count             = var.function_max_instance_count
    available_memory               = var.function_memory
    timeout_seconds                = var.submit_timeout_seconds
    environment_variables          = local.function_env
  }

  depends_on = [
    google_project_iam_member.builder_writes_logs,
    google_project_iam_member.builder_reads_function_sources,
    google_artifact_registry_repository_iam_member.builder_pushes_images,
    google_storage_bucket_iam_member.builder_reads_sources,
  ]
}

resource "google_cloudfunctions2_function" "frame_finalized" {
  project  = local.project
  name     = "${local.ns}-${replace(local.names.functions.frame_finalized, "_", "-")}"
  location = local.region
  labels   = local.labels

  build_config {
    runtime           = "python311"
    entry_point       = local.names.functions.frame_finalized
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
    service_account_email          = google_service_account.events.email
    ingress_settings               = "ALLOW_INTERNAL_ONLY"
    all_traffic_on_latest_revision = true
    max_instance_count             = var.function_max_instance_count
    available_memory               = var.function_memory
    timeout_seconds                = var.event_timeout_seconds
    environment_variables          = local.function_env
  }

  event_trigger {
    trigger_region        = local.region
    event_type            = local.pubsub_event_type
    pubsub_topic          = google_pubsub_topic.frame_events.id
    service_account_email = google_service_account.invoker.email
    # A non-2xx answer (contention, an outage) is redelivered; poison is
    # acknowledged by the function itself.
    retry_policy = "RETRY_POLICY_RETRY"
  }

  depends_on = [
    google_project_iam_member.builder_writes_logs,
    google_project_iam_member.builder_reads_function_sources,
    google_artifact_registry_repository_iam_member.builder_pushes_images,
    google_storage_bucket_iam_member.builder_reads_sources,
  ]
}

resource "google_cloudfunctions2_function" "frame_failed" {
  project  = local.project
  name     = "${local.ns}-${replace(local.names.functions.frame_failed, "_", "-")}"
  location = local.region
  labels   = local.labels

  build_config {
    runtime           = "python311"
    entry_point       = local.names.functions.frame_failed
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
    service_account_email          = google_service_account.events.email
    ingress_settings               = "ALLOW_INTERNAL_ONLY"
    all_traffic_on_latest_revision = true
    max_instance_count             = var.function_max_instance_count
    available_memory               = var.function_memory
    timeout_seconds                = var.event_timeout_seconds
    environment_variables          = local.function_env
  }

  # Failure reports from the render tasks; the dead-letter topic reaches the
  # same function through the second trigger below.
  event_trigger {
    trigger_region        = local.region
    event_type            = local.pubsub_event_type
    pubsub_topic          = google_pubsub_topic.failures.id
    service_account_email = google_service_account.invoker.email
    retry_policy          = "RETRY_POLICY_RETRY"
  }

  depends_on = [
    google_project_iam_member.builder_writes_logs,
    google_project_iam_member.builder_reads_function_sources,
    google_artifact_registry_repository_iam_member.builder_pushes_images,
    google_storage_bucket_iam_member.builder_reads_sources,
  ]
}

# A gen 2 function takes one event_trigger: the work dead-letter topic gets its
# own Eventarc trigger to the same Cloud Run service (named like the function).
# It delivers the same CloudEvent (google.cloud.pubsub.topic.v1.messagePublished).
resource "google_eventarc_trigger" "work_dead_letter" {
  project         = local.project
  name            = "${local.ns}-${replace(local.names.topics.work_dead_letter, "_", "-")}"
  location        = local.region
  service_account = google_service_account.invoker.email
  labels          = local.labels

  matching_criteria {
    attribute = "type"
    value     = local.pubsub_event_type
  }

  destination {
    cloud_run_service {
      service = google_cloudfunctions2_function.frame_failed.name
      region  = local.region
    }
  }

  transport {
    pubsub {
      topic = google_pubsub_topic.work_dead_letter.id
    }
  }

  depends_on = [google_cloud_run_v2_service_iam_member.invoker_runs_frame_failed]
}

resource "google_cloudfunctions2_function" "reconcile" {
  project  = local.project
  name     = "${local.ns}-${replace(local.names.functions.reconcile, "_", "-")}"
  location = local.region
  labels   = local.labels

  build_config {
    runtime           = "python311"
    entry_point       = local.names.functions.reconcile
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
    service_account_email          = google_service_account.reconciler.email
    ingress_settings               = "ALLOW_INTERNAL_ONLY" # Cloud Scheduler counts as internal
    all_traffic_on_latest_revision = true
    # One pass at a time is enough; overlapping passes are safe but wasted.
    max_instance_count    = 1
    available_memory      = var.function_memory
    timeout_seconds       = var.reconcile_timeout_seconds
    environment_variables = local.function_env
  }

  depends_on = [
    google_project_iam_member.builder_writes_logs,
    google_project_iam_member.builder_reads_function_sources,
    google_artifact_registry_repository_iam_member.builder_pushes_images,
    google_storage_bucket_iam_member.builder_reads_sources,
  ]
}

resource "google_cloud_scheduler_job" "reconcile" {
  project          = local.project
  region           = local.region
  name             = "${local.ns}-${replace(local.names.functions.reconcile, "_", "-")}"
  description      = "Repairs what a crash or a lost event left undone (povstorm.farm.reconcile)."
  schedule         = var.reconcile_schedule
  time_zone        = "Etc/UTC"
  attempt_deadline = "${var.reconcile_timeout_seconds}s"

  # The next tick is the retry.
  retry_config {
    retry_count = 0
  }

  http_target {
    http_method = "POST"
    uri         = google_cloudfunctions2_function.reconcile.service_config[0].uri
    oidc_token {
      service_account_email = google_service_account.scheduler.email
      audience              = google_cloudfunctions2_function.reconcile.service_config[0].uri
    }
  }

  depends_on = [google_cloud_run_v2_service_iam_member.scheduler_runs_reconcile]
}
