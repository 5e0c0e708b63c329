#!/usr/bin/env bash
# Builds a real kube-apiserver from the Go module proxy (no binary
# downloads reach CI) for the Kubernetes provider's tests and benchmark,
# and prints its path. k8s.io/kubernetes cannot be `go install`ed (its
# go.mod replaces its staging modules with local paths), so
# .ci/kube-apiserver/ is a scratch main module that requires it and
# replaces each staging module by its published twin; its go.sum pins
# every module. The binary is kept in DIR (default
# /var/cache/dspool-ci), named by its version, and not built again while
# it is there: a cold build is long (see docs/decisions/0036).
set -euo pipefail
cd "$(dirname "$0")/kube-apiserver"
KV=v1.37.2
DIR=${DSPOOL_KUBE_CACHE:-/var/cache/dspool-ci}
OUT="$DIR/kube-apiserver-$KV"
if [ -x "$OUT" ]; then echo "$OUT"; exit 0; fi
mkdir -p "$DIR" 2>/dev/null || true
if [ ! -w "$DIR" ]; then
  DIR=${XDG_CACHE_HOME:-$HOME/.cache}/dspool-ci; OUT="$DIR/kube-apiserver-$KV"
  if [ -x "$OUT" ]; then echo "$OUT"; exit 0; fi
  mkdir -p "$DIR"
fi
export PATH="/usr/local/go/bin:$PATH"
start=$(date +%s)
go build -trimpath -o "$OUT.tmp" \
  -ldflags "-s -w -X k8s.io/component-base/version.gitVersion=$KV -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=37" \
  k8s.io/kubernetes/cmd/kube-apiserver >&2
mv "$OUT.tmp" "$OUT"
echo "kube-apiserver $KV built in $(( $(date +%s) - start )) s" >&2
echo "$OUT"
