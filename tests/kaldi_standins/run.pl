#!/usr/bin/env bash
# A minimal stand-in for Kaldi's utils/run.pl, for the tests (Kaldi is not installed where the
# tests run). `run.pl JOB=1:N LOG COMMAND ...` runs COMMAND once per job, all in parallel, with
# JOB replaced by the job's number in LOG and in the command; each job's output goes to its LOG;
# the exit status is 1 if any job failed. Arguments are joined into one shell command as
# run.pl joins them: without whitespace as they are (so `|` and `&&` act), else quoted.
set -u
spec=$1 log=$2
shift 2
var=${spec%%=*} range=${spec#*=}
first=${range%%:*} last=${range#*:}
command=""
for x in "$@"; do
  if [[ "$x" =~ ^[^[:space:]]+$ ]]; then
    command+="$x "
  elif [[ "$x" != *\"* ]]; then
    command+="\"$x\" "
  else
    command+="'$x' "
  fi
done
pids=()
for ((job = first; job <= last; job++)); do
  this=${command//$var/$job}
  this_log=${log//$var/$job}
  mkdir -p "$(dirname "$this_log")"
  { echo "# $this"; bash -c "$this"; } > "$this_log" 2>&1 &
  pids+=("$!")
done
status=0
for pid in "${pids[@]}"; do
  wait "$pid" || status=1
done
exit "$status"
