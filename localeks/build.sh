#!/usr/bin/env bash
# Builds the local control plane (etcd, kube-apiserver, kube-controller-manager, kube-scheduler,
# kubectl, kwok) and the token webhook's verifier (eks-token-verifier: aws-iam-authenticator's own
# token verification, localeks/go/iamauth) from the pinned wrapper modules in localeks/go/.
# Binaries go to a cache outside the git tree, keyed by the hash of the wrapper modules (go.mod,
# go.sum and their own Go files) and of this script, so a second run (or a fresh clone on the same
# machine) reuses them. Prints the bin directory on stdout.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache_root=${LOCALEKS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/eks-nth-localeks}
shopt -s nullglob
sources=("$here"/go/*/go.mod "$here"/go/*/go.sum "$here"/go/*/*.go "$here/build.sh")
shopt -u nullglob
key=$(cat "${sources[@]}" | sha256sum | cut -c1-16)
bin="$cache_root/bin-$key"
want=(etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kwok eks-token-verifier)

complete() { local b; for b in "${want[@]}"; do [ -x "$bin/$b" ] || return 1; done; }
if complete; then echo "$bin"; exit 0; fi

mkdir -p "$cache_root"
# One build at a time: two local EKSes starting together would build into the same directory.
if command -v flock >/dev/null; then
  exec 9>"$cache_root/.build.lock"
  flock -n 9 || { echo "localeks: another build.sh is building into $cache_root; waiting" >&2; flock 9; }
  if complete; then echo "$bin"; exit 0; fi
fi
echo "localeks: building the local EKS's binaries into $bin (minutes the first time)" >&2
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
build iamauth eks-token-verifier localeks/iamauth

rm -rf "$bin" && mv "$bin.partial" "$bin"
# Binaries of other (older) wrapper-module versions are not used again, except by a local EKS
# that still runs from them (its kubectl is still called): those stay until a later build.
for old in "$cache_root"/bin-*; do
  [ -d "$old" ] && [ "$old" != "$bin" ] || continue
  in_use=0
  for exe in /proc/[0-9]*/exe; do
    case "$(readlink "$exe" 2>/dev/null)" in "$old"/*) in_use=1; break ;; esac
  done
  if [ "$in_use" = 1 ]; then echo "localeks: keeping $old (a running process uses it)" >&2; else rm -rf "$old"; fi
done
echo "localeks: built in $(( $(date +%s) - start )) s into $bin ($(du -sh "$bin" | cut -f1))" >&2
echo "$bin"
