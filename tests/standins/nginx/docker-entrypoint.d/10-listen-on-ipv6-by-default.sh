#!/bin/sh
# Where the host has IPv6, make the image's own demo server listen on [::]:8080
# too; a default.conf that is not the image's (rendered from a template,
# mounted, edited) is left alone.
set -eu

conf=/etc/nginx/conf.d/default.conf
me="$(basename "$0")"

say() {
    [ -n "${NGINX_ENTRYPOINT_QUIET_LOGS:-}" ] || echo "$me: info: $*"
}

if [ ! -f /proc/net/if_inet6 ]; then
    say "ipv6 not available"
    exit 0
fi
if [ ! -f "$conf" ]; then
    say "$conf is not a file or does not exist"
    exit 0
fi
if ! touch "$conf" 2>/dev/null; then
    say "can not modify $conf (read-only file system?)"
    exit 0
fi
if grep -q 'listen \[::\]:8080;' "$conf"; then
    say "IPv6 listen already enabled"
    exit 0
fi
# The checksum was taken when the image was built.
if ! sha256sum -c --status /usr/local/share/mwt-standin/default.conf.sha256 2>/dev/null; then
    say "$conf differs from the image's version"
    exit 0
fi
sed -i 's/^\( *\)listen 8080;$/&\n\1listen [::]:8080;/' "$conf"
say "Enabled listen on IPv6 in $conf"
