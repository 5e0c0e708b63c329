#!/bin/sh
# Writes third_party/golang.org/x/crypto anew: the packages of
# golang.org/x/crypto that dspool builds (and the tests of ssh), at the
# version below, from the Go module cache, with crypto.patch applied.
# go.mod replaces golang.org/x/crypto with that directory. To move to a new
# version: change VERSION, run this, then `go build ./... && go test -race
# golang.org/x/crypto/ssh ./...`. To change the patch: edit the files
# here, then diff -ruN a pristine copy (crypto.patch emptied) against them.
# See third_party/README.md.
set -eu
VERSION=v0.59.0
here=$(cd "$(dirname "$0")" && pwd)
dst=$here/crypto
src=$(go mod download -json "golang.org/x/crypto@$VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
[ -d "$src" ] || { echo "crypto.sh: golang.org/x/crypto@$VERSION is not in the module cache" >&2; exit 1; }

# What dspool's packages and tests import (go list -deps -test ./...), and
# what the tests of ssh import.
packages="argon2 blake2b blowfish chacha20 chacha20poly1305 cryptobyte cryptobyte/asn1 curve25519
internal/alias internal/poly1305 ssh ssh/internal/bcrypt_pbkdf ssh/terminal ssh/testdata"
with_tests="ssh"

rm -rf "$dst"
mkdir -p "$dst"
cp "$src/go.mod" "$src/go.sum" "$src/LICENSE" "$src/PATENTS" "$dst/"
for p in $packages; do
	mkdir -p "$dst/$p"
	for f in "$src/$p"/*; do
		[ -f "$f" ] || continue
		case "$f" in
		*_test.go) case " $with_tests " in *" $p "*) ;; *) continue ;; esac ;;
		*.go | *.s | *.h) ;;
		*) continue ;;
		esac
		cp "$f" "$dst/$p/"
	done
done
chmod -R u+w "$dst"
(cd "$dst" && patch -s -p1 <"$here/crypto.patch")
gofmt -w "$dst" # ssh/testdata/keys.go is not gofmt'ed upstream
echo "third_party/golang.org/x/crypto: golang.org/x/crypto $VERSION with crypto.patch"
