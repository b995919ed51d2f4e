# Shared by the scripts that build a Go program of tools/ into .tools/bin with a progress line.
# Source it, then: go_build LABEL SRC_DIR OUT PACKAGE LDFLAGS
# -v names each package as it compiles: a count every 200 is the progress line; anything with a
# space in it is the compiler speaking and is shown as it is.
go_build() {
    local label=$1 src=$2 out=$3 package=$4 ldflags=$5 start n=0
    start=$(date +%s)
    export CGO_ENABLED=0 GOFLAGS=-buildvcs=false
    (cd "$src" && go mod download)
    echo "$label: modules downloaded in $(( $(date +%s) - start ))s; compiling"
    (cd "$src" && go build -v -trimpath -ldflags "$ldflags" -o "$out.new" "$package" 2>&1) | while IFS= read -r line; do
        n=$((n + 1))
        case "$line" in
            *" "*) echo "$line" ;;
        esac
        if [ $((n % 200)) -eq 0 ]; then echo "$label: $n packages compiled ($(( $(date +%s) - start ))s)"; fi
    done
    test -x "$out.new" || { echo "$label: build failed" >&2; return 1; }
    mv "$out.new" "$out"
    echo "$label: built $out ($(du -h "$out" | cut -f1)) in $(( $(date +%s) - start ))s"
}
