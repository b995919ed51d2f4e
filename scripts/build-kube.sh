#!/usr/bin/env bash
# Build the real Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler in one binary) from the Go modules pinned in tools/kube/, into .tools/bin/kube.
# Rebuilt only when tools/kube/{go.mod,go.sum,main.go} or this script change (a stamp beside the
# binary). The first build downloads about 0.3 GB of modules and compiles for several minutes on
# 2 cores: it says so and prints progress.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SRC=tools/kube
OUT=.tools/bin/kube
VERSION=$(sed -n 's/^KUBE_VERSION = "\(v[0-9.]*\)".*/\1/p' operator/lifeline/devstack/cluster_version.py)
MINOR=$(echo "$VERSION" | cut -d. -f2)
STAMP=".tools/bin/.kube-$(cat "$SRC/go.mod" "$SRC/go.sum" "$SRC/main.go" "$0" | sha1sum | cut -c1-12)"

if ! grep -q "k8s.io/kubernetes $VERSION\$" "$SRC/go.mod"; then
    echo "kube: tools/kube/go.mod does not require k8s.io/kubernetes $VERSION (cluster_version.py says so)" >&2
    exit 1
fi
if [ -x "$OUT" ] && [ -e "$STAMP" ]; then
    echo "kube: $OUT is up to date ($("$OUT" apiserver --version 2>/dev/null || echo '?'))"
    exit 0
fi
if ! command -v go >/dev/null; then
    echo "kube: the Go toolchain is needed to build the control plane (Go 1.26+)" >&2
    exit 1
fi
mkdir -p .tools/bin
export CGO_ENABLED=0 GOFLAGS=-buildvcs=false
echo "kube: building Kubernetes $VERSION (etcd, apiserver, controller-manager, scheduler) from Go modules;"
echo "kube: a cold build takes about 10 minutes on 2 cores (later runs reuse the Go build cache)"
start=$(date +%s)
(cd "$SRC" && go mod download) 
echo "kube: modules downloaded in $(( $(date +%s) - start ))s; compiling"
LDFLAGS="-s -w -X k8s.io/component-base/version.gitVersion=$VERSION -X k8s.io/component-base/version.gitMajor=1"
LDFLAGS="$LDFLAGS -X k8s.io/component-base/version.gitMinor=$MINOR -X k8s.io/component-base/version.gitTreeState=clean"
n=0
(cd "$SRC" && go build -v -trimpath -ldflags "$LDFLAGS" -o "$ROOT/$OUT.new" . 2>&1) | while IFS= read -r line; do
    n=$((n + 1))
    case "$line" in
        *" "*) echo "$line" ;;  # -v prints bare package paths; anything with a space is the compiler speaking
    esac
    if [ $((n % 200)) -eq 0 ]; then echo "kube: $n packages compiled ($(( $(date +%s) - start ))s)"; fi
done
test -x "$OUT.new" || { echo "kube: build failed" >&2; exit 1; }
mv "$OUT.new" "$OUT"
rm -f .tools/bin/.kube-*
touch "$STAMP"
echo "kube: built $OUT ($(du -h "$OUT" | cut -f1)) in $(( $(date +%s) - start ))s: $("$OUT" apiserver --version)"
