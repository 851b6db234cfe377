# The render workers: tasks of this Cloud Run Job, `python -m
# povstorm.shells.render_task`, each the pull worker the local stack runs. A
# task pulls one chunk at a time from the work subscription (any job's: jobs
# share the running tasks), holds it with a short lease it keeps extending
# while POV-Ray runs, acknowledges it on every outcome, and exits when a pull
# finds nothing for POVSTORM_TASK_IDLE_SECONDS or its render budget
# (POVSTORM_RENDER_TIMEOUT from its start) would be passed by one more frame,
# handing the rest of its chunk on.
#
# Whoever publishes work starts the tasks for it (CloudRunRenderLauncher:
# run_job with a task_count override; submit, frame_failed, the reconciler,
# `povstorm retry`): task_count here is only the default of an execution
# nobody overrides. Parallelism caps one execution; the launchers keep the
# total over all executions to render_service_max_instance_count
# (POVSTORM_RENDER_SLOTS minus the tasks still active).
resource "google_cloud_run_v2_job" "render" {
  project             = local.project
  name                = "${local.ns}-render"
  location            = local.region
  deletion_protection = var.deletion_protection
  labels              = local.labels

  template {
    task_count  = 1
    parallelism = var.render_service_max_instance_count

    template {
      service_account       = google_service_account.render.email
      timeout               = "${var.render_task_timeout_seconds}s"
      max_retries           = var.render_task_max_retries
      execution_environment = "EXECUTION_ENVIRONMENT_GEN2"

      containers {
        image   = local.render_image
        command = ["python", "-m", "povstorm.shells.render_task"]

        resources {
          limits = {
            cpu    = tostring(var.render_service_cpus)
            memory = var.render_service_ram
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
        env {
          # The task's render budget: what is left of the task timeout after
          # the last upload and the hand-off.
          name  = local.env.render_timeout
          value = tostring(var.render_task_timeout_seconds - var.render_upload_margin_seconds)
        }
        env {
          # The chunk plan's width when a task hands the rest of a chunk on.
          name  = local.env.render_slots
          value = tostring(var.render_service_max_instance_count)
        }
        env {
          name  = local.env.task_idle
          value = tostring(var.render_task_idle_seconds)
        }
        env {
          # Inputs are cached per task (in memory) across the chunks it renders.
          name  = local.env.cache_dir
          value = "/tmp/povstorm-cache"
        }
        env {
          # Render tasks start nothing: the publishers and the reconciler do.
          name  = local.env.render_launcher
          value = "none"
        }
      }
    }
  }

  lifecycle {
    precondition {
      condition     = var.render_upload_margin_seconds >= 10 && var.render_upload_margin_seconds < var.render_task_timeout_seconds
      error_message = "render_upload_margin_seconds must be at least 10 and below render_task_timeout_seconds."
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
