# --- where ---------------------------------------------------------------------

variable "target_gcp_project_id" {
  description = "The project to deploy into (it must exist, with billing enabled)."
  type        = string
}

variable "target_gcp_region" {
  description = "Region of every regional resource: Cloud Run, functions, Pub/Sub triggers, Scheduler, Artifact Registry, and by default the bucket and the Firestore database."
  type        = string
  default     = "us-central1"
}

variable "povstorm_namespace" {
  description = "Prefix of every resource name (topics '<namespace>-work', service accounts '<namespace>-render', ...). Two deployments in one project need two namespaces. Same default as names.json."
  type        = string
  default     = "povstorm"

  validation {
    # Service account ids are 6-30 characters: '<namespace>-reconciler' must fit.
    condition     = can(regex("^[a-z][a-z0-9-]{1,17}[a-z0-9]$", var.povstorm_namespace))
    error_message = "povstorm_namespace: 3-19 of a-z, 0-9 and '-', starting with a letter and not ending with '-'."
  }
}

variable "labels" {
  description = "Labels added to every resource that takes labels."
  type        = map(string)
  default     = {}
}

# --- the render job ----------------------------------------------------------------
#
# Render workers are tasks of the Cloud Run Job '<namespace>-render' (run.tf):
# each task pulls chunks from the work subscription until it finds none (or its
# time budget ends), then exits. The variables keep their render_service_* names
# so existing tfvars go on working.

variable "render_service_max_instance_count" {
  description = "Most render tasks at once (POVSTORM_RENDER_SLOTS): one POV-Ray process per task, so the most frames rendered at once. The render job's parallelism, and the total the launchers keep to over all its executions. 1,000 tasks need quota increases (docs/deploy.md, Quotas)."
  type        = number
  default     = 20

  validation {
    condition     = var.render_service_max_instance_count >= 1 && var.render_service_max_instance_count <= 10000
    error_message = "render_service_max_instance_count: 1-10000 (a Cloud Run Job execution has at most 10,000 tasks)."
  }
}

variable "render_service_cpus" {
  description = "vCPUs per render task. POV-Ray renders with one thread per CPU."
  type        = number
  default     = 2

  validation {
    condition     = contains([1, 2, 4, 6, 8], var.render_service_cpus)
    error_message = "render_service_cpus: one of 1, 2, 4, 6, 8 (Cloud Run)."
  }
}

variable "render_service_ram" {
  description = "Memory per render task (Cloud Run syntax, e.g. 2Gi). The container's files live in memory too: scene inputs, the frames of a chunk, its segment and the logs. Cloud Run wants at least 2Gi for 4 vCPU and 4Gi for 6 or 8."
  type        = string
  default     = "2Gi"
}

variable "render_task_timeout_seconds" {
  description = "Task timeout of the render job: how long one render task may live (pull, render chunks, upload), after which Cloud Run stops it. Cloud Run allows up to 168 hours (604800 s) per task attempt (https://cloud.google.com/run/docs/configuring/task-timeout). A frame must still fit in it: a task begins no frame that would end past POVSTORM_RENDER_TIMEOUT = this minus render_upload_margin_seconds, and hands the rest of its chunk on."
  type        = number
  default     = 3600

  validation {
    condition     = var.render_task_timeout_seconds >= 60 && var.render_task_timeout_seconds <= 604800
    error_message = "render_task_timeout_seconds: 60-604800 (Cloud Run's maximum task timeout, 168 hours)."
  }
}

variable "render_upload_margin_seconds" {
  description = "Time kept back from render_task_timeout_seconds for the last frame's upload, the hand-off of the rest of its chunk and the task's exit: a task's render budget is render_task_timeout_seconds minus this (POVSTORM_RENDER_TIMEOUT)."
  type        = number
  default     = 60
}

variable "render_task_max_retries" {
  description = "Retries of a render task that fails (exits non-zero, runs out of memory, hits its timeout). A retry pulls whatever work is left, which need not be the chunk the failed attempt held (that one is redelivered after its lease). Same as TASK_RETRIES in client/povstorm/cloud/launchers.py (the local task runner)."
  type        = number
  default     = 3

  validation {
    condition     = var.render_task_max_retries >= 0 && var.render_task_max_retries <= 10
    error_message = "render_task_max_retries: 0-10 (Cloud Run's maximum task retries)."
  }
}

