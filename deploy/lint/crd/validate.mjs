// Validates ScaledObject, TriggerAuthentication and PodMonitor objects against the OpenAPI schemas
// of their CRDs (as compiled by the @kubernetes-models packages). Reads a JSON array of objects
// (deploy/lint/checks.py crd-json) on stdin; prints one line per invalid object; exit 1 if any.
// CRD schemas do not forbid unknown fields (the API server prunes them), so this catches wrong
// types, enums (e.g. podIdentity.provider) and missing required fields, not typos in field names.
import { readFileSync } from "node:fs";
import { ScaledObject } from "@kubernetes-models/keda/keda.sh/v1alpha1/ScaledObject";
import { TriggerAuthentication } from "@kubernetes-models/keda/keda.sh/v1alpha1/TriggerAuthentication";
import { PodMonitor } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PodMonitor";

const models = {
  "keda.sh/v1alpha1/ScaledObject": ScaledObject,
  "keda.sh/v1alpha1/TriggerAuthentication": TriggerAuthentication,
  "monitoring.coreos.com/v1/PodMonitor": PodMonitor,
};

const label = process.argv[2] ?? "stdin";
const objects = JSON.parse(readFileSync(0, "utf8"));
let failures = 0;
for (const object of objects) {
  const name = `${object.kind}/${object.metadata?.name}`;
  const Model = models[`${object.apiVersion}/${object.kind}`];
  if (!Model) {
    console.log(`${label}: ${name}: no schema for ${object.apiVersion}`);
    failures++;
    continue;
  }
  try {
    new Model(object).validate();
  } catch (error) {
    console.log(`${label}: ${name}: ${error.message}`);
    failures++;
  }
}
process.exit(failures ? 1 : 0);
