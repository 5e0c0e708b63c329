#!/bin/sh
# gateway/internal/ssh: golang.org/x/crypto/ssh at the version go.mod
# requires, under an import path of its own, with ssh.patch applied (see
# README.md here and docs/decisions/0018-x-crypto-upstream.md).
#
#   ssh.sh         writes gateway/internal/ssh anew
#   ssh.sh diff    writes ssh.patch anew from the edited gateway/internal/ssh:
#                  what it holds that the unpatched copy does not
#   ssh.sh check   fails when gateway/internal/ssh was made from another
#                  version of x/crypto than go.mod's, or differs from what
#                  ssh.sh writes (CI runs it)
#
# Needs go (the module proxy, or the module in the cache) and git (its
# diff and apply work on plain directories here, outside any repository).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
dst=$here/ssh
patch=$here/ssh.patch
mod=golang.org/x/crypto
self=github.com/dspool/dspool/gateway/internal/ssh

# What is copied: upstream's package and the directory it goes to in the
# copy. x/crypto's internal packages cannot be imported from outside
# x/crypto, so those that ssh imports are copied beneath it.
copies="ssh=. ssh/internal/bcrypt_pbkdf=internal/bcrypt_pbkdf internal/poly1305=internal/poly1305"

fail() {
	echo "ssh.sh: $*" >&2
	exit 1
}

# version: the x/crypto version go.mod requires.
version=$(cd "$root" && go list -m -f '{{if .Replace}}replaced{{else}}{{.Version}}{{end}}' "$mod")
[ "$version" != replaced ] || fail "go.mod replaces $mod: require it from upstream, without a replace"

gofmt=$(go env GOROOT)/bin/gofmt
# The git commands run in temporary directories and must not find a
# repository above them.
export GIT_CEILING_DIRECTORIES="${TMPDIR:-/tmp}"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# pristine DIR: upstream's packages at go.mod's version in DIR, with their
# import paths rewritten and gofmt'ed (which sorts the rewritten imports),
# and UPSTREAM saying what they were made from.
pristine() {
	json=$(cd "$root" && go mod download -json "$mod@$version" 2>&1) || fail "cannot get $mod@$version: $json"
	src=$(printf '%s\n' "$json" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
	sum=$(printf '%s\n' "$json" | sed -n 's/^[[:space:]]*"Sum": "\(.*\)",$/\1/p')
	[ -d "$src" ] || fail "no directory for $mod@$version in: $json"
	rm -rf "$1"
	mkdir -p "$1"
	for c in $copies; do
		from=${c%%=*} to=$1/${c#*=}
		mkdir -p "$to"
		for f in "$src/$from"/*.go "$src/$from"/*.s; do
			[ -f "$f" ] || continue
			sed -e "s#\"$mod/ssh\"#\"$self\"#" \
				-e "s#\"$mod/ssh/internal/bcrypt_pbkdf\"#\"$self/internal/bcrypt_pbkdf\"#" \
				-e "s#\"$mod/internal/poly1305\"#\"$self/internal/poly1305\"#" \
				"$f" >"$to/${f##*/}"
		done
	done
	cp "$src/LICENSE" "$src/PATENTS" "$1/"
	chmod -R u+w,go-w "$1"
	if left=$(grep -rn "\"$mod/[^\"]*internal[^\"]*\"" "$1"); then
		fail "upstream imports more of x/crypto's internal packages: add them to copies in ssh.sh
$left"
	fi
	"$gofmt" -w "$1"
	cat >"$1/UPSTREAM" <<-EOF
		# Written by gateway/internal/ssh.sh from this version and ssh.patch.
		# An edit here must go into the patch (\`ssh.sh diff\`) or CI fails.
		$mod $version $sum
	EOF
}

# generate DIR: what gateway/internal/ssh must hold. With "reject", the
# hunks that apply are applied and the others left in .rej files.
generate() {
	pristine "$1"
	[ -s "$patch" ] || return 0
	(cd "$1" && git apply -p1 ${2:+--reject} "$patch") 2>"$tmp/apply" && return 0
	grep -v '^Checking patch\|^Applied patch\|cleanly\.$' "$tmp/apply" >&2
	return 1
}

case "${1:-}" in
"")
	if ! generate "$tmp/ssh" reject; then
		rm -rf "$dst"
		mv "$tmp/ssh" "$dst"
		fail "ssh.patch does not apply whole to $mod $version: make the changes of gateway/internal/ssh/*.rej by hand, delete those files and run \`gateway/internal/ssh.sh diff\`"
	fi
	rm -rf "$dst"
	mv "$tmp/ssh" "$dst"
	echo "gateway/internal/ssh: $mod/ssh $version with ssh.patch"
	;;
diff)
	pristine "$tmp/a"
	cp -R "$dst" "$tmp/b"
	cp "$tmp/a/UPSTREAM" "$tmp/b/" # what it was made from is no change
	"$gofmt" -w "$tmp/b"
	(cd "$tmp" && git -c core.quotepath=off diff --no-index --no-prefix --no-color --no-ext-diff --no-renames \
		--diff-algorithm=myers -U3 a b || [ $? = 1 ]) >"$patch"
	echo "gateway/internal/ssh.patch: $(grep -c '^diff ' "$patch") files differ from $mod $version"
	;;
check)
	recorded=$(sed -n "s#^$mod \\([^ ]*\\) .*#\\1#p" "$dst/UPSTREAM" 2>/dev/null || true)
	[ "$recorded" = "$version" ] ||
		fail "gateway/internal/ssh is made from $mod ${recorded:-(unknown)}, go.mod requires $version: run gateway/internal/ssh.sh"
	generate "$tmp/ssh" || fail "ssh.patch does not apply to $mod $version: run gateway/internal/ssh.sh"
	diff -rq "$dst" "$tmp/ssh" >"$tmp/differ" ||
		fail "gateway/internal/ssh is not $mod/ssh $version with ssh.patch:
$(sed "s#$tmp/ssh#(regenerated)#" "$tmp/differ")
edit the copy and run \`gateway/internal/ssh.sh diff\` to change the patch, or run gateway/internal/ssh.sh to undo the edits"
	echo "gateway/internal/ssh: $mod/ssh $version with ssh.patch, as committed"
	;;
*)
	echo "usage: ssh.sh [diff | check]" >&2
	exit 2
	;;
esac
