# shellcheck shell=bash
# Debian packages on first use; sourced by deploy/lint.sh and deploy/test-tools.sh.
# The caller sets WORK (a scratch directory) and defines die MESSAGE. Root is needed only for
# apt-get, and only on a machine that lacks what is asked for.

has_candidate() { apt-cache policy "$1" 2>/dev/null | grep -q 'Candidate: [^(]'; }

apt_update_if_needed() { # the package lists of a fresh machine may be empty
    has_candidate "$1" && return
    [ "$(id -u)" -eq 0 ] || die "apt-get update needed for $1: run as root, or install it yourself"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
}

apt_install() { # apt_install COMMAND PACKAGE...
    [ "$(id -u)" -eq 0 ] || die "$1 is missing: apt-get install ${*:2} (as root), then run again"
    apt_update_if_needed "$2"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${@:2}" \
        >"$WORK/apt.log" 2>&1 </dev/null || {
        cat "$WORK/apt.log" >&2
        die "apt-get install ${*:2} failed"
    }
}

# extract_from_package PACKAGE DIRECTORY PROGRAM...: copy programs out of a Debian package
# without installing it, so that no service is set up or started (Debian's prometheus package
# would enable one). Needs no root.
extract_from_package() {
    local package=$1 destination=$2 program
    shift 2
    apt_update_if_needed "$package"
    rm -rf "$WORK/deb" && mkdir -p "$WORK/deb" "$destination"
    (cd "$WORK/deb" && apt-get download -qq "$package" >"$WORK/apt.log" 2>&1 </dev/null) || {
        cat "$WORK/apt.log" >&2
        die "apt-get download $package failed"
    }
    dpkg-deb -x "$WORK"/deb/"$package"_*.deb "$WORK/deb/tree"
    for program in "$@"; do
        install -m 0755 "$WORK/deb/tree/usr/bin/$program" "$destination/$program"
    done
}
