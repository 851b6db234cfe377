# The render service: one POV-Ray frame (or tile) per Pub/Sub push, one push
# per instance at a time. Reachable only from inside the project (Pub/Sub
# push counts as internal) and only with an ID token of the invoker account.
resource "google_cloud_run_v2_service" "render" {
  project             = local.project
  name                = "${local.ns}-render"
  location            = local.region
  ingress             = "INGRESS_TRAFFIC_INTERNAL_ONLY"
  deletion_protection = var.deletion_protection
  labels              = local.labels

  template {
    service_account                  = google_service_account.render.email
    max_instance_request_concurrency = 1
    timeout                          = "${var.render_timeout_seconds}s"
    execution_environment            = "EXECUTION_ENVIRONMENT_GEN2"

    scaling {
      min_instance_count = 0
      max_instance_count = var.render_service_max_instance_count
    }

    containers {
      image = local.render_image

      resources {
        limits = {
          cpu    = tostring(var.render_service_cpus)
          memory = var.render_service_ram
        }
        cpu_idle          = true # billed while a frame renders, not while idle
        startup_cpu_boost = true
      }

      env {
        name  = local.env.project
        value = local.project
      }
      env {
        name  = local.env.namespace
        value = local.ns
      }
      env {
        name  = local.env.bucket
        value = google_storage_bucket.work.name
      }
      env {
        name  = local.env.region
        value = local.region
      }
      env {
        # POV-Ray's own limit: what is left of the request after the transfers.
        name  = local.env.render_timeout
        value = tostring(var.render_timeout_seconds - var.render_upload_margin_seconds)
      }
      env {
        # Inputs are cached per instance (in memory) across the frames it renders.
        name  = local.env.cache_dir
        value = "/tmp/povstorm-cache"
      }
    }
  }

  lifecycle {
    precondition {
      condition     = var.render_timeout_seconds <= local.ack_deadline_seconds
      error_message = "render_timeout_seconds exceeds the work subscription's ack deadline (names.json defaults.ack_deadline_seconds): Pub/Sub would push the frame again while it still renders. Split the frame into tiles or fewer frames per unit instead (docs/deploy.md, Limits)."
    }
    precondition {
      condition     = var.render_upload_margin_seconds >= 10 && var.render_upload_margin_seconds < var.render_timeout_seconds
      error_message = "render_upload_margin_seconds must be at least 10 and below render_timeout_seconds."
    }
  }

  depends_on = [google_project_service.apis]
}

# The stitch: `python -m povstorm.shells.stitch_job JOB_ID`, one execution per job,
# started by CloudRunStitchLauncher (run_job with the job id as the container
# argument override). The image's ENTRYPOINT holds the command; the job
# itself has no args, so an execution without the override fails fast.
resource "google_cloud_run_v2_job" "stitch" {
  project             = local.project
  name                = "${local.ns}-stitch"
  location            = local.region
  deletion_protection = var.deletion_protection
  labels              = local.labels

  template {
    task_count  = 1
    parallelism = 1

    template {
      service_account       = google_service_account.stitch.email
      timeout               = "${var.stitch_timeout_seconds}s"
      max_retries           = var.stitch_max_retries
      execution_environment = "EXECUTION_ENVIRONMENT_GEN2"

      containers {
        image = local.stitch_image

        resources {
          limits = {
            cpu    = tostring(var.stitch_job_cpus)
            memory = var.stitch_job_ram
          }
        }

        env {
          name  = local.env.project
          value = local.project
        }
        env {
          name  = local.env.namespace
          value = local.ns
        }
        env {
          name  = local.env.bucket
          value = google_storage_bucket.work.name
        }
        env {
          name  = local.env.region
          value = local.region
        }
      }
    }
  }

  depends_on = [google_project_service.apis]
}
