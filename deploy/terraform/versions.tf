# pipelined AWS resources as a Terraform module; the same set as
# deploy/cloudformation/pipelined-resources.yaml.
#
#   module "pipelined" {
#     source            = "./deploy/terraform"
#     name              = "pipelined-production"
#     notification_mode = "sqs" # or "eventbridge"
#   }

terraform {
  required_version = ">= 1.5.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.60.0, < 7.0.0"
    }
  }
}

data "aws_caller_identity" "current" {}
data "aws_region" "current" {}
data "aws_partition" "current" {}

locals {
  account_id = data.aws_caller_identity.current.account_id
  # The data source's id is the region name on provider 5 and 6 (`name` is deprecated on 6).
  region     = data.aws_region.current.id
  partition  = data.aws_partition.current.partition
  dns_suffix = data.aws_partition.current.dns_suffix

  use_kms         = var.create_kms_key
  direct_to_sqs   = var.notification_mode == "sqs"
  via_eventbridge = var.notification_mode == "eventbridge"
  on_eks          = var.eks_oidc_provider_arn != ""

  input_bucket_name  = "${var.name}-input-${local.account_id}-${local.region}"
  output_bucket_name = "${var.name}-output-${local.account_id}-${local.region}"
  queue_name         = "${var.name}-input"
  rule_name          = "${var.name}-object-created"

  kms_key_arn = local.use_kms ? aws_kms_key.this[0].arn : null
}
