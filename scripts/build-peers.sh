#!/usr/bin/env bash
# Build the peers of bench/agent_vs_peers.py into .tools/peers/bin, each pinned in tools/:
#   restic  tools/restic/go.mod (a `tool`)               -> .tools/peers/bin/restic
#   kopia   tools/kopia/go.mod (a `tool`)                -> .tools/peers/bin/kopia
#   rustic  tools/rustic/pin (crates.io, cargo --locked) -> .tools/peers/bin/rustic
# Each is rebuilt only when its pin or these scripts change (a stamp per peer beside the binaries);
# a peer that is up to date costs nothing. The Debian restic in /usr/bin (0.14, the tests' one) is left
# alone: these live in their own folder so that nothing else picks them up from PATH.
#
#   scripts/build-peers.sh                  restic and kopia (a minute or two each, cold)
#   scripts/build-peers.sh restic kopia rustic
#   LIFELINE_BENCH_RUSTIC=1 scripts/build-peers.sh   the same as naming all three
#
# rustic is opt-in: a cold `cargo install` compiles ~300 crates, which takes several minutes on 2 cores
# (docs/performance.md has the measured time). Prefix with `nice -n 10` on a shared machine.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BIN=.tools/peers/bin
mkdir -p "$BIN"

if [ $# -eq 0 ]; then
    set -- restic kopia
    if [ "${LIFELINE_BENCH_RUSTIC:-0}" = 1 ]; then set -- restic kopia rustic; fi
fi

stamp_of() {  # stamp_of NAME FILES...: the stamp path for these inputs
    local name=$1; shift
    echo "$BIN/.$name-$(cat "$@" "$0" scripts/lib/go-build.sh | sha1sum | cut -c1-12)"
}

build_go_peer() {  # build_go_peer NAME MODULE PACKAGE LDFLAGS_FN
    local name=$1 module=$2 package=$3 src=tools/$1 version stamp ldflags
    version=$(sed -n "s|^\s*$module \(v[0-9.]*\).*|\1|p" "$src/go.mod" | head -1)
    stamp=$(stamp_of "$name" "$src/go.mod" "$src/go.sum")
    if [ -x "$BIN/$name" ] && [ -e "$stamp" ]; then
        echo "$name: $BIN/$name is up to date ($version)"
        return 0
    fi
    command -v go >/dev/null || { echo "$name: the Go toolchain is needed (Go 1.26+)" >&2; return 1; }
    echo "$name: building $module $version from Go modules (a minute or two cold on 2 cores)"
    ldflags="-s -w"
    if [ "$name" = kopia ]; then
        ldflags="$ldflags -X $module/repo.BuildVersion=${version#v} -X $module/repo.BuildInfo=$version"
        ldflags="$ldflags -X $module/repo.BuildGitHubRepo=kopia/kopia"
    fi
    . scripts/lib/go-build.sh
    go_build "$name" "$src" "$ROOT/$BIN/$name" "$package" "$ldflags"
    rm -f "$BIN/.$name-"*
    touch "$stamp"
}

build_rustic() {
    local CRATE VERSION FEATURES stamp start n=0 feat=()
    # shellcheck disable=SC1091
    . tools/rustic/pin
    stamp=$(stamp_of rustic tools/rustic/pin)
    if [ -x "$BIN/rustic" ] && [ -e "$stamp" ]; then
        echo "rustic: $BIN/rustic is up to date ($CRATE $VERSION)"
        return 0
    fi
    command -v cargo >/dev/null || { echo "rustic: cargo is needed (Rust 1.91+ for rustic-rs 0.11)" >&2; return 1; }
    case "$FEATURES" in
        default) ;;
        "") feat=(--no-default-features) ;;
        *) feat=(--no-default-features --features "$FEATURES") ;;
    esac
    echo "rustic: installing $CRATE $VERSION from crates.io (cargo install --locked ${feat[*]});"
    echo "rustic: a cold build compiles ~300 crates, several minutes on 2 cores; a count every 25 is the progress line"
    start=$(date +%s)
    # A target dir kept in .tools/cache makes a rebuild after a bump incremental.
    CARGO_TARGET_DIR=$ROOT/.tools/cache/rustic-target \
        cargo install "$CRATE" --version "$VERSION" --locked "${feat[@]}" --root "$ROOT/.tools/peers" --force 2>&1 |
        while IFS= read -r line; do
            case "$line" in
                *Compiling*) n=$((n + 1))
                    if [ $((n % 25)) -eq 0 ]; then echo "rustic: $n crates compiled ($(( $(date +%s) - start ))s)"; fi ;;
                *Downloaded*|*Downloading*|*Updating*|*Locking*|*Adding*|*Fresh*) ;;
                *) echo "$line" ;;
            esac
        done
    test -x "$BIN/rustic" || { echo "rustic: build failed" >&2; return 1; }
    rm -f "$BIN/.rustic-"*
    touch "$stamp"
    echo "rustic: built $BIN/rustic ($(du -h "$BIN/rustic" | cut -f1)) in $(( $(date +%s) - start ))s"
}

for peer in "$@"; do
    case "$peer" in
        restic) build_go_peer restic github.com/restic/restic github.com/restic/restic/cmd/restic ;;
        kopia) build_go_peer kopia github.com/kopia/kopia github.com/kopia/kopia ;;
        rustic) build_rustic ;;
        *) echo "build-peers: unknown peer $peer (restic, kopia, rustic)" >&2; exit 2 ;;
    esac
done
for peer in "$@"; do
    case "$peer" in
        restic) echo "restic: $("$BIN/restic" version)" ;;
        kopia) echo "kopia: $("$BIN/kopia" --version 2>&1 | head -1)" ;;
        rustic) echo "rustic: $("$BIN/rustic" --version 2>&1 | head -1)" ;;
    esac
done
