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
STAMP=".tools/bin/.kube-$(cat "$SRC/go.mod" "$SRC/go.sum" "$SRC/main.go" "$0" scripts/lib/go-build.sh | sha1sum | cut -c1-12)"

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
echo "kube: building Kubernetes $VERSION (etcd, apiserver, controller-manager, scheduler) from Go modules;"
echo "kube: a cold build takes about 10 minutes on 2 cores (later runs reuse the Go build cache)"
LDFLAGS="-s -w -X k8s.io/component-base/version.gitVersion=$VERSION -X k8s.io/component-base/version.gitMajor=1"
LDFLAGS="$LDFLAGS -X k8s.io/component-base/version.gitMinor=$MINOR -X k8s.io/component-base/version.gitTreeState=clean"
. scripts/lib/go-build.sh
go_build kube "$SRC" "$ROOT/$OUT" . "$LDFLAGS"
rm -f .tools/bin/.kube-*
touch "$STAMP"
echo "kube: $("$OUT" apiserver --version)"