variable "render_task_idle_seconds" {
  description = "A render task exits once a pull has found no work for this long (POVSTORM_TASK_IDLE_SECONDS). It is billed while it waits, so keep it short; the launchers start new tasks for new work."
  type        = number
  default     = 10

  validation {
    condition     = var.render_task_idle_seconds >= 0 && var.render_task_idle_seconds <= 600
    error_message = "render_task_idle_seconds: 0-600."
  }
}

# --- the stitch job --------------------------------------------------------------

variable "stitch_job_cpus" {
  description = "vCPUs of the stitch (ffmpeg) task."
  type        = number
  default     = 2

  validation {
    condition     = contains([1, 2, 4, 6, 8], var.stitch_job_cpus)
    error_message = "stitch_job_cpus: one of 1, 2, 4, 6, 8 (Cloud Run)."
  }
}

variable "stitch_job_ram" {
  description = "Memory of the stitch task; it holds every frame of the job and the video (in-memory filesystem)."
  type        = string
  default     = "4Gi"
}

variable "stitch_timeout_seconds" {
  description = "Timeout of one stitch execution. Keep it below the reconciler's stitch deadline (30 min, povstorm.farm.reconcile.Deadlines.stitch_run), after which it launches the stitch again."
  type        = number
  default     = 1500

  validation {
    condition     = var.stitch_timeout_seconds >= 60 && var.stitch_timeout_seconds < 1800
    error_message = "stitch_timeout_seconds: 60-1799 (below the reconciler's 30 min relaunch deadline)."
  }
}

variable "stitch_max_retries" {
  description = "Retries of a failed stitch execution by Cloud Run (the reconciler relaunches one that never finished, too)."
  type        = number
  default     = 1
}

# --- the functions ---------------------------------------------------------------

variable "function_max_instance_count" {
  description = "Most instances of each event function (frame_finalized, frame_failed) and of submit."
  type        = number
  default     = 20
}

variable "function_memory" {
  description = "Memory of each function instance."
  type        = string
  default     = "512Mi"
}

variable "submit_timeout_seconds" {
  description = "Timeout of the submit function (it publishes one message per chunk and starts render tasks before it answers)."
  type        = number
  default     = 300
}

variable "event_timeout_seconds" {
  description = "Timeout of frame_finalized and frame_failed (one ledger transaction and, for the last frame or a requeue with no task running, a run_job call)."
  type        = number
  default     = 120
}

variable "reconcile_schedule" {
  description = "Cloud Scheduler cron (UTC) calling the reconcile function."
  type        = string
  default     = "* * * * *"
}

variable "reconcile_timeout_seconds" {
  description = "Timeout of one reconcile run (and of the scheduler's attempt)."
  type        = number
  default     = 240

  validation {
    condition     = var.reconcile_timeout_seconds >= 15 && var.reconcile_timeout_seconds <= 1800
    error_message = "reconcile_timeout_seconds: 15-1800 (Cloud Scheduler's HTTP attempt deadline)."
  }
}

variable "functions_source_dir" {
  description = "Directory staged by `make functions-zip` (main.py, requirements.txt and the povstorm package at its root). Empty: <repo>/build/functions."
  type        = string
  default     = ""
}

# --- images ------------------------------------------------------------------------

variable "image_tag" {
  description = "Tag of the render and stitch images pushed by `make images` (use a new tag per build so Cloud Run deploys a new revision)."
  type        = string
  default     = "latest"
}

variable "render_image" {
  description = "Full render image reference. Empty: <region>-docker.pkg.dev/<project>/<namespace>/render:<image_tag>."
  type        = string
  default     = ""
}

variable "stitch_image" {
  description = "Full stitch image reference. Empty: <region>-docker.pkg.dev/<project>/<namespace>/stitch:<image_tag>."
  type        = string
  default     = ""
}

# --- storage -----------------------------------------------------------------------

variable "bucket_name" {
  description = "The work bucket (inputs/, frames/, logs/, videos/). Empty: '<project>-<namespace>'."
  type        = string
  default     = ""
}

