#!/usr/bin/env bash
# Debian packages the test suite uses: PostgreSQL 15, Redis, HAProxy and PgBouncer for the end-to-end run, promtool
# (package prometheus) for the alert rules. Installs what is missing when run as root with apt-get;
# otherwise says what is missing and leaves it to the tests (which fail in CI, skip elsewhere).
set -euo pipefail
need=()
[ -x /usr/lib/postgresql/15/bin/initdb ] || need+=(postgresql-15)
command -v redis-server >/dev/null || need+=(redis-server)
command -v haproxy >/dev/null || need+=(haproxy)
command -v promtool >/dev/null || need+=(prometheus)
command -v pgbouncer >/dev/null || need+=(pgbouncer)
[ "${#need[@]}" -eq 0 ] && exit 0
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
  echo "== apt-get install ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
else
  echo "note: missing Debian packages ${need[*]} (install them as root: apt-get install ${need[*]})" >&2
fi
