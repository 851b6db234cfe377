# One output per key, so `terraform output -json` has the shape
# Cluster.from_terraform reads too ({key: {value: ...}}).

output "project" {
  value = module.povstorm.project
}

output "region" {
  value = module.povstorm.region
}

output "namespace" {
  value = module.povstorm.namespace
}

output "bucket" {
  value = module.povstorm.bucket
}

output "submit_url" {
  value = module.povstorm.submit_url
}

output "render_job" {
  value = module.povstorm.render_job
}

output "render_slots" {
  value = module.povstorm.render_slots
}

output "stitch_job" {
  value = module.povstorm.stitch_job
}

output "firestore_database" {
  value = module.povstorm.firestore_database
}

output "image_repository" {
  value = module.povstorm.image_repository
}
