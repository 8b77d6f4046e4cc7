#!/usr/bin/env bash
# The Debian programs that make's targets use, installed on first use (see the Makefile):
#   - tesseract-ocr with its English and German data, for OCR of scanned PDF pages (apt-get);
#   - prometheus and promtool, for the real Prometheus server the tests start, copied out of
#     Debian's package into the given directory: no service is installed or started.
#
#   bash deploy/test-tools.sh BIN_DIRECTORY
#
# Non-interactive; root is needed only for apt-get, and only where tesseract is missing.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=${1:?usage: deploy/test-tools.sh BIN_DIRECTORY}
TESSERACT_LANGUAGES=(eng deu) # the languages docs/processing.md promises out of the box
WORK=$(mktemp -d "${TMPDIR:-/tmp}/pipelined-tools.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

die() {
    printf 'deploy/test-tools.sh: %s\n' "$*" >&2
    exit 1
}
# shellcheck source=deploy/lint/debian.sh
source "$ROOT/deploy/lint/debian.sh"

missing_languages() {
    local installed language
    installed=$(tesseract --list-langs 2>/dev/null || true)
    for language in "${TESSERACT_LANGUAGES[@]}"; do
        grep -qx "$language" <<<"$installed" || printf 'tesseract-ocr-%s ' "$language"
    done
}

if ! command -v tesseract >/dev/null 2>&1 || [ -n "$(missing_languages)" ]; then
    apt_install tesseract tesseract-ocr "${TESSERACT_LANGUAGES[@]/#/tesseract-ocr-}"
fi
if [ ! -x "$BIN/prometheus" ] || [ ! -x "$BIN/promtool" ]; then
    extract_from_package prometheus "$BIN" prometheus promtool
fi
