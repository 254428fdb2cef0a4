#!/usr/bin/env bash
# Kaldi's sentence-scoring contract, with our self-normalized LSTM LM:
#   local/compute_sentence_scores.sh <lm-dir> <temp-dir> <input-text> <output-scores>
# <input-text> has `key word word ...` lines; <output-scores> gets one `key cost` line per
# input line, same keys, same order, cost = -ln p(words </s>) (natural log, as Kaldi's RNNLM
# scripts write). It stands in for rnnlm/compute_sentence_scores.sh, so Kaldi's own
# scripts/rnnlm/lmrescore_nbest.sh can use our models (see README.md).
# With --server URL the lines go to a running rescorer-server (POST /v1/score/kaldi, in
# chunks of --chunk-lines) instead of loading the model here; --model names the model there
# (default: the basename of <lm-dir>). A busy server's 503 (and 429, 502, 504, a refused or
# dropped connection) is retried after its Retry-After, up to --retries times within --retry-time
# seconds, so parallel jobs against one server wait their turn instead of failing.
set -euo pipefail

# Begin configuration section.
server=
model=
chunk_lines=4096  # the service's default --max-sentences
retries=20        # attempts after the first, for a busy (503) or unreachable server
retry_time=900    # seconds, at most, spent retrying one chunk
rescorer=${RESCORER:-rescorer}
# End configuration section.

help_message="Usage: $0 [options] <lm-dir> <temp-dir> <input-text> <output-scores>
Options:
  --server <url>        # score through a running rescorer-server (default: load <lm-dir> here)
  --model <name>        # the model's name on the server (default: basename of <lm-dir>)
  --chunk-lines <n>     # lines per HTTP request (default: $chunk_lines)
  --retries <n>         # retries of a chunk the server is too busy for (503, Retry-After honoured; default: $retries)
  --retry-time <s>      # seconds at most spent retrying one chunk (default: $retry_time)"

echo "$0 $*"
[ -f ./path.sh ] && . ./path.sh
# shellcheck source=local/parse_options.sh
. "$(dirname "$0")/parse_options.sh"  # beside this script, wherever it is called from

if [ $# -ne 4 ]; then
  echo "$help_message" >&2
  exit 1
fi
lm_dir=$1 tmp=$2 text=$3 scores=$4

[ -f "$text" ] || { echo "$0: expected file $text to exist" >&2; exit 1; }
mkdir -p "$tmp"
if [ -z "$server" ]; then
  [ -f "$lm_dir/config.json" ] || { echo "$0: expected $lm_dir/config.json (an artifact of rescorer-train)" >&2; exit 1; }
  command -v "$rescorer" >/dev/null || { echo "$0: $rescorer not found: pip install the project, or set RESCORER" >&2; exit 1; }
  "$rescorer" score "$lm_dir" "$text" "$tmp/scores" --oov-report
else
  command -v curl >/dev/null || { echo "$0: curl not found (needed by --server)" >&2; exit 1; }
  model=${model:-$(basename "$lm_dir")}
  rm -f "$tmp"/chunk.*
  : > "$tmp/scores"
  split -l "$chunk_lines" -d -a 6 "$text" "$tmp/chunk."
  for chunk in "$tmp"/chunk.*; do
    # -o, not stdout: a retried attempt rewrites the file, so a 503's body never reaches the scores
    curl --fail-with-body --silent --show-error --data-binary "@$chunk" -H "Content-Type: text/plain" \
      --retry "$retries" --retry-max-time "$retry_time" --retry-connrefused -o "$chunk.out" \
      ${RESCORER_TOKEN:+-H "Authorization: Bearer $RESCORER_TOKEN"} \
      "$server/v1/score/kaldi?model=$model" || { cat "$chunk.out" >&2 2>/dev/null; exit 1; }
    cat "$chunk.out" >> "$tmp/scores"
    rm -f "$chunk.out"
  done
  rm -f "$tmp"/chunk.*
fi
# same lines in, same lines out: a short or reordered output is an error, never passed on
if ! cmp -s <(awk '{print $1}' "$text") <(awk '{print $1}' "$tmp/scores"); then
  echo "$0: the scores' keys differ from $text's (count or order)" >&2
  exit 1
fi
mv "$tmp/scores" "$scores"
