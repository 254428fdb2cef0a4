#!/usr/bin/env bash
# N-best rescoring of a Kaldi decode with a self-normalized LSTM LM (the `rescorer` CLI).
#
#   kaldi_recipes/nbest_rescore/run.sh [--stage N] [--nbest 30] [--acwt 0.1] \
#       [--lm-weight 1.0] [--interp-weight 0.5] [--word-penalty 0.0] LANG_DIR DECODE_DIR LM_DIR OUT_DIR
#
# Stages:
#   0  lattices -> N-best -> linear archives, as steps/rnnlmrescore.sh lays them out
#      (needs Kaldi: lattice-to-nbest, nbest-to-linear; skip with --stage 1 when
#      OUT_DIR/archives already holds words_text, acwt and lmwt.withlm)
#   1  our LM's cost of every hypothesis: `rescorer score` (Kaldi sentence-scoring contract)
#   2  combine and pick the 1-best: `rescorer rescore` -> OUT_DIR/text, OUT_DIR/lm_costs
#   3  WER against DATA text if OUT_DIR/archives/text exists (rescorer's sclite-compatible WER)
set -euo pipefail

stage=0
nbest=30
acwt=0.1          # acoustic scale used to pick the N-best paths
lm_weight=1.0
interp_weight=0.5
word_penalty=0.0
rescorer=${RESCORER:-rescorer}

# Options as Kaldi's utils/parse_options.sh maps them (--lm-weight -> lm_weight). Kaldi's own
# script is used when $KALDI_ROOT provides it; it is never copied here.
if [ -n "${KALDI_ROOT:-}" ] && [ -f "$KALDI_ROOT/egs/wsj/s5/utils/parse_options.sh" ]; then
  . "$KALDI_ROOT/egs/wsj/s5/utils/parse_options.sh"
else
  while [ $# -gt 0 ] && [ "${1#--}" != "$1" ]; do
    name=$(echo "${1#--}" | tr '-' '_')
    if ! declare -p "$name" >/dev/null 2>&1; then echo "$0: unknown option $1" >&2; exit 1; fi
    [ $# -ge 2 ] || { echo "$0: option $1 needs a value" >&2; exit 1; }
    printf -v "$name" '%s' "$2"
    shift 2
  done
fi

if [ $# -ne 4 ]; then
  sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 1
fi
lang=$1 decode=$2 lm_dir=$3 dir=$4
archives=$dir/archives
mkdir -p "$archives"

if [ "$stage" -le 0 ]; then
  for tool in lattice-to-nbest nbest-to-linear; do
    command -v $tool >/dev/null || { echo "$0: $tool not found: source Kaldi's path.sh, or start at --stage 1" >&2; exit 1; }
  done
  lattice-to-nbest --acoustic-scale="$acwt" --n="$nbest" "ark:gunzip -c $decode/lat.*.gz |" ark:- \
    | nbest-to-linear ark:- "ark:/dev/null" "ark,t:$archives/words" "ark,t:$archives/lmwt.withlm" "ark,t:$archives/acwt"
  int2sym=utils/int2sym.pl  # Kaldi's, from the egs directory's utils/ link or from $KALDI_ROOT
  [ -x "$int2sym" ] || int2sym="${KALDI_ROOT:-}/egs/wsj/s5/utils/int2sym.pl"
  [ -x "$int2sym" ] || { echo "$0: utils/int2sym.pl not found: run from a Kaldi egs dir or set KALDI_ROOT" >&2; exit 1; }
  "$int2sym" -f 2- "$lang/words.txt" < "$archives/words" > "$archives/words_text"
fi

if [ "$stage" -le 1 ]; then
  "$rescorer" score "$lm_dir" "$archives/words_text" "$archives/nnlm_cost" --oov-report
fi

if [ "$stage" -le 2 ]; then
  ref_args=()
  [ -f "$archives/text" ] && ref_args=(--ref "$archives/text")
  "$rescorer" rescore "$lm_dir" "$archives" --format kaldi "${ref_args[@]}" \
    --am-weight "$acwt" --lm-weight "$lm_weight" --interp-weight "$interp_weight" --word-penalty "$word_penalty" \
    --out-text "$dir/text" --out-lm-costs "$dir/lm_costs" --out-jsonl "$dir/nbest_rescored.jsonl"
fi

if [ "$stage" -le 3 ] && [ -f "$archives/text" ]; then
  "$rescorer" wer "$archives/text" "$dir/text" | tee "$dir/wer"
fi
echo "$0: done; 1-best in $dir/text"
