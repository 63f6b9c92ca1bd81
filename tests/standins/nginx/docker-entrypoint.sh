#!/bin/sh
# Entrypoint of the nginx stand-in, doing what the official image's does: when
# the command is nginx, run the scripts in /docker-entrypoint.d/ in version
# order (executable *.sh are run, executable *.envsh are sourced so their
# exports reach nginx), then exec the command. POSIX sh, as busybox runs it.
set -eu

say() {
    [ -n "${NGINX_ENTRYPOINT_QUIET_LOGS:-}" ] || echo "$0: $*"
}

run_configuration_scripts() {
    scripts="$(find /docker-entrypoint.d/ -follow -type f -print | sort -V)"
    if [ -z "$scripts" ]; then
        say "No files found in /docker-entrypoint.d/, skipping configuration"
        return 0
    fi
    say "/docker-entrypoint.d/ is not empty, will attempt to perform configuration"
    # A here-document, not a pipe: sourced scripts must change this shell.
    while read -r script; do
        if [ ! -x "$script" ]; then
            say "Ignoring $script, not executable"
            continue
        fi
        case "$script" in
            *.envsh)
                say "Sourcing $script"
                # shellcheck source=/dev/null
                . "$script"
                ;;
            *.sh) say "Launching $script"; "$script" ;;
            *) say "Ignoring $script" ;;
        esac
    done <<SCRIPTS
$scripts
SCRIPTS
    say "Configuration complete; ready for start up"
}

case "${1:-}" in
    nginx | nginx-debug) run_configuration_scripts ;;
esac

exec "$@"
