locals {
  # POV-Ray's logs expire with the frames unless logs_lifecycle_days says otherwise.
  logs_lifecycle_days = coalesce(var.logs_lifecycle_days, var.frame_lifecycle_days)
}

# The work bucket: inputs/ (content-addressed, uploaded once), frames/ (one
# object per done unit; its OBJECT_FINALIZE event counts the unit), logs/
# (POV-Ray output per attempt), segments/ (runs of frames a worker encoded as
# video, which the stitch joins) and videos/ (the stitch's results).
resource "google_storage_bucket" "work" {
  # checkov:skip=CKV_GCP_62: access logs would double the writes of a bucket that takes one object per frame; Cloud Audit Logs (Data Access) can be enabled for the project instead.
  # checkov:skip=CKV_GCP_78: versioning is off on purpose: frames, segments and logs are rewritten by retries and expire by their lifecycle rules; old generations would only cost storage.
  project  = local.project
  name     = local.bucket_name
  location = local.bucket_location
  labels   = local.labels

  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = var.force_destroy_buckets

  versioning {
    enabled = false
  }

  # Frames and segments are rewritten and deleted by design; soft delete would
  # bill every one of them for another 7 days.
  soft_delete_policy {
    retention_duration_seconds = 0
  }

  # Retention by age, one rule per variable; a variable of 0 keeps its
  # objects until `povstorm rm` / `povstorm gc` deletes their job. No rule
  # touches inputs/, jobs/ (manifests: what rebuilds a job) or videos/: those
  # go with their job (client/povstorm/farm/cleanup.py).
  dynamic "lifecycle_rule" {
    for_each = var.frame_lifecycle_days > 0 ? [var.frame_lifecycle_days] : []
    content {
      condition {
        age            = lifecycle_rule.value
        matches_prefix = [local.names.prefixes.frames, local.names.prefixes.segments]
      }
      action {
        type = "Delete"
      }
    }
  }

  dynamic "lifecycle_rule" {
    for_each = local.logs_lifecycle_days > 0 ? [local.logs_lifecycle_days] : []
    content {
      condition {
        age            = lifecycle_rule.value
        matches_prefix = [local.names.prefixes.logs]
      }
      action {
        type = "Delete"
      }
    }
  }

  # The frame cache (cache/<key>.png, client/povstorm/farm/cache.py): an
  # entry lives frame_cache_days after it was rendered; the reconciler trims
  # the oldest past frame_cache_max_bytes.
  dynamic "lifecycle_rule" {
    for_each = var.frame_cache_days > 0 ? [var.frame_cache_days] : []
    content {
      condition {
        age            = lifecycle_rule.value
        matches_prefix = [local.names.prefixes.cache]
      }
      action {
        type = "Delete"
      }
    }
  }

  depends_on = [google_project_service.apis]
}

# Function source archives (one small zip per deploy) and Cloud Build's
# source staging for `make images`.
resource "google_storage_bucket" "sources" {
  # checkov:skip=CKV_GCP_62: holds deploy artifacts only; Cloud Audit Logs cover who changed them.
  # checkov:skip=CKV_GCP_78: each source archive is named by its MD5, so no object is ever overwritten.
  project  = local.project
  name     = "${local.bucket_name}-sources"
  location = local.bucket_location
  labels   = local.labels

  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = true # only rebuildable artifacts live here

  versioning {
    enabled = false
  }

  depends_on = [google_project_service.apis]
}

# GCS -> Pub/Sub: one message per finalized frame object (segments are not
# counted, so not notified). The payload is the object resource (JSON_API_V1):
# name, generation and the render stats the render task put into the
# object metadata.
resource "google_storage_notification" "frames" {
  bucket             = google_storage_bucket.work.name
  topic              = google_pubsub_topic.frame_events.id
  payload_format     = "JSON_API_V1"
  event_types        = ["OBJECT_FINALIZE"]
  object_name_prefix = local.names.prefixes.frames

  depends_on = [google_pubsub_topic_iam_member.gcs_agent_publishes_frame_events]
}
