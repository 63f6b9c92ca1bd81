#!/bin/sh
# Render every template into nginx's configuration, as the official image does:
# TEMPLATE_DIR/some/name.conf.template becomes OUTPUT_DIR/some/name.conf, with
# envsubst replacing only variables that are defined in the environment (and
# match NGINX_ENVSUBST_FILTER), so nginx's own $variables survive.
# (The official image also renders *.stream-template files; this one does not.)
set -eu

me="$(basename "$0")"
template_dir="${NGINX_ENVSUBST_TEMPLATE_DIR:-/etc/nginx/templates}"
suffix="${NGINX_ENVSUBST_TEMPLATE_SUFFIX:-.template}"
output_dir="${NGINX_ENVSUBST_OUTPUT_DIR:-/etc/nginx/conf.d}"
filter="${NGINX_ENVSUBST_FILTER:-}"

say() {
    [ -n "${NGINX_ENTRYPOINT_QUIET_LOGS:-}" ] || echo "$me: $*"
}

[ -d "$template_dir" ] || exit 0
if [ ! -w "$output_dir" ]; then
    say "ERROR: $template_dir exists, but $output_dir is not writable"
    exit 0
fi

# "${A} ${B} ...": the names envsubst may replace. awk's ENVIRON holds every
# variable, whatever its value contains.
defined="$(awk -v filter="$filter" 'BEGIN {
    for (name in ENVIRON) if (name ~ filter) printf "${%s} ", name
}')"

find "$template_dir" -follow -type f -name "*$suffix" -print | while read -r template; do
    relative="${template#"$template_dir"/}"
    output="$output_dir/${relative%"$suffix"}"
    mkdir -p "$(dirname "$output")"
    say "Running envsubst on $template to $output"
    envsubst "$defined" <"$template" >"$output"
done
