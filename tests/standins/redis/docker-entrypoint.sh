#!/bin/sh
# Entrypoint of the redis stand-in, doing what the official image's does:
#  - options alone (`--port 1`) or a config file first mean redis-server;
#  - started as root, redis-server gets /data's files handed to `redis` and
#    runs as that user;
#  - a umask of 0022 becomes 0077, so dumps are private;
# and, because Debian's redis-server keeps protected mode on by default where
# the official image's binary has it off, `--protected-mode no` is passed right
# after the config file (if any): a later `--protected-mode yes` still wins, a
# `protected-mode yes` inside that config file does not (it would upstream).
set -eu

case "${1:-}" in
    -* | *.conf) set -- redis-server "$@" ;;
esac

if [ "${1:-}" = redis-server ] && [ "$(id -u)" = 0 ]; then
    find . ! -user redis -exec chown redis {} +
    exec gosu redis "$0" "$@"
fi

if [ "$(umask)" = 0022 ]; then
    umask 0077
fi

if [ "${1:-}" = redis-server ]; then
    shift
    case "${1:-}" in
        "" | -*) set -- redis-server --protected-mode no "$@" ;;
        *) config="$1"; shift; set -- redis-server "$config" --protected-mode no "$@" ;;
    esac
fi

exec "$@"
