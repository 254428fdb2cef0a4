#!/usr/bin/env bash
# A Kaldi recipe's rescoring step with our LM: tune the weights on dev, rescore test.
#   ./run.sh [--stage N] [--nj-cmd ...] <lm-dir> <lang-dir> <data-dir-dev> <decode-dir-dev> <data-dir-test> <decode-dir-test> <exp-dir>
# Run from this directory, after setting KALDI_ROOT in path.sh and the job runner in cmd.sh.
# Stages:
#   1  dev: N-best lists with our LM's costs (local/lmrescore_nbest.sh up to the merged lists)
#   2  weights tuned on dev and reported on test: `rescorer eval` (after test's stage 1 lists)
#   3  test: rescored with the tuned weights: lattices for Kaldi's scoring, and the rescorer's WER
set -euo pipefail

# Begin configuration section.
stage=1
N=30
inv_acwt=10
interp_weight=0.5   # our LM's share in the lattices of stage 3 (Kaldi's rnn-weight)
eval_opts=          # options for `rescorer eval`'s tuner, e.g. "--fix interp_weight=0.5 --range lm_weight=5:30"
server=             # score through a running rescorer-server instead of loading the model per job
rescorer=${RESCORER:-rescorer}
# End configuration section.

help_message="Usage: $0 [options] <lm-dir> <lang-dir> <data-dev> <decode-dev> <data-test> <decode-test> <exp-dir>
Options: --stage <n> (default $stage), --N <n> ($N), --inv-acwt <x> ($inv_acwt),
  --interp-weight <w> ($interp_weight), --server <url> (default: load the model in each job),
  --eval-opts <options> (for rescorer eval's tuner; it finds Kaldi's scale itself: LM weights 0-1000)"

echo "$0 $*"
. ./cmd.sh
[ -f ./path.sh ] && . ./path.sh
. local/parse_options.sh

if [ $# -ne 7 ]; then
  echo "$help_message" >&2
  exit 1
fi
lm_dir=$1 lang=$2 data_dev=$3 decode_dev=$4 data_test=$5 decode_test=$6 exp=$7

common=(--cmd "$cmd" --N "$N" --inv-acwt "$inv_acwt")
[ -n "$server" ] && common+=(--server "$server")

if [ "$stage" -le 1 ]; then
  for set in dev test; do
    data=$data_dev decode=$decode_dev
    [ "$set" = test ] && data=$data_test decode=$decode_test
    local/lmrescore_nbest.sh "${common[@]}" --write-lattices false --scoring none \
      "$interp_weight" "$lang" "$lm_dir" "$data" "$decode" "$exp/nbest_$set"
  done
fi

if [ "$stage" -le 2 ]; then
  # Kaldi's raw acoustic costs need an LM weight near inv_acwt: the tuner searches 0-1000.
  read -r -a tuner_opts <<< "$eval_opts"
  "$rescorer" eval "$lm_dir" --format kaldi --dev "$exp/nbest_dev/merged" --dev-ref "$data_dev/text" \
    --test "$exp/nbest_test/merged" --test-ref "$data_test/text" --out "$exp/eval" "${tuner_opts[@]}"
fi

if [ "$stage" -le 3 ]; then
  local/lmrescore_nbest.sh "${common[@]}" --stage 7 --scoring rescorer --weights "$exp/eval/report.json" \
    "$interp_weight" "$lang" "$lm_dir" "$data_test" "$decode_test" "$exp/nbest_test"
fi
echo "$0: done; see $exp/eval/report.md and $exp/nbest_test/wer"
