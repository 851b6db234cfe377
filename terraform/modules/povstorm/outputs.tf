# What a client needs to use this deployment. The same values are written to
# povstorm-outputs.json, which `povstorm ... --cluster FILE` and
# Cluster.from_terraform(FILE) read (project, bucket and submit_url are
# required there; region, namespace, stitch_job, render_job and render_slots
# are used when present: `povstorm retry` starts render tasks itself).

locals {
  outputs = {
    project            = local.project
    region             = local.region
    namespace          = local.ns
    bucket             = google_storage_bucket.work.name
    submit_url         = google_cloudfunctions2_function.submit.service_config[0].uri
    render_job         = google_cloud_run_v2_job.render.id
    render_slots       = var.render_service_max_instance_count
    stitch_job         = google_cloud_run_v2_job.stitch.id
    firestore_database = local.firestore_database
    image_repository   = local.repository
  }
}

resource "local_file" "outputs" {
  filename        = var.outputs_file != "" ? var.outputs_file : "${path.root}/povstorm-outputs.json"
  content         = "${jsonencode(local.outputs)}\n"
  file_permission = "0644"
}

output "project" {
  description = "The project povstorm runs in."
  value       = local.outputs.project
}

output "region" {
  description = "The region of its regional resources."
  value       = local.outputs.region
}

output "namespace" {
  description = "Prefix of its resource names (POVSTORM_NAMESPACE)."
  value       = local.outputs.namespace
}

output "bucket" {
  description = "The work bucket (POVSTORM_BUCKET)."
  value       = local.outputs.bucket
}

output "submit_url" {
  description = "URL of the submit function; also the audience of the ID token the client sends."
  value       = local.outputs.submit_url
}

output "render_job" {
  description = "Full resource name of the render Cloud Run Job (POVSTORM_RENDER_JOB): projects/P/locations/R/jobs/<namespace>-render."
  value       = local.outputs.render_job
}

output "render_slots" {
  description = "Most render tasks at once (POVSTORM_RENDER_SLOTS, render_service_max_instance_count)."
  value       = local.outputs.render_slots
}

output "stitch_job" {
  description = "Full resource name of the stitch Cloud Run Job (POVSTORM_STITCH_JOB)."
  value       = local.outputs.stitch_job
}

output "firestore_database" {
  description = "The Firestore database holding the ledger."
  value       = local.outputs.firestore_database
}

output "image_repository" {
  description = "Artifact Registry path the images are pushed to (make images REGISTRY=...)."
  value       = local.outputs.image_repository
}

output "outputs_file" {
  description = "Path of the JSON file holding these outputs."
  value       = local_file.outputs.filename
}
