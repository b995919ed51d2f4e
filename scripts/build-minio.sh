#!/usr/bin/env bash
# Build MinIO, the S3 server of the immutable-repository tests (it enforces Object Lock; moto's server
# does not refuse a shortened COMPLIANCE retention), into .tools/bin/minio: upstream github.com/minio/minio,
# pinned in tools/minio/go.mod, built as it is (tools/minio/main.go only calls its Main).
# Rebuilt only when tools/minio/{go.mod,go.sum,main.go} or these scripts change (a stamp beside the binary).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SRC=tools/minio
OUT=.tools/bin/minio
MODULE=github.com/minio/minio
STAMP=".tools/bin/.minio-$(cat "$SRC/go.mod" "$SRC/go.sum" "$SRC/main.go" "$0" scripts/lib/go-build.sh | sha1sum | cut -c1-12)"
VERSION=$(sed -n "s|^\s*require $MODULE \(v[0-9a-f.-]*\).*|\1|p; s|^\s*$MODULE \(v[0-9a-f.-]*\).*|\1|p" "$SRC/go.mod" | head -1)

if [ -x "$OUT" ] && [ -e "$STAMP" ]; then
    echo "minio: $OUT is up to date ($VERSION)"
    exit 0
fi
command -v go >/dev/null || { echo "minio: the Go toolchain is needed (Go 1.26+)" >&2; exit 1; }
mkdir -p .tools/bin
echo "minio: building MinIO $VERSION from Go modules (about three minutes cold on 2 cores)"
. scripts/lib/go-build.sh
go_build minio "$SRC" "$ROOT/$OUT" . "-s -w"
rm -f .tools/bin/.minio-*
touch "$STAMP"
echo "minio: $VERSION in $OUT"
