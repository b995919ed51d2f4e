#!/usr/bin/env bash
# Build the Google Cloud Storage emulator of the gs:// backend's tests into .tools/bin/fake-gcs-server:
# fsouza/fake-gcs-server (pinned in tools/gcs/go.mod) with the XML-API uploads that the Rust
# object_store client needs and upstream lacks (tools/gcs/main.go says what and why).
# Rebuilt only when tools/gcs/{go.mod,go.sum,main.go} or these scripts change (a stamp beside the binary).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SRC=tools/gcs
OUT=.tools/bin/fake-gcs-server
MODULE=github.com/fsouza/fake-gcs-server
STAMP=".tools/bin/.fake-gcs-$(cat "$SRC/go.mod" "$SRC/go.sum" "$SRC/main.go" "$0" scripts/lib/go-build.sh | sha1sum | cut -c1-12)"
VERSION=$(sed -n "s|^\s*require $MODULE \(v[0-9.]*\).*|\1|p; s|^\s*$MODULE \(v[0-9.]*\).*|\1|p" "$SRC/go.mod" | head -1)

if [ -x "$OUT" ] && [ -e "$STAMP" ]; then
    echo "fake-gcs-server: $OUT is up to date ($VERSION)"
    exit 0
fi
command -v go >/dev/null || { echo "fake-gcs-server: the Go toolchain is needed (Go 1.26+)" >&2; exit 1; }
mkdir -p .tools/bin
echo "fake-gcs-server: building fake-gcs-server $VERSION from Go modules (about a minute cold on 2 cores)"
. scripts/lib/go-build.sh
go_build fake-gcs-server "$SRC" "$ROOT/$OUT" . "-s -w"
rm -f .tools/bin/.fake-gcs-*
touch "$STAMP"
echo "fake-gcs-server: $VERSION in $OUT"
