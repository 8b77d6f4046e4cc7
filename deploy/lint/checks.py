"""Cross-file consistency checks for the deployment artifacts (run by deploy/lint.sh).

The validators (cfn-lint, checkov, kubernetes-validate, ...) check each file on its own. These
checks tie the files to the daemon's contract and to each other: grace periods above the drain
time, resources matching the worker count, the KEDA trigger matching the daemon's queue and
concurrency, the IAM policies (AWS) and role bindings (Google Cloud) granting exactly the calls
the daemon makes.

Usage (inside deploy/.venv, which has PyYAML, cfn-lint and python-hcl2):
    python deploy/lint/checks.py k8s RENDERED.yaml...
    python deploy/lint/checks.py split RENDERED.yaml CORE.yaml CRDS.json
    python deploy/lint/checks.py iam REPO_ROOT
    python deploy/lint/checks.py iam-gcp REPO_ROOT
    python deploy/lint/checks.py runtime REPO_ROOT
    python deploy/lint/checks.py env-sources OUT.json REPO_ROOT RENDERED.yaml...
Prints nothing and exits 0 when every check holds; otherwise prints one line per problem, exit 1.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import yaml

# Every AWS call the daemon's adapters (src/pipelined/aws/, by module) make, and the IAM actions
# that authorise it. A call that is missing here, or listed but no longer made, fails the check.
# s3:ListBucket is no call of its own: it turns S3's answer to a read of a missing object from
# 403 into 404. The batch calls are authorised by the single-message actions.
CALL_ACTIONS: dict[tuple[str, str], frozenset[str]] = {
    ("sqs", "receive_message"): frozenset({"sqs:ReceiveMessage"}),
    ("sqs", "delete_message_batch"): frozenset({"sqs:DeleteMessage"}),
    ("sqs", "change_message_visibility_batch"): frozenset({"sqs:ChangeMessageVisibility"}),
    ("sqs", "get_queue_attributes"): frozenset({"sqs:GetQueueAttributes"}),
    # The queue-depth poller finds the dead-letter queue from the redrive policy's ARN.
    ("sqs", "get_queue_url"): frozenset({"sqs:GetQueueUrl"}),
    ("s3", "head_object"): frozenset({"s3:GetObject", "s3:GetObjectVersion", "s3:ListBucket"}),
    ("s3", "get_object"): frozenset({"s3:GetObject", "s3:GetObjectVersion", "s3:ListBucket"}),
    ("s3", "put_object"): frozenset({"s3:PutObject"}),
    ("s3", "generate_presigned_url"): frozenset(),  # a local signature, no request
    ("ledger", "put_item"): frozenset({"dynamodb:PutItem"}),
    ("ledger", "get_item"): frozenset({"dynamodb:GetItem"}),
    ("sns", "publish"): frozenset({"sns:Publish"}),
}
# With a customer managed key, SQS, S3, SNS and DynamoDB call KMS on the worker's behalf.
KMS_ACTIONS = frozenset({"kms:Decrypt", "kms:GenerateDataKey"})
WORKER_ACTIONS = frozenset().union(*CALL_ACTIONS.values()) | KMS_ACTIONS
AWS_CALL = re.compile(r"\b_client\.([a-z0-9_]+)\(")
# Margin between the daemon's drain time and the platform's grace period: the daemon needs a few
# seconds after draining to release the rest and exit.
SHUTDOWN_MARGIN_S = 10
DAEMON_OVERHEAD_MIB = 512
CRD_KINDS = frozenset({"ScaledObject", "TriggerAuthentication", "PodMonitor"})

# Per PIPELINED_BACKEND: the settings naming its resources (any other backend's are refused by
# the daemon), the ServiceAccount annotation that gives pods their cloud identity, the KEDA
# scaler of its queue.
BACKEND_KEYS: dict[str, tuple[str, ...]] = {
    "aws": ("PIPELINED_QUEUE_URL", "PIPELINED_TABLE", "PIPELINED_TOPIC_ARN", "AWS_REGION"),
    "gcp": ("PIPELINED_SUBSCRIPTION", "PIPELINED_TOPIC", "GOOGLE_CLOUD_PROJECT"),
}
IDENTITY_ANNOTATIONS = {"aws": "eks.amazonaws.com/role-arn", "gcp": "iam.gke.io/gcp-service-account"}
SCALER_TYPES = {"aws": "aws-sqs-queue", "gcp": "gcp-pubsub"}
PUBSUB_MAX_ACK_DEADLINE_S = 600
# Where Workload Identity tokens come from: 169.254.169.254:80 with GKE Dataplane V2,
# 169.254.169.252:988 with the older dataplane.
GKE_METADATA_SERVER = (("169.254.169.254/32", 80), ("169.254.169.252/32", 988))

problems: list[str] = []


def fail(where: str, message: str) -> None:
    problems.append(f"{where}: {message}")


def check(condition: bool, where: str, message: str) -> bool:
    if not condition:
        fail(where, message)
    return condition


# --------------------------------------------------------------------------------------------
# Kubernetes (rendered kustomize output)
# --------------------------------------------------------------------------------------------


def cpu_cores(quantity: str) -> float:
    return float(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)


def mebibytes(quantity: str) -> float:
    units = {"Ki": 1 / 1024, "Mi": 1, "Gi": 1024, "Ti": 1024 * 1024, "M": 1e6 / 2**20, "G": 1e9 / 2**20}
    for suffix, factor in units.items():
        if quantity.endswith(suffix):
            return float(quantity[: -len(suffix)]) * factor
    return float(quantity) / 2**20


def load_docs(path: str) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as stream:
        return [doc for doc in yaml.safe_load_all(stream) if doc]


def one(docs: list[dict[str, Any]], kind: str, where: str) -> dict[str, Any] | None:
    found = [d for d in docs if d.get("kind") == kind]
    if len(found) != 1:
        fail(where, f"expected exactly one {kind}, found {len(found)}")
        return None
    return found[0]


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    wanted = selector.get("matchLabels", {})
    return bool(wanted) and all(labels.get(k) == v for k, v in wanted.items())


def check_k8s(path: str) -> None:
    docs = load_docs(path)
    where = Path(path).name
    config = next((d for d in docs if d.get("kind") == "ConfigMap"
                   and d["metadata"]["name"].startswith("pipelined-config")), None)
    deployment = one(docs, "Deployment", where)
    if config is None or deployment is None:
        fail(where, "needs the pipelined-config ConfigMap and the Deployment")
        return
    env = config.get("data", {})
    backend = env.get("PIPELINED_BACKEND", "aws")
    if not check(backend in BACKEND_KEYS, where, f"unknown PIPELINED_BACKEND {backend!r}"):
        return
    for key in (*BACKEND_KEYS[backend], "PIPELINED_OUTPUT_BUCKET", "PIPELINED_WORKERS"):
        check(bool(env.get(key)), where, f"ConfigMap lacks {key}")
    # The daemon refuses the other backend's resource settings; AWS_* would only mislead.
    other = "gcp" if backend == "aws" else "aws"
    for key in sorted(env):
        check(key not in BACKEND_KEYS[other] and not (backend == "gcp" and key.startswith("AWS_")), where,
              f"ConfigMap sets {key}, a setting of PIPELINED_BACKEND={other}")
    drain = int(env.get("PIPELINED_DRAIN_TIMEOUT_S", 30))
    workers = int(env.get("PIPELINED_WORKERS", 0) or 0)
    worker_mib = int(env.get("PIPELINED_WORKER_MEMORY_MB", 1024))
    max_inflight = env.get("PIPELINED_MAX_INFLIGHT", "8")
    metrics_port = int(env.get("PIPELINED_METRICS_PORT", 9400))

    spec = deployment["spec"]
    pod = spec["template"]["spec"]
    pod_labels = spec["template"]["metadata"].get("labels", {})
    grace = pod.get("terminationGracePeriodSeconds", 30)
    check(grace > drain + SHUTDOWN_MARGIN_S, where,
          f"terminationGracePeriodSeconds {grace} must exceed PIPELINED_DRAIN_TIMEOUT_S {drain} + {SHUTDOWN_MARGIN_S}")
    check("replicas" not in spec, where, "Deployment sets spec.replicas although KEDA owns it")
    rolling = spec.get("strategy", {}).get("rollingUpdate", {})
    check(rolling.get("maxUnavailable") in (0, "0", "0%"), where, "rolling update must use maxUnavailable: 0")

    pod_sc = pod.get("securityContext", {})
    containers = pod.get("containers", [])
    main = next((c for c in containers if c["name"] == "pipelined"), None)
    if not check(main is not None, where, "no container named pipelined"):
        return
    assert main is not None
    sc = {**pod_sc, **main.get("securityContext", {})}
    check(sc.get("runAsNonRoot") is True, where, "runAsNonRoot must be true")
    check(isinstance(sc.get("runAsUser"), int) and sc["runAsUser"] >= 10000, where,
          "runAsUser must be a numeric UID >= 10000")
    check(sc.get("readOnlyRootFilesystem") is True, where, "readOnlyRootFilesystem must be true")
    check(sc.get("allowPrivilegeEscalation") is False, where, "allowPrivilegeEscalation must be false")
    check("ALL" in sc.get("capabilities", {}).get("drop", []), where, "capabilities must drop ALL")
    check(sc.get("seccompProfile", {}).get("type") == "RuntimeDefault", where, "seccomp must be RuntimeDefault")

    tmp_dir = env.get("PIPELINED_TMP_DIR", "/tmp")
    empty_dirs = {v["name"] for v in pod.get("volumes", []) if "emptyDir" in v}
    check(any(m["mountPath"] == tmp_dir and m["name"] in empty_dirs for m in main.get("volumeMounts", [])),
          where, f"PIPELINED_TMP_DIR {tmp_dir} must be an emptyDir mount (read-only root filesystem)")

    ports = {p.get("name"): p["containerPort"] for p in main.get("ports", [])}
    check(ports.get("metrics") == metrics_port, where,
          f"container port 'metrics' must equal PIPELINED_METRICS_PORT {metrics_port}")
    for probe, path in (("startupProbe", "/healthz"), ("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        get = main.get(probe, {}).get("httpGet", {})
        check(get.get("path") == path and get.get("port") in ("metrics", metrics_port), where,
              f"{probe} must GET {path} on the metrics port")

    res = main.get("resources", {})
    req, lim = res.get("requests", {}), res.get("limits", {})
    if check(all(k in d for d in (req, lim) for k in ("cpu", "memory")), where, "cpu/memory requests and limits required"):
        check(cpu_cores(str(req["cpu"])) == workers, where, f"requests.cpu must equal PIPELINED_WORKERS {workers}")
        check(cpu_cores(str(lim["cpu"])) >= workers, where, "limits.cpu below PIPELINED_WORKERS")
        need = workers * worker_mib + DAEMON_OVERHEAD_MIB
        check(mebibytes(str(lim["memory"])) >= need, where,
              f"limits.memory must be >= WORKERS*WORKER_MEMORY_MB+{DAEMON_OVERHEAD_MIB}Mi = {need}Mi")
        check(mebibytes(str(req["memory"])) == mebibytes(str(lim["memory"])), where,
              "requests.memory should equal limits.memory")

    env_from = [e.get("configMapRef", {}).get("name") for e in main.get("envFrom", [])]
    check(config["metadata"]["name"] in env_from, where, "container must take its env from the ConfigMap")

    account = one(docs, "ServiceAccount", where)
    if account:
        check(pod.get("serviceAccountName") == account["metadata"]["name"], where, "pod must use the ServiceAccount")
        annotations = account["metadata"].get("annotations", {})
        wanted, unwanted = IDENTITY_ANNOTATIONS[backend], IDENTITY_ANNOTATIONS[other]
        check(bool(annotations.get(wanted)), where, f"ServiceAccount lacks the identity annotation {wanted}")
        for key in sorted(annotations):
            check(not key.startswith(unwanted.split("/")[0] + "/"), where,
                  f"ServiceAccount keeps {key}, an annotation for PIPELINED_BACKEND={other}")
    if backend == "gcp":
        check_gke_pod(where, docs, pod, env)

    pdb = one(docs, "PodDisruptionBudget", where)
    if pdb:
        check(selects(pdb["spec"]["selector"], pod_labels), where, "PodDisruptionBudget does not select the pods")

    monitor = one(docs, "PodMonitor", where)
    if monitor:
        check(selects(monitor["spec"]["selector"], pod_labels), where, "PodMonitor does not select the pods")
        check(any(e.get("port") == "metrics" for e in monitor["spec"].get("podMetricsEndpoints", [])), where,
              "PodMonitor must scrape the metrics port")

    scaled = one(docs, "ScaledObject", where)
    auths = {d["metadata"]["name"]: d for d in docs if d.get("kind") == "TriggerAuthentication"}
    if scaled:
        check(scaled["spec"]["scaleTargetRef"].get("name") == deployment["metadata"]["name"], where,
              "ScaledObject must target the Deployment")
        types = sorted(t.get("type", "") for t in scaled["spec"].get("triggers", []))
        check(types == [SCALER_TYPES[backend]], where,
              f"ScaledObject needs exactly one {SCALER_TYPES[backend]} trigger, has {types}")
        providers = sorted(a["spec"].get("podIdentity", {}).get("provider", "") for a in auths.values())
        check(providers == [backend], where,
              f"expected one TriggerAuthentication, with podIdentity provider {backend!r}: found {providers}")
        if backend == "gcp":
            check_pubsub_trigger(where, scaled, auths, env, max_inflight)
            return
        triggers = [t for t in scaled["spec"].get("triggers", []) if t.get("type") == "aws-sqs-queue"]
        if check(len(triggers) == 1, where, "ScaledObject needs one aws-sqs-queue trigger"):
            meta = triggers[0].get("metadata", {})
            check(meta.get("queueURL") == env.get("PIPELINED_QUEUE_URL"), where,
                  "ScaledObject queueURL differs from PIPELINED_QUEUE_URL")
            check(meta.get("awsRegion") == env.get("AWS_REGION"), where, "ScaledObject awsRegion differs from AWS_REGION")
            check(str(meta.get("queueLength")) == str(max_inflight), where,
                  f"ScaledObject queueLength must equal PIPELINED_MAX_INFLIGHT {max_inflight}")
            auth = auths.get(triggers[0].get("authenticationRef", {}).get("name", ""))
            if check(auth is not None, where, "aws-sqs-queue trigger must reference a TriggerAuthentication"):
                assert auth is not None
                check(auth["spec"].get("podIdentity", {}).get("provider") == "aws", where,
                      "TriggerAuthentication must use podIdentity provider 'aws'")


def check_gke_pod(where: str, docs: list[dict[str, Any]], pod: dict[str, Any], env: dict[str, str]) -> None:
    """GKE: a lease Pub/Sub can grant, and a path to the metadata server for Workload Identity."""
    lease = int(env.get("PIPELINED_VISIBILITY_TIMEOUT_S", 60))
    check(lease <= PUBSUB_MAX_ACK_DEADLINE_S, where,
          f"PIPELINED_VISIBILITY_TIMEOUT_S {lease} is above Pub/Sub's {PUBSUB_MAX_ACK_DEADLINE_S} s ack deadline limit")
    check(pod.get("nodeSelector", {}).get("iam.gke.io/gke-metadata-server-enabled") == "true", where,
          "pods must select nodes with the GKE metadata server (iam.gke.io/gke-metadata-server-enabled)")
    for policy in (d for d in docs if d.get("kind") == "NetworkPolicy"):
        if "Egress" not in policy["spec"].get("policyTypes", []):
            continue
        reached = {(block.get("ipBlock", {}).get("cidr"), port.get("port"))
                   for rule in policy["spec"].get("egress", [])
                   for block in rule.get("to", []) for port in rule.get("ports", [])}
        for cidr, port in GKE_METADATA_SERVER:
            check((cidr, port) in reached, where, f"NetworkPolicy {policy['metadata']['name']} must allow "
                  f"egress to the GKE metadata server {cidr}:{port}")


def check_pubsub_trigger(where: str, scaled: dict[str, Any], auths: dict[str, Any], env: dict[str, str],
                         max_inflight: str) -> None:
    trigger = next(t for t in scaled["spec"]["triggers"] if t.get("type") == "gcp-pubsub")
    meta = trigger.get("metadata", {})
    check(meta.get("subscriptionName") == env.get("PIPELINED_SUBSCRIPTION"), where,
          "ScaledObject subscriptionName differs from PIPELINED_SUBSCRIPTION")
    # SubscriptionSize (num_undelivered_messages) counts leased messages too, like scaleOnInFlight.
    check(meta.get("mode") == "SubscriptionSize", where, "gcp-pubsub trigger must use mode SubscriptionSize")
    check(str(meta.get("value")) == str(max_inflight), where,
          f"ScaledObject value must equal PIPELINED_MAX_INFLIGHT {max_inflight}")
    for legacy in ("subscriptionSize", "credentialsFromEnv", "credentialsFromEnvFile"):
        check(legacy not in meta, where, f"gcp-pubsub trigger sets {legacy}: use mode/value and pod identity")
    check(trigger.get("authenticationRef", {}).get("name", "") in auths, where,
          "gcp-pubsub trigger must reference a TriggerAuthentication")


def split(path: str, core_out: str, crd_out: str) -> None:
    """Built-in kinds to core_out (YAML, for kubernetes-validate), CRD kinds to crd_out (JSON)."""
    docs = load_docs(path)
    with open(core_out, "w", encoding="utf-8") as stream:
        yaml.safe_dump_all([d for d in docs if d.get("kind") not in CRD_KINDS], stream, sort_keys=False)
    with open(crd_out, "w", encoding="utf-8") as stream:
        json.dump([d for d in docs if d.get("kind") in CRD_KINDS], stream)


# --------------------------------------------------------------------------------------------
# IAM: CloudFormation, Terraform and docs/iam.md
# --------------------------------------------------------------------------------------------


def cfn_template(path: Path) -> dict[str, Any]:
    from cfnlint.decode import decode  # imported here: only this check needs cfn-lint

    template, matches = decode(str(path))
    if matches or template is None:
        raise SystemExit(f"{path}: cannot parse: {matches}")
    return template


def nested_dicts(node: Any, wanted: Callable[[dict[str, Any]], bool]) -> Iterator[dict[str, Any]]:
    """Every dict anywhere in a parsed tree for which ``wanted`` holds."""
    if isinstance(node, dict):
        if wanted(node):
            yield node
        for value in node.values():
            yield from nested_dicts(value, wanted)
    elif isinstance(node, list):
        for value in node:
            yield from nested_dicts(value, wanted)


def cfn_statements(node: Any) -> Iterator[dict[str, Any]]:
    """Every policy statement in a CloudFormation tree (both branches of Fn::If)."""
    return nested_dicts(node, lambda d: "Effect" in d and ("Action" in d or "NotAction" in d))


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def flat(value: Any) -> list[Any]:
    """python-hcl2 wraps attribute values in lists; flatten them."""
    if isinstance(value, list):
        return [item for v in value for item in flat(v)]
    return [value]


def tf_statements(node: Any) -> Iterator[dict[str, Any]]:
    """Every statement block (static or dynamic content) in a python-hcl2 tree."""
    return nested_dicts(node, lambda d: "actions" in d or "not_actions" in d)


def wildcard(action: str) -> bool:
    return "*" in action or "?" in action


def check_iam(root: Path) -> None:
    cfn_files = [root / "deploy/cloudformation/pipelined-resources.yaml", root / "deploy/ecs/pipelined-service.yaml"]
    for path in cfn_files:
        where = str(path.relative_to(root))
        for statement in cfn_statements(cfn_template(path)):
            check("NotAction" not in statement, where, "NotAction is not allowed")
            if statement["Effect"] == "Allow":
                for action in as_list(statement.get("Action", [])):
                    check(isinstance(action, str) and not wildcard(action), where,
                          f"Allow statement with wildcard action {action!r}")

    where = "deploy/cloudformation/pipelined-resources.yaml"
    resources = cfn_template(cfn_files[0])["Resources"]
    worker = list(cfn_statements(resources["WorkerPolicy"]["Properties"]["PolicyDocument"]))
    granted = {a for s in worker if s["Effect"] == "Allow" for a in as_list(s["Action"])}
    check(granted == WORKER_ACTIONS, where,
          f"WorkerPolicy actions differ from the daemon's calls: extra {sorted(granted - WORKER_ACTIONS)}, "
          f"missing {sorted(WORKER_ACTIONS - granted)}")
    put = next((s for s in worker if "s3:PutObject" in as_list(s["Action"])), {})
    check("${OutputPrefix}*" in json.dumps(put.get("Resource")), where,
          "s3:PutObject must be limited to the output prefix")
    check(as_list(put.get("Action")) == ["s3:PutObject"], where, "s3:PutObject belongs in its own statement")
    kms = next((s for s in worker if "kms:Decrypt" in as_list(s["Action"])), {})
    check("kms:ViaService" in json.dumps(kms.get("Condition")), where, "KMS use must be conditioned on kms:ViaService")
    for statement in worker:
        check(statement.get("Resource") not in ("*", ["*"]), where, f"worker statement {statement.get('Sid')} on Resource '*'")

    import hcl2  # python-hcl2 (bc-python-hcl2, a checkov dependency)

    tf_worker: set[str] = set()
    for path in sorted((root / "deploy/terraform").glob("*.tf")):
        where = str(path.relative_to(root))
        with path.open(encoding="utf-8") as stream:
            tree = hcl2.load(stream)
        for statement in tf_statements(tree):
            check("not_actions" not in statement, where, "not_actions is not allowed")
            effect = flat(statement.get("effect", ["Allow"]))[0]
            if effect == "Allow":
                for action in flat(statement.get("actions", [])):
                    check(not wildcard(action), where, f"Allow statement with wildcard action {action!r}")
        for block in tree.get("data", []):
            document = block.get("aws_iam_policy_document", {}).get("worker")
            if document:
                for statement in tf_statements(document):
                    tf_worker.update(flat(statement.get("actions", [])))
    check(tf_worker == WORKER_ACTIONS, "deploy/terraform/iam.tf",
          f"worker policy actions differ from the daemon's calls: extra {sorted(tf_worker - WORKER_ACTIONS)}, "
          f"missing {sorted(WORKER_ACTIONS - tf_worker)}")

    calls = {(path.stem, call) for path in sorted((root / "src/pipelined/aws").glob("*.py"))
             for call in AWS_CALL.findall(path.read_text(encoding="utf-8"))}
    check(calls == set(CALL_ACTIONS), "deploy/lint/checks.py",
          f"CALL_ACTIONS differs from the calls in src/pipelined/aws/: unmapped {sorted(calls - set(CALL_ACTIONS))}, "
          f"no longer made {sorted(set(CALL_ACTIONS) - calls)}")

    doc = (root / "docs/iam.md").read_text(encoding="utf-8")
    for action in sorted(WORKER_ACTIONS):
        check(f"`{action}`" in doc, "docs/iam.md", f"does not document {action}")
    for module in ("src/pipelined/aws/sqs.py", "src/pipelined/aws/s3.py", "src/pipelined/aws/ledger.py",
                   "src/pipelined/aws/sns.py"):
        check(module in doc, "docs/iam.md", f"does not name {module}")


# --------------------------------------------------------------------------------------------
# IAM on Google Cloud: the role bindings of deploy/terraform-gcp
# --------------------------------------------------------------------------------------------

# Every Google Cloud operation the daemon's adapters make (src/pipelined/gcp/, by the names their
# metrics and errors give them), and per operation the module's resource it acts on and the
# permissions it needs there. An operation missing here, or listed but no longer made, fails the
# check. The embedded emulator stack of demo/local is not the daemon's and is not scanned.
GCP_CALL_PERMISSIONS: dict[str, tuple[tuple[str, frozenset[str]], ...]] = {
    "pubsub.GetSubscription": (("google_pubsub_subscription.jobs", frozenset({"pubsub.subscriptions.get"})),),
    "pubsub.Pull": (("google_pubsub_subscription.jobs", frozenset({"pubsub.subscriptions.consume"})),),
    "pubsub.Acknowledge": (("google_pubsub_subscription.jobs", frozenset({"pubsub.subscriptions.consume"})),),
    "pubsub.ModifyAckDeadline": (("google_pubsub_subscription.jobs", frozenset({"pubsub.subscriptions.consume"})),),
    "pubsub.Publish": (("google_pubsub_topic.results", frozenset({"pubsub.topics.publish"})),),
    "storage.objects.get": (("google_storage_bucket.input", frozenset({"storage.objects.get"})),),
    # Replacing an existing object needs delete too, and a retried job uploads the same keys.
    "storage.objects.insert": (
        ("google_storage_bucket.output", frozenset({"storage.objects.create", "storage.objects.delete"})),),
    # Firestore's IAM stops at the database: project-level bindings, conditioned on it.
    "firestore.BatchGetDocuments": (("project", frozenset({"datastore.entities.get"})),),
    "firestore.Commit": (("project", frozenset({"datastore.entities.create", "datastore.entities.update"})),),
    # A V4 URL signed through signBlob, as the worker itself; it reads with the signer's access.
    "iam.signBlob": (("google_service_account.worker", frozenset({"iam.serviceAccounts.signBlob"})),
                     ("google_storage_bucket.output", frozenset({"storage.objects.get"}))),
}
GCP_OPERATION = re.compile(r'"((?:pubsub|storage|firestore|iam)\.[A-Za-z]+(?:\.[A-Za-z]+)*)"')
GCP_NOT_THE_DAEMON = frozenset({"local.py", "demo.py"})
# The predefined roles the module may grant, with the permissions among theirs that matter here
# (each holds more of the same service's, mostly get and list). A role not listed fails the check
# until it is added, with its permissions.
ROLE_PERMISSIONS: dict[str, frozenset[str]] = {
    "roles/pubsub.subscriber": frozenset({"pubsub.subscriptions.consume", "pubsub.topics.attachSubscription",
                                          "pubsub.snapshots.seek"}),
    "roles/pubsub.viewer": frozenset({"pubsub.subscriptions.get", "pubsub.subscriptions.list",
                                      "pubsub.topics.get", "pubsub.topics.list"}),
    "roles/pubsub.publisher": frozenset({"pubsub.topics.publish"}),
    "roles/storage.objectViewer": frozenset({"storage.objects.get", "storage.objects.list"}),
    "roles/datastore.user": frozenset({"datastore.entities.get", "datastore.entities.create",
                                       "datastore.entities.update", "datastore.entities.delete",
                                       "datastore.entities.list"}),
    "roles/iam.serviceAccountTokenCreator": frozenset({"iam.serviceAccounts.signBlob", "iam.serviceAccounts.signJwt",
                                                       "iam.serviceAccounts.getAccessToken"}),
    "roles/iam.workloadIdentityUser": frozenset({"iam.serviceAccounts.getAccessToken"}),
    "roles/monitoring.viewer": frozenset({"monitoring.timeSeries.list"}),
}
BASIC_ROLES = frozenset({"roles/owner", "roles/editor", "roles/viewer"})
# The attribute of each IAM member resource that names the resource it binds on.
IAM_MEMBER_TARGETS = {
    "google_pubsub_subscription_iam_member": "subscription",
    "google_pubsub_topic_iam_member": "topic",
    "google_storage_bucket_iam_member": "bucket",
    "google_service_account_iam_member": "service_account_id",
    "google_project_iam_member": "project",
}
REFERENCE = re.compile(r"^\$\{(google_[a-z0-9_]+\.[a-z0-9_]+)\.(?:name|id|email)\}$")
QUOTED = re.compile(r"'([^']+)'")


def hcl_value(block: dict[str, Any], key: str, default: str = "") -> str:
    values = flat(block.get(key, [default]))
    return str(values[0]) if values else default


def check_iam_gcp(root: Path) -> None:
    import hcl2  # python-hcl2 (bc-python-hcl2, a checkov dependency)

    module = root / "deploy/terraform-gcp"
    resources: dict[str, dict[str, Any]] = {}
    for path in sorted(module.glob("*.tf")):
        with path.open(encoding="utf-8") as stream:
            tree = hcl2.load(stream)
        for block in tree.get("resource", []):
            for kind, named in block.items():
                for name, body in named.items():
                    resources[f"{kind}.{name}"] = body
    where = "deploy/terraform-gcp"
    custom_roles = {f"${{{address}.name}}": frozenset(QUOTED.findall(hcl_value(body, "permissions")))
                    for address, body in resources.items() if address.startswith("google_project_iam_custom_role.")}

    # (target, role, member, condition, address) per binding; for_each over a set of roles expands.
    bindings: list[tuple[str, str, str, str, str]] = []
    for address, body in resources.items():
        kind = address.split(".")[0]
        if kind not in IAM_MEMBER_TARGETS:
            continue
        target_text = hcl_value(body, IAM_MEMBER_TARGETS[kind])
        found = REFERENCE.match(target_text)
        target = "project" if kind == "google_project_iam_member" else (found.group(1) if found else target_text)
        condition = json.dumps(body.get("condition", []))
        role = hcl_value(body, "role")
        roles = QUOTED.findall(hcl_value(body, "for_each")) if role == "${each.value}" else [role]
        for one_role in roles:
            bindings.append((target, one_role, hcl_value(body, "member"), condition, address))

    def permissions(role: str, address: str) -> frozenset[str]:
        if role in custom_roles:
            return custom_roles[role]
        if role not in ROLE_PERMISSIONS:
            fail(where, f"{address}: role {role} is not in checks.py ROLE_PERMISSIONS")
        return ROLE_PERMISSIONS.get(role, frozenset())

    needed: dict[str, set[str]] = {}
    for grants in GCP_CALL_PERMISSIONS.values():
        for target, perms in grants:
            needed.setdefault(target, set()).update(perms)
    granted: dict[str, set[str]] = {}
    worker_roles: set[str] = set()
    for target, role, member, condition, address in bindings:
        check(role not in BASIC_ROLES, where, f"{address}: basic role {role}")
        if member != "${local.worker_member}":
            continue
        worker_roles.add(role)
        perms = permissions(role, address)
        granted.setdefault(target, set()).update(perms)
        check(bool(perms & needed.get(target, set())), where,
              f"{address}: {role} on {target} grants the worker nothing the daemon needs there")
        if target == "project":
            check("local.database_name" in condition, where,
                  f"{address}: a project-level grant must be conditioned on the ledger's database")
        if target == "google_storage_bucket.output":
            check("startsWith" in condition and "${var.output_prefix}" in condition, where,
                  f"{address}: writes must be conditioned on the output prefix")
    for operation, grants in sorted(GCP_CALL_PERMISSIONS.items()):
        for target, perms in grants:
            missing = perms - granted.get(target, set())
            check(not missing, where, f"{operation} needs {sorted(missing)} on {target}, not granted to the worker")

    # The service agents: Cloud Storage publishes notifications; Pub/Sub forwards dead letters.
    for target, role, member in (
        ("google_pubsub_topic.jobs", "roles/pubsub.publisher", "${local.storage_agent}"),
        ("google_pubsub_topic.dead_letter", "roles/pubsub.publisher", "${local.pubsub_agent}"),
        ("google_pubsub_subscription.jobs", "roles/pubsub.subscriber", "${local.pubsub_agent}"),
    ):
        check(any(b[:3] == (target, role, member) for b in bindings), where,
              f"{member} needs {role} on {target}")
    check(any(b[1] == "roles/iam.workloadIdentityUser" and re.search(r"(\.svc\.id\.goog|workload_pool\})\[", b[2])
              and b[0] == "google_service_account.worker" for b in bindings), where,
          "the worker's Kubernetes ServiceAccount needs roles/iam.workloadIdentityUser on the worker's service account")
    subscription = resources.get("google_pubsub_subscription.jobs", {})
    policy = flat(subscription.get("dead_letter_policy", []))
    check(bool(policy) and "google_pubsub_topic.dead_letter" in json.dumps(policy), where,
          "the jobs subscription needs a dead_letter_policy to the dead-letter topic")
    check(bool(subscription.get("retry_policy")), where, "the jobs subscription needs a retry_policy")
    check(hcl_value(subscription, "enable_exactly_once_delivery", "false") in ("false", "False"), where,
          "exactly-once delivery must be off")
    notification = resources.get("google_storage_notification.input", {})
    check(hcl_value(notification, "payload_format") == "JSON_API_V1", where,
          "notification payload_format must be JSON_API_V1")
    check("google_pubsub_topic_iam_member.storage_agent_publishes_jobs" in json.dumps(notification.get("depends_on")),
          where, "the notification must depend on the service agent's publisher binding")

    sources = [path for path in sorted((root / "src/pipelined/gcp").glob("*.py"))
               if path.name not in GCP_NOT_THE_DAEMON]
    operations = {op for path in sources for op in GCP_OPERATION.findall(path.read_text(encoding="utf-8"))}
    mapped = set(GCP_CALL_PERMISSIONS)
    check(operations == mapped, "deploy/lint/checks.py",
          f"GCP_CALL_PERMISSIONS differs from the operations in src/pipelined/gcp/: unmapped "
          f"{sorted(operations - mapped)}, no longer made {sorted(mapped - operations)}")

    doc = (root / "docs/deploy.md").read_text(encoding="utf-8")
    for role in sorted(worker_roles - set(custom_roles)):
        check(f"`{role}`" in doc, "docs/deploy.md", f"does not document the worker's {role}")


# --------------------------------------------------------------------------------------------
# Runtime contract: Dockerfile, systemd unit, ECS task definition
# --------------------------------------------------------------------------------------------


def unit_settings(text: str) -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";", "[")) and "=" in line:
            key, value = line.split("=", 1)
            settings.setdefault(key.strip(), []).append(value.strip())
    return settings


def seconds(value: str) -> float:
    total = 0.0
    for amount, unit in re.findall(r"(\d+(?:\.\d+)?)\s*(min|ms|s|h)?", value):
        total += float(amount) * {"min": 60, "ms": 0.001, "s": 1, "h": 3600, "": 1}[unit]
    return total


def check_runtime(root: Path) -> None:
    where = "Dockerfile"
    dockerfile = (root / "Dockerfile").read_text(encoding="utf-8")
    stages = re.findall(r"^FROM\s+(\S+)", dockerfile, re.MULTILINE)
    check(len(stages) >= 2, where, "must be multi-stage")
    check(bool(stages) and stages[-1].startswith("python:${PYTHON_VERSION}-slim-bookworm")
          and "ARG PYTHON_VERSION=3.11" in dockerfile, where, "final stage must be python:3.11-slim-bookworm")
    users = re.findall(r"^USER\s+(\S+)", dockerfile, re.MULTILINE)
    check(bool(users) and re.fullmatch(r"\d+(:\d+)?", users[-1]) is not None and not users[-1].startswith("0"),
          where, "must end as a numeric non-root USER")
    check(re.search(r"^HEALTHCHECK .*", dockerfile, re.MULTILINE) is not None and "/healthz" in dockerfile,
          where, "needs a HEALTHCHECK on /healthz")
    check('ENTRYPOINT ["/usr/bin/tini", "--"' in dockerfile, where, "tini must be PID 1")
    check("-r requirements.lock" in dockerfile, where, "must install from requirements.lock")

    where = "deploy/systemd"
    unit = unit_settings((root / "deploy/systemd/pipelined.service").read_text(encoding="utf-8"))
    env = unit_settings((root / "deploy/systemd/pipelined.env.example").read_text(encoding="utf-8"))
    drain = int(env.get("PIPELINED_DRAIN_TIMEOUT_S", ["30"])[-1])
    stop = seconds(unit.get("TimeoutStopSec", ["90"])[-1])
    check(stop > drain + SHUTDOWN_MARGIN_S, where,
          f"TimeoutStopSec {stop:g} must exceed PIPELINED_DRAIN_TIMEOUT_S {drain} + {SHUTDOWN_MARGIN_S}")
    for key, value in (("Type", "notify"), ("NotifyAccess", "main"), ("KillMode", "mixed"),
                       ("EnvironmentFile", "/etc/pipelined/pipelined.env"), ("DynamicUser", "yes")):
        check(unit.get(key, [""])[-1] == value, where, f"{key} must be {value}")
    check(bool(unit.get("WatchdogSec")), where, "WatchdogSec missing")

    where = "deploy/ecs/pipelined-service.yaml"
    template = cfn_template(root / "deploy/ecs/pipelined-service.yaml")
    params = template["Parameters"]
    stop_default, stop_max = int(params["StopTimeoutSeconds"]["Default"]), int(params["StopTimeoutSeconds"]["MaxValue"])
    drain_default = int(params["DrainTimeoutSeconds"]["Default"])
    check(stop_max <= 120 and stop_default <= 120, where, "stopTimeout cannot exceed 120 s")
    check(stop_default > drain_default + SHUTDOWN_MARGIN_S, where,
          f"StopTimeoutSeconds {stop_default} must exceed DrainTimeoutSeconds {drain_default} + {SHUTDOWN_MARGIN_S}")
    check(int(params["DrainTimeoutSeconds"]["MaxValue"]) <= stop_max - SHUTDOWN_MARGIN_S, where,
          "DrainTimeoutSeconds may not go above the largest stopTimeout minus the margin")
    task = template["Resources"]["TaskDefinition"]["Properties"]
    container = task["ContainerDefinitions"][0]
    check(container.get("LinuxParameters", {}).get("InitProcessEnabled") is True, where, "initProcessEnabled must be true")
    check(container.get("ReadonlyRootFilesystem") is True, where, "readonlyRootFilesystem must be true")
    check(any(m.get("ContainerPath") == "/tmp" for m in container.get("MountPoints", [])), where, "needs a /tmp volume")
    check(container.get("LogConfiguration", {}).get("Options", {}).get("mode") == "non-blocking", where,
          "awslogs must use mode non-blocking")
    check("/healthz" in json.dumps(container.get("HealthCheck")), where, "health check must use /healthz")
    check(task.get("TaskRoleArn") != task.get("ExecutionRoleArn"), where, "task role must differ from execution role")


# --------------------------------------------------------------------------------------------
# The environment each artifact gives the daemon (checked by settings_probe.py in the image venv)
# --------------------------------------------------------------------------------------------


def env_sources(out: str, root: Path, rendered: list[str]) -> None:
    sources: dict[str, dict[str, str]] = {}
    for path in rendered:
        config = next((d for d in load_docs(path) if d.get("kind") == "ConfigMap"
                       and d["metadata"]["name"].startswith("pipelined-config")), None)
        if config:
            sources[Path(path).name] = {k: str(v) for k, v in config.get("data", {}).items()}
    example = root / "deploy/systemd/pipelined.env.example"
    sources[str(example.relative_to(root))] = {k: v[-1] for k, v in unit_settings(example.read_text()).items()}
    template = cfn_template(root / "deploy/ecs/pipelined-service.yaml")
    params = template["Parameters"]
    environment: dict[str, str] = {}
    container = template["Resources"]["TaskDefinition"]["Properties"]["ContainerDefinitions"][0]
    for item in container["Environment"]:
        value = item["Value"]
        if isinstance(value, dict) and "Ref" in value:
            ref = value["Ref"]
            value = "eu-west-1" if ref == "AWS::Region" else str(params[ref].get("Default", f"example-{ref}"))
        environment[item["Name"]] = str(value)
    sources["deploy/ecs/pipelined-service.yaml (parameter defaults)"] = environment
    Path(out).write_text(json.dumps(sources, indent=1), encoding="utf-8")


def main(argv: list[str]) -> int:
    command, args = argv[0], argv[1:]
    if command == "k8s":
        for path in args:
            check_k8s(path)
    elif command == "split":
        split(*args)
    elif command == "iam":
        check_iam(Path(args[0]))
    elif command == "iam-gcp":
        check_iam_gcp(Path(args[0]))
    elif command == "env-sources":
        env_sources(args[0], Path(args[1]), args[2:])
    elif command == "runtime":
        check_runtime(Path(args[0]))
    else:
        raise SystemExit(f"unknown command {command}")
    for problem in problems:
        print(problem)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
