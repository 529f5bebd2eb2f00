#!/usr/bin/env bash
# Builds the real control plane (tests/realkube: etcd, kube-apiserver, kube-controller-manager in one binary)
# into $CARGO_TARGET_DIR/realkube/ (default target/realkube/) and prints the binary's path. A build is
# skipped while its inputs (go.mod, go.sum, main.go, this script and the Go version) are unchanged. The first build
# downloads the modules from the Go module proxy and takes about 10 minutes on 2 cores.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
target=${CARGO_TARGET_DIR:-$here/../../target}
out=$(mkdir -p "$target/realkube" && cd "$target/realkube" && pwd)
bin=$out/realkube

inputs=$( (cd "$here" && cat go.mod go.sum main.go build.sh && go version) | sha256sum | cut -d' ' -f1)
# One build at a time: test binaries and CI may ask at once.
exec 9>"$out/.lock"
flock 9
if [ -x "$bin" ] && [ "$(cat "$out/inputs" 2>/dev/null)" = "$inputs" ]; then
    echo "$bin"
    exit 0
fi
echo "realkube: building the control plane into $bin (Go modules from the proxy; about 10 minutes cold)" >&2
start=$(date +%s)
# The version the servers report (kubectl and clients read it); go build leaves it at v0.0.0-master.
version=$(cd "$here" && go list -m -f '{{.Version}}' k8s.io/kubernetes)
minor=$(echo "$version" | cut -d. -f2)
flags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    flags+=" -X $pkg.gitVersion=$version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
done
(cd "$here" && GOFLAGS=-mod=readonly go build -trimpath -ldflags="$flags" -o "$bin.new" .)
mv "$bin.new" "$bin"
echo "$inputs" >"$out/inputs"
echo "realkube: built in $(( $(date +%s) - start ))s" >&2
echo "$bin"
