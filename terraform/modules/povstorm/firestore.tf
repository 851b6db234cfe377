# The ledger: jobs/{job} with the subcollections units/{n} and shards/{k}.
resource "google_firestore_database" "default" {
  count = var.create_firestore_database ? 1 : 0

  project     = local.project
  name        = local.firestore_database
  location_id = var.firestore_location != "" ? var.firestore_location : local.region
  type        = "FIRESTORE_NATIVE"
  # The ledger's transactions read, then write: pessimistic locking is what
  # the emulator models and what the invariants were measured with.
  concurrency_mode            = "PESSIMISTIC"
  app_engine_integration_mode = "DISABLED"
  point_in_time_recovery_enablement = (
    var.firestore_point_in_time_recovery ? "POINT_IN_TIME_RECOVERY_ENABLED" : "POINT_IN_TIME_RECOVERY_DISABLED"
  )
  delete_protection_state = var.deletion_protection ? "DELETE_PROTECTION_ENABLED" : "DELETE_PROTECTION_DISABLED"
  deletion_policy         = var.deletion_protection ? "ABANDON" : "DELETE"

  depends_on = [google_project_service.apis]
}

# Single-field indexes (automatic) serve the client's "recent jobs" query
# (order by created_at desc), the reconciler's active jobs (state in [...])
# and a job's units by state. These composite ones serve the rest:

# Jobs in some states, most recent first (`povstorm jobs --state ...`).
resource "google_firestore_index" "jobs_by_state_created" {
  project    = local.project
  database   = local.firestore_database
  collection = local.names.collections.jobs

  fields {
    field_path = "state"
    order      = "ASCENDING"
  }
  fields {
    field_path = "created_at"
    order      = "DESCENDING"
  }

  depends_on = [google_firestore_database.default]
}

# The failed units of one shard (retry): shard == k and state == failed.
resource "google_firestore_index" "units_by_shard_state" {
  project    = local.project
  database   = local.firestore_database
  collection = local.names.collections.units

  fields {
    field_path = "shard"
    order      = "ASCENDING"
  }
  fields {
    field_path = "state"
    order      = "ASCENDING"
  }

  depends_on = [google_firestore_database.default]
}

# Firestore's TTL policy on jobs: a job document is deleted once its
# expire_at has passed (usually within a day). The ledger writes expire_at
# when a job ends, jobs_retention_days later (POVSTORM_JOBS_RETENTION_DAYS on
# the functions; client/povstorm/ledger/docs.py: TTL_FIELD). TTL deletes the
# document alone, never its subcollections (units, shards, completions):
# `povstorm gc` removes those and the job's objects.
resource "google_firestore_field" "jobs_expire_at" {
  count = var.jobs_retention_days > 0 ? 1 : 0

  project    = local.project
  database   = local.firestore_database
  collection = local.names.collections.jobs
  field      = "expire_at"

  # A timestamp only ever compared by the TTL policy: no single-field
  # indexes (which would also make it a write hotspot).
  index_config {}
  ttl_config {}

  depends_on = [google_firestore_database.default]
}
