#!/usr/bin/env bash
# Build the root filesystem the stand-in images start from: a minimal Debian 12
# (bookworm) made with debootstrap, written as a tarball for `docker import`.
# No registry is needed; packages come from the Debian mirror apt uses here.
#
# Usage: rootfs.sh OUTPUT.tar [MIRROR]
set -o errexit -o nounset -o pipefail

readonly output="$1"
readonly mirror="${2:-http://deb.debian.org/debian}"
readonly security_mirror="${mirror%/debian}/debian-security"

if [[ "${EUID}" -ne 0 ]]; then
    echo "rootfs.sh: debootstrap needs root." >&2
    exit 1
fi

work="$(mktemp -d "${output}.work.XXXXXX")"
trap 'rm -rf "${work}"' EXIT
root="${work}/root"

# minbase: only Essential and apt. ca-certificates because every official image
# the stand-ins replace carries a CA store.
debootstrap --variant=minbase --include=ca-certificates bookworm "${root}" "${mirror}"

# The suites an official debian:bookworm image has, so the images' apt-get
# installs get the same point and security updates.
cat >"${root}/etc/apt/sources.list" <<EOF
deb ${mirror} bookworm main
deb ${mirror} bookworm-updates main
deb ${security_mirror} bookworm-security main
EOF

# Packages installed during an image build must not try to start services
# (101 is invoke-rc.d's "action forbidden").
printf '#!/bin/sh\nexit 101\n' >"${root}/usr/sbin/policy-rc.d"
chmod 0755 "${root}/usr/sbin/policy-rc.d"

# The engine bind-mounts these per container; the build host's copies must not leak.
rm -f "${root}/etc/hostname" "${root}/etc/resolv.conf"
: >"${root}/etc/resolv.conf"

# Downloaded packages and lists only make the tarball bigger.
apt_dirs=("${root}/var/cache/apt/archives" "${root}/var/lib/apt/lists")
find "${apt_dirs[@]}" -mindepth 1 -maxdepth 1 -type f -delete

# Write next to the target, then rename: an interrupted run leaves no half tarball.
tar --numeric-owner --one-file-system -C "${root}" -cf "${work}/rootfs.tar" .
mv -f "${work}/rootfs.tar" "${output}"
echo "rootfs.sh: wrote ${output} ($(du -h "${output}" | cut -f1))"
