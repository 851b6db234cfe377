variable "target_gcp_project_id" {
  description = "The project to deploy into."
  type        = string
}

variable "target_gcp_region" {
  description = "Region of every regional resource."
  type        = string
  default     = "us-central1"
}

variable "povstorm_namespace" {
  description = "Prefix of every resource name."
  type        = string
  default     = "povstorm"
}

variable "render_service_max_instance_count" {
  description = "Most render tasks at once (one frame each at a time)."
  type        = number
  default     = 20
}

variable "render_service_cpus" {
  description = "vCPUs per render task (1, 2, 4, 6 or 8)."
  type        = number
  default     = 2
}

variable "render_service_ram" {
  description = "Memory per render task."
  type        = string
  default     = "2Gi"
}

variable "image_tag" {
  description = "Tag of the images pushed by `make images`."
  type        = string
  default     = "latest"
}

variable "frame_lifecycle_days" {
  description = "Days before frames/ and segments/ objects are deleted (0: kept until their job is)."
  type        = number
  default     = 7
}

variable "logs_lifecycle_days" {
  description = "Days before logs/ objects are deleted (0: kept until their job is; null: as frame_lifecycle_days)."
  type        = number
  default     = null
}

variable "jobs_retention_days" {
  description = "Days after its end before a job's ledger document expires (Firestore TTL; 0: never). `povstorm gc` removes the rest."
  type        = number
  default     = 90
}

variable "operators" {
  description = "IAM members who submit and follow jobs (user:..., group:..., serviceAccount:...)."
  type        = list(string)
  default     = []
}
