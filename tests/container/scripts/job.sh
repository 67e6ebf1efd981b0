#!/bin/sh
# The container tests' job (busybox sh, run as PID 1 of its container). It records its arguments and environment
# in $ADJUTANT_OUTPUT_DIR (the job's output folder, mounted read-write), then does what its JSON's "act" says:
# ok (print and succeed), fail (exit 3), sleep (10 minutes, ignoring SIGTERM as a PID 1 without a handler does),
# nap (4 s), hog (2 s, then become dd asking for 100 MiB at once).
printf '%s' "$#" > "$ADJUTANT_OUTPUT_DIR/argc"
printf '%s' "$1" > "$ADJUTANT_OUTPUT_DIR/argv"
env > "$ADJUTANT_OUTPUT_DIR/env"
echo "training with $1"
case "$1" in
  *'"fail"'*)
    echo "something went wrong: exiting with 3" >&2
    exit 3 ;;
  *'"sleep"'*)
    i=0
    while [ "$i" -lt 600 ]; do sleep 1; i=$((i + 1)); done ;;
  *'"nap"'*)
    for i in 1 2 3 4; do echo "nap $i"; sleep 1; done ;;
  *'"hog"'*)
    sleep 2
    echo "asking for 100 MiB"
    exec dd if=/dev/zero of=/dev/null bs=100M count=1 ;;
esac
echo "done"
