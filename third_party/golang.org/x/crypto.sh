#!/bin/sh
# The patched golang.org/x/crypto that go.mod's replace points at.
#
#   crypto.sh        writes third_party/golang.org/x/crypto anew: the packages
#                    below of golang.org/x/crypto@VERSION, from the Go module
#                    cache (downloaded if needed), with crypto.patch applied.
#   crypto.sh diff   writes crypto.patch anew from the edited directory:
#                    what it holds that a pristine copy does not.
#
# See third_party/README.md for moving to a new version.
set -eu
VERSION=v0.59.0
here=$(cd "$(dirname "$0")" && pwd)
dst=$here/crypto

# What dspool's packages and tests import, in golang.org/x/crypto
# (`go list -deps -test ./... | grep '^golang.org/x/crypto/'`), and what the
# tests of ssh import. Packages in with_tests keep their tests.
packages="argon2 blake2b blowfish chacha20 chacha20poly1305 cryptobyte cryptobyte/asn1 curve25519
internal/alias internal/poly1305 ssh ssh/internal/bcrypt_pbkdf ssh/terminal ssh/testdata"
with_tests="ssh"

# pristine DIR: the packages of golang.org/x/crypto@VERSION in DIR, gofmt'ed
# (ssh/testdata/keys.go is not, upstream).
pristine() {
	if ! json=$(go mod download -json "golang.org/x/crypto@$VERSION" 2>&1); then
		echo "crypto.sh: cannot get golang.org/x/crypto@$VERSION: $json" >&2
		exit 1
	fi
	src=$(printf '%s\n' "$json" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
	rm -rf "$1"
	mkdir -p "$1"
	cp "$src/go.mod" "$src/go.sum" "$src/LICENSE" "$src/PATENTS" "$1/"
	for p in $packages; do
		mkdir -p "$1/$p"
		for f in "$src/$p"/*; do
			[ -f "$f" ] || continue
			case "$f" in
			*_test.go) case " $with_tests " in *" $p "*) ;; *) continue ;; esac ;;
			*.go | *.s | *.h) ;;
			*) continue ;;
			esac
			cp "$f" "$1/$p/"
		done
	done
	chmod -R u+w "$1"
	gofmt -w "$1"
}

case "${1:-}" in
"")
	pristine "$dst"
	(cd "$dst" && patch -s -p1 --no-backup-if-mismatch <"$here/crypto.patch")
	echo "third_party/golang.org/x/crypto: golang.org/x/crypto $VERSION with crypto.patch"
	;;
diff)
	tmp=$(mktemp -d)
	trap 'rm -rf "$tmp"' EXIT
	pristine "$tmp/a"
	cp -r "$dst" "$tmp/b"
	gofmt -w "$tmp/b"
	(cd "$tmp" && diff -ruN a b || [ $? = 1 ]) | sed 's/^\(---\|+++\) \([^\t]*\)\t.*$/\1 \2/' >"$here/crypto.patch"
	echo "third_party/golang.org/x/crypto.patch: $(grep -c '^diff ' "$here/crypto.patch") files differ from golang.org/x/crypto $VERSION"
	;;
*)
	echo "usage: crypto.sh [diff]" >&2
	exit 2
	;;
esac
