#!/usr/bin/env bash
# pytest for `make test`: the real node's tier (tests/node) runs beside the rest of the suite rather than
# after it. It spends its 15-odd minutes mostly waiting on pods, the kubelet and the engine, and nothing of
# it meets the other tiers: its own addresses (198.18.0.0/15), ports, PostgreSQL and Redis. Run one after
# the other, the two took about 47 minutes on two cores; side by side, the slower of the two sets the time.
# The node tier's output is printed after the rest's, whole. Either failing fails the run. A SIGINT or
# SIGTERM reaches both; the node tier then stops the node it started.
set -uo pipefail
PYTEST=${1:?usage: run-tests.sh PATH/TO/pytest}
LOG=$(mktemp)
TEMP=$(mktemp -d)   # its own base for tmp_path, apart from the other run's numbered folders
"$PYTEST" -p no:cacheprovider --basetemp="$TEMP/pytest" tests/node >"$LOG" 2>&1 &
node=$!
trap 'kill -TERM "$node" 2>/dev/null; wait "$node"; cat "$LOG"; rm -rf "$LOG" "$TEMP"; exit 130' INT TERM
"$PYTEST" --ignore=tests/node
rest=$?
wait "$node"
tier=$?
trap - INT TERM
echo
echo "== the node tier (tests/node), run beside the rest: exit $tier"
cat "$LOG"
rm -rf "$LOG" "$TEMP"
[ "$rest" -eq 0 ] && [ "$tier" -eq 0 ]
