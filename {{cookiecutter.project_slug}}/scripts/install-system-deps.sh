#!/usr/bin/env bash
# Install the two system programs the local stack runs: nginx and redis-server;
# with the argument `bench`, also wrk, the load generator of `make bench`; with
# `test`, also promtool (Debian's prometheus package), which checks /metrics.
# Does nothing when they are there; installs them with apt-get when run as root
# on Debian or Ubuntu; otherwise says what to install and exits 1. The stack
# starts its own nginx and Redis, so no system service is left running.
set -o errexit -o nounset -o pipefail

# Each package, and at the same index the program that shows it is installed.
PACKAGES=(nginx redis-server)
PROGRAMS=(nginx redis-server)
case "${1:-}" in
    bench) PACKAGES+=(wrk) PROGRAMS+=(wrk) ;;
    test) PACKAGES+=(prometheus) PROGRAMS+=(promtool) ;;
    "") ;;
    *)
        echo "install-system-deps: unknown argument '$1' (bench, test or none)." >&2
        exit 2
        ;;
esac
readonly PACKAGES PROGRAMS
# Debian installs nginx into /usr/sbin, which a normal user's PATH lacks.
readonly EXTRA_PATH="/usr/sbin:/usr/local/sbin:/sbin"

have() {
    PATH="${PATH}:${EXTRA_PATH}" command -v "$1" >/dev/null 2>&1
}

have_all() {
    local program
    for program in "${PROGRAMS[@]}"; do
        have "${program}" || return 1
    done
}

if have_all; then
    exit 0
fi

if [[ "${EUID}" -ne 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
    echo "install-system-deps: install ${PACKAGES[*]} with your system's package manager (as root on Debian or Ubuntu: apt-get install ${PACKAGES[*]})." >&2
    exit 1
fi

# While packages install, refuse every service start (exit 101 is
# invoke-rc.d's "action forbidden"), so neither the distribution's nginx nor
# its Redis comes up and holds port 80 or 6379.
readonly POLICY=/usr/sbin/policy-rc.d
policy_backup=""
if [[ -e "${POLICY}" ]]; then
    policy_backup="$(mktemp)"
    cp -p "${POLICY}" "${policy_backup}"
fi
restore_policy() {
    if [[ -n "${policy_backup}" ]]; then
        mv -f "${policy_backup}" "${POLICY}"
    else
        rm -f "${POLICY}"
    fi
}
trap restore_policy EXIT
printf '#!/bin/sh\nexit 101\n' >"${POLICY}"
chmod 0755 "${POLICY}"

export DEBIAN_FRONTEND=noninteractive
apt-get -o Acquire::Retries=3 update
apt-get -o Acquire::Retries=3 install -y --no-install-recommends "${PACKAGES[@]}"

# Belt and braces for machines where the policy was bypassed: stop the
# system services if something started them anyway.
if command -v systemctl >/dev/null 2>&1 && [[ -d /run/systemd/system ]]; then
    systemctl stop nginx redis-server prometheus >/dev/null 2>&1 || true
elif command -v service >/dev/null 2>&1; then
    service nginx stop >/dev/null 2>&1 || true
    service redis-server stop >/dev/null 2>&1 || true
    service prometheus stop >/dev/null 2>&1 || true
fi

if ! have_all; then
    echo "install-system-deps: apt-get finished but one of ${PACKAGES[*]} is still missing." >&2
    exit 1
fi
