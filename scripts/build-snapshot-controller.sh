#!/usr/bin/env bash
# Build the real CSI snapshot-controller (kubernetes-csi/external-snapshotter, pinned in
# tools/snapshot/go.mod as a `tool`) into .tools/bin/snapshot-controller, and copy the
# VolumeSnapshot CRDs and the controller's RBAC from the same release's modules into .tools/snapshot/.
# Rebuilt only when tools/snapshot/{go.mod,go.sum} or these scripts change.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SRC=tools/snapshot
OUT=.tools/bin/snapshot-controller
SHARE=.tools/snapshot
MODULE=github.com/kubernetes-csi/external-snapshotter/v8
STAMP=".tools/bin/.snapshot-$(cat "$SRC/go.mod" "$SRC/go.sum" "$0" scripts/lib/go-build.sh | sha1sum | cut -c1-12)"
VERSION=$(sed -n "s|^\s*$MODULE \(v[0-9.]*\).*|\1|p" "$SRC/go.mod")

if [ -x "$OUT" ] && [ -e "$STAMP" ] && [ -d "$SHARE/crds" ]; then
    echo "snapshot-controller: $OUT is up to date ($VERSION)"
    exit 0
fi
command -v go >/dev/null || { echo "snapshot-controller: the Go toolchain is needed (Go 1.26+)" >&2; exit 1; }
mkdir -p .tools/bin
echo "snapshot-controller: building external-snapshotter $VERSION from Go modules (about 2 minutes cold)"
. scripts/lib/go-build.sh
go_build snapshot-controller "$SRC" "$ROOT/$OUT" "$MODULE/cmd/snapshot-controller" "-s -w"
controller_dir=$(cd "$SRC" && go list -m -f '{{.Dir}}' "$MODULE")
client_dir=$(cd "$SRC" && go list -m -f '{{.Dir}}' "${MODULE%/v8}/client/v8")
rm -rf "$SHARE" && mkdir -p "$SHARE/crds"
cp "$client_dir"/config/crd/*snapshot*.yaml "$SHARE/crds/"
cp "$controller_dir/deploy/kubernetes/snapshot-controller/rbac-snapshot-controller.yaml" "$SHARE/rbac.yaml"
chmod -R u+w "$SHARE"
rm -f .tools/bin/.snapshot-*
touch "$STAMP"
echo "snapshot-controller: $VERSION with $(ls "$SHARE/crds" | wc -l) CRDs in $SHARE"
