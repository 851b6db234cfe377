# povstorm on Google Cloud: the cloud half of the event flow in
# docs/architecture.md (the local stack is the other half).
#
# Every name the code knows (topics, subscriptions, collections, prefixes,
# environment variables, function entry points) is read from the package's
# names.json, the file povstorm.core.names reads, so code and infrastructure
# cannot drift. tests/test_terraform.py checks the wiring statically.

locals {
  names = jsondecode(file("${path.module}/../../../client/povstorm/names.json"))
  env   = local.names.env

  ns      = var.povstorm_namespace
  project = var.target_gcp_project_id
  region  = var.target_gcp_region

  labels = merge(var.labels, { povstorm = local.ns })

  bucket_name     = var.bucket_name != "" ? var.bucket_name : "${local.project}-${local.ns}"
  bucket_location = var.bucket_location != "" ? var.bucket_location : local.region

  repository   = "${local.region}-docker.pkg.dev/${local.project}/${google_artifact_registry_repository.images.repository_id}"
  render_image = var.render_image != "" ? var.render_image : "${local.repository}/render:${var.image_tag}"
  stitch_image = var.stitch_image != "" ? var.stitch_image : "${local.repository}/stitch:${var.image_tag}"

  firestore_database = "(default)"

  # The work subscription is pulled: a render task holds its chunk with a
  # lease it keeps extending, so the ack deadline is only a pulled message's
  # first lease (and how soon a dead task's chunk is delivered again).
  work_ack_deadline_seconds = 60

  # Google-managed identities of the project, granted below exactly what the
  # wiring needs (dead-lettering, Eventarc's OIDC pushes, bucket notifications).
  pubsub_agent = "service-${data.google_project.this.number}@gcp-sa-pubsub.iam.gserviceaccount.com"
  gcs_agent    = data.google_storage_project_service_account.gcs.email_address

  # Where Cloud Functions stages each function's source for its build.
  gcf_sources_bucket = "gcf-v2-sources-${data.google_project.this.number}-${local.region}"

  apis = toset([
    "artifactregistry.googleapis.com",
    "cloudbuild.googleapis.com",
    "cloudfunctions.googleapis.com",
    "cloudresourcemanager.googleapis.com",
    "cloudscheduler.googleapis.com",
    "eventarc.googleapis.com",
    "firestore.googleapis.com",
    "iam.googleapis.com",
    "iamcredentials.googleapis.com",
    "logging.googleapis.com",
    "pubsub.googleapis.com",
    "run.googleapis.com",
    "secretmanager.googleapis.com",
    "storage.googleapis.com",
  ])
}

resource "google_project_service" "apis" {
  for_each = local.apis

  project = local.project
  service = each.value
  # Other workloads in the project may use the same APIs: tearing povstorm
  # down must not switch them off.
  disable_on_destroy = false
}

data "google_project" "this" {
  project_id = local.project
}

data "google_storage_project_service_account" "gcs" {
  project = local.project

  depends_on = [google_project_service.apis]
}

resource "google_artifact_registry_repository" "images" {
  # checkov:skip=CKV_GCP_84: Google-managed encryption; the images hold open-source software and povstorm's own code, nothing that needs a customer-managed key.
  project       = local.project
  location      = local.region
  repository_id = local.ns
  format        = "DOCKER"
  description   = "povstorm images: render, stitch (make images) and the functions' builds"
  labels        = local.labels

  cleanup_policy_dry_run = false
  cleanup_policies {
    id     = "keep-recent"
    action = "KEEP"
    most_recent_versions {
      keep_count = 10
    }
  }
  cleanup_policies {
    id     = "delete-old"
    action = "DELETE"
    condition {
      tag_state  = "ANY"
      older_than = "2592000s" # 30 days
    }
  }

  depends_on = [google_project_service.apis]
}
