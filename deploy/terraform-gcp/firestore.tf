# The ledger's Firestore database: one document per source object in var.collection. Collections
# need no creation and the ledger runs no queries, so there is no index to declare.

resource "google_firestore_database" "this" {
  count = var.create_database ? 1 : 0

  project     = var.project_id
  name        = var.database
  location_id = coalesce(var.firestore_location, var.location)
  type        = "FIRESTORE_NATIVE"

  point_in_time_recovery_enablement = "POINT_IN_TIME_RECOVERY_ENABLED"
  delete_protection_state           = "DELETE_PROTECTION_ENABLED"
  # terraform destroy leaves the database (and the ledger) in place.
  deletion_policy = "ABANDON"
}
