# A complete povstorm deployment: `terraform apply` here writes
# povstorm-outputs.json beside this file; `povstorm ... --cluster
# povstorm-outputs.json` uses it. Step by step: docs/deploy.md.

terraform {
  required_version = ">= 1.5"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = ">= 6.14, < 8.0"
    }
    archive = {
      source  = "hashicorp/archive"
      version = ">= 2.4"
    }
    local = {
      source  = "hashicorp/local"
      version = ">= 2.4"
    }
    random = {
      source  = "hashicorp/random"
      version = ">= 3.5"
    }
  }
}

provider "google" {
  project = var.target_gcp_project_id
  region  = var.target_gcp_region
}

module "povstorm" {
  source = "../../modules/povstorm"

  target_gcp_project_id = var.target_gcp_project_id
  target_gcp_region     = var.target_gcp_region
  povstorm_namespace    = var.povstorm_namespace

  render_service_max_instance_count = var.render_service_max_instance_count
  render_service_cpus               = var.render_service_cpus
  render_service_ram                = var.render_service_ram

  image_tag            = var.image_tag
  frame_lifecycle_days = var.frame_lifecycle_days
  logs_lifecycle_days  = var.logs_lifecycle_days
  jobs_retention_days  = var.jobs_retention_days
  operators            = var.operators

  outputs_file = "${path.root}/povstorm-outputs.json"
}
