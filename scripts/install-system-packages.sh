#!/usr/bin/env bash
# Debian packages the tests use as real parts: PostgreSQL (server binaries), promtool (from
# prometheus), restic (benchmark peer) and chromium (headless screenshots). Installed only when
# missing, as root; otherwise we say what is missing and the tests that need it skip.
# No service is started: tests run their own servers on loopback ports.
set -euo pipefail

PACKAGES=(postgresql prometheus restic chromium)

installed() {
    # "install ok installed" only: a removed package with config files left is not installed.
    [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true)" = "install ok installed" ]
}

missing=()
for pkg in "${PACKAGES[@]}"; do
    installed "$pkg" || missing+=("$pkg")
done

if [ "${#missing[@]}" -eq 0 ]; then
    echo "system packages: all present (${PACKAGES[*]})"
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "system packages: missing ${missing[*]} (not root, not installing);" \
         "the tests that need them will be skipped (run 'make test' as root to install them)"
    exit 0
fi

# Keep package scripts from starting services (postgresql, prometheus) while we install:
# policy-rc.d exit 101 means "action forbidden". Only ours is removed afterwards.
policy=/usr/sbin/policy-rc.d
own_policy=0
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod +x "$policy"
    own_policy=1
fi
cleanup() { if [ "$own_policy" -eq 1 ]; then rm -f "$policy"; fi; }
trap cleanup EXIT

echo "system packages: apt-get update"
apt-get update -qq >/dev/null
echo "system packages: installing ${missing[*]}"
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null

still=()
for pkg in "${missing[@]}"; do
    installed "$pkg" || still+=("$pkg")
done
if [ "${#still[@]}" -ne 0 ]; then
    echo "system packages: FAILED to install ${still[*]}" >&2
    exit 1
fi
echo "system packages: installed ${missing[*]}"
