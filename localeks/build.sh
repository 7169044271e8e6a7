#!/usr/bin/env bash
# Builds the local control plane (etcd, kube-apiserver, kube-controller-manager, kube-scheduler,
# kubectl, kwok)
# from the pinned wrapper modules in localeks/go/. Binaries go to a cache outside the git tree,
# keyed by the hash of the wrapper modules, so a second run (or a fresh clone on the same
# machine) reuses them. Prints the bin directory on stdout.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache_root=${LOCALEKS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/eks-nth-localeks}
key=$(cat "$here"/go/*/go.mod "$here"/go/*/go.sum "$here/build.sh" | sha256sum | cut -c1-16)
bin="$cache_root/bin-$key"
want=(etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kwok)

complete=1
for b in "${want[@]}"; do [ -x "$bin/$b" ] || complete=0; done
if [ "$complete" = 1 ]; then echo "$bin"; exit 0; fi

mkdir -p "$bin.partial"
export CGO_ENABLED=0 GOFLAGS=-buildvcs=false
start=$(date +%s)

kube_version=$(awk '$1=="k8s.io/kubernetes" && $2 ~ /^v/ {print $2}' "$here/go/kube/go.mod")
[ -n "$kube_version" ] || { echo "localeks: no k8s.io/kubernetes requirement in go/kube/go.mod" >&2; exit 1; }
minor=$(echo "$kube_version" | cut -d. -f2)
ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$kube_version \
 -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor \
 -X k8s.io/component-base/version.gitTreeState=clean \
 -X k8s.io/component-base/version.buildDate=1970-01-01T00:00:00Z \
 -X k8s.io/client-go/pkg/version.gitVersion=$kube_version \
 -X k8s.io/client-go/pkg/version.gitMajor=1 -X k8s.io/client-go/pkg/version.gitMinor=$minor"

build() { # module-dir output package [ldflags]
  local dir=$1 out=$2 pkg=$3 flags=${4:-"-s -w"}
  [ -x "$bin.partial/$out" ] && return 0
  echo "localeks: building $out ($pkg)" >&2
  (cd "$here/go/$dir" && go build -trimpath -ldflags "$flags" -o "$bin.partial/$out" "$pkg") >&2
}

build etcd etcd go.etcd.io/etcd/server/v3
build kwok kwok sigs.k8s.io/kwok/cmd/kwok
build kube kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver "$ldflags"
build kube kube-controller-manager k8s.io/kubernetes/cmd/kube-controller-manager "$ldflags"
build kube kube-scheduler k8s.io/kubernetes/cmd/kube-scheduler "$ldflags"
build kube kubectl k8s.io/kubernetes/cmd/kubectl "$ldflags"

rm -rf "$bin" && mv "$bin.partial" "$bin"
# binaries of other (older) wrapper-module versions are never used again
find "$cache_root" -maxdepth 1 -name 'bin-*' ! -name "bin-$key" -exec rm -rf {} +
echo "localeks: built in $(( $(date +%s) - start )) s into $bin ($(du -sh "$bin" | cut -f1))" >&2
echo "$bin"
