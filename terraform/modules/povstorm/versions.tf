terraform {
  # 1.5: check blocks and lifecycle preconditions.
  required_version = ">= 1.5"

  required_providers {
    google = {
      source = "hashicorp/google"
      # 6.x: deletion_protection on Cloud Run v2 resources, build_config.service_account
      # on Cloud Functions gen 2, soft_delete_policy on buckets.
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
      # The notifications' signing secret (notify.tf).
      source  = "hashicorp/random"
      version = ">= 3.5"
    }
  }
}
