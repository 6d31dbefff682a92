#!/bin/sh
# Build the throwaway Kubernetes cluster's programs from the Go module proxy
# (no registry, no prebuilt binaries here): one multicall binary `kube` for
# kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, kube-proxy,
# kubectl and metrics-server (one link instead of seven), plus the static
# `pause` (sandbox image) and `hello` (test image) programs.
#
# Output: ${XDG_CACHE_HOME:-~/.cache}/scalecheck/kube/<version>/bin/, with a
# stamp of the sources and flags: a second run with the same inputs builds
# nothing. Go's own module and build caches are kept as usual. The build runs
# under `nice` (2 cores are shared) and under a lock (never two at once).
# Prints the bin directory on its last line.
set -eu
here=$(cd "$(dirname "$0")/kube" && pwd)
command -v go >/dev/null 2>&1 || { echo "kube-build: go not found (Go >= 1.24 is needed)" >&2; exit 2; }
version=$(awk '$1 == "k8s.io/kubernetes" { print $2; exit }' "$here/go.mod")
cache=${SCALECHECK_KUBE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/scalecheck/kube}/$version
bin=$cache/bin
# Static, without symbol tables or build paths: smaller, faster to link, and the
# same bytes from any checkout. The version stamps what `kubectl version` and
# the node's kubeletVersion say (an unset one reads v0.0.0-master).
minor=$(echo "$version" | cut -d. -f2)
ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$version \
-X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor \
-X k8s.io/component-base/version.gitTreeState=clean"
stamp=$( { cat "$here/go.mod" "$here/go.sum"; find "$here/cmd" -name '*.go' | sort | xargs cat;
          echo "$ldflags"; go env GOVERSION; } | sha256sum | cut -c1-16)
mkdir -p "$bin"
exec 9>"$cache/.lock"
flock 9
if [ -f "$bin/.stamp" ] && [ "$(cat "$bin/.stamp")" = "$stamp" ]; then
    echo "kube-build: $version already built" >&2
    echo "$bin"
    exit 0
fi
echo "kube-build: building Kubernetes $version into $bin (8 to 10 minutes on 2 cores the first time)" >&2
rm -f "$bin/.stamp"
cd "$here"
export CGO_ENABLED=0 GOFLAGS=-mod=readonly
start=$(date +%s)
for prog in pause hello; do
    nice -n 10 go build -trimpath -ldflags "-s -w" -o "$bin/$prog.new" "./cmd/$prog"
    mv "$bin/$prog.new" "$bin/$prog"
done
nice -n 10 go build -trimpath -ldflags "$ldflags" -o "$bin/kube.new" ./cmd/kube
mv "$bin/kube.new" "$bin/kube"
for name in kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl metrics-server; do
    ln -sf kube "$bin/$name"
done
echo "$stamp" >"$bin/.stamp"
echo "kube-build: built in $(( $(date +%s) - start )) s" >&2
echo "$bin"