variable "bucket_location" {
  description = "Location of the buckets. Empty: target_gcp_region (keep it in the render region: no cross-region egress per frame)."
  type        = string
  default     = ""
}

variable "frame_lifecycle_days" {
  description = "Frames (frames/) and video segments (segments/) are deleted this many days after upload (a bucket lifecycle rule); 0 keeps them until `povstorm rm` or `povstorm gc` deletes their job. Inputs, manifests and videos are never deleted by age."
  type        = number
  default     = 7

  validation {
    condition     = var.frame_lifecycle_days == 0 || var.frame_lifecycle_days >= 1
    error_message = "frame_lifecycle_days: 0 (keep) or at least 1 (a running job still needs its frames for the stitch)."
  }
}

variable "logs_lifecycle_days" {
  description = "POV-Ray's logs (logs/, what `povstorm logs` shows) are deleted this many days after upload; 0 keeps them until their job is deleted. null: frame_lifecycle_days."
  type        = number
  default     = null

  validation {
    condition     = coalesce(var.logs_lifecycle_days, 0) >= 0
    error_message = "logs_lifecycle_days: 0 (keep) or more, or null (as frame_lifecycle_days)."
  }
}

variable "frame_cache_days" {
  description = "Frames in the frame cache (cache/) are deleted this many days after they were rendered (a bucket lifecycle rule, POVSTORM_FRAME_CACHE_DAYS); a job that needs one later renders it again. 0: no age limit (frame_cache_max_bytes still trims)."
  type        = number
  default     = 30

  validation {
    condition     = var.frame_cache_days >= 0
    error_message = "frame_cache_days: 0 (no age limit) or more."
  }
}

variable "jobs_retention_days" {
  description = "A job's ledger document is deleted this many days after the job ended (done, failed or cancelled): the ledger writes its expire_at (POVSTORM_JOBS_RETENTION_DAYS) and a Firestore TTL policy deletes it, usually within a day after. TTL deletes the job document alone: `povstorm gc` removes its units, shards and objects. 0: no TTL policy, jobs are kept."
  type        = number
  default     = 90

  validation {
    condition     = var.jobs_retention_days >= 0
    error_message = "jobs_retention_days: 0 (keep) or more."
  }
}

variable "frame_cache_max_bytes" {
  description = "The reconciler deletes the oldest cached frames past this size (bytes; 0: no limit). It trims at most once an hour."
  type        = number
  default     = 10737418240

  validation {
    condition     = var.frame_cache_max_bytes >= 0
    error_message = "frame_cache_max_bytes: 0 or more."
  }
}

variable "force_destroy_buckets" {
  description = "Let `terraform destroy` delete buckets that still hold objects."
  type        = bool
  default     = false
}

# --- Firestore ---------------------------------------------------------------------

variable "create_firestore_database" {
  description = "Create the (default) Firestore database. Set false when the project already has one in native mode (then it is only used, never changed)."
  type        = bool
  default     = true
}

variable "firestore_location" {
  description = "Firestore location (a region such as us-central1, or a multi-region such as nam5). Empty: target_gcp_region."
  type        = string
  default     = ""
}

variable "firestore_point_in_time_recovery" {
  description = "Keep 7 days of Firestore versions (billed as storage)."
  type        = bool
  default     = false
}

variable "deletion_protection" {
  description = "Protect the Firestore database, the render job and the stitch job against `terraform destroy`."
  type        = bool
  default     = false
}

# --- who may use it ----------------------------------------------------------------

variable "operators" {
  description = "IAM members who submit and follow jobs with the povstorm client ('user:ana@example.com', 'group:render@example.com', 'serviceAccount:ci@p.iam.gserviceaccount.com'). They get the roles of the 'operators' rows in docs/deploy.md."
  type        = list(string)
  default     = []
}

# --- outputs -----------------------------------------------------------------------

variable "outputs_file" {
  description = "Where to write the outputs as JSON for `povstorm ... --cluster FILE` (Cluster.from_terraform). Empty: povstorm-outputs.json in the root module's directory."
  type        = string
  default     = ""
}
