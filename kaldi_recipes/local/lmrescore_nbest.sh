#!/usr/bin/env bash
# N-best rescoring of a Kaldi decode with our self-normalized LSTM LM, the way Kaldi's
# scripts/rnnlm/lmrescore_nbest.sh does it with Kaldi's RNNLM: lattices to N-best, the old LM
# score taken apart from the graph score, our LM's costs (local/compute_sentence_scores.sh,
# one job per lattice archive through $cmd), the interpolation
#   new LM cost = graph cost without LM + w * our LM's cost + (1 - w) * old LM cost
# and back to lattices that Kaldi's scoring reads. With --scoring rescorer the merged lists are
# also scored by `rescorer rescore` with weights from `rescorer eval` (--weights report.json).
set -euo pipefail

# Begin configuration section.
cmd=run.pl
N=30               # N-best size
inv_acwt=10        # acoustic scale 1/inv_acwt for choosing the N-best paths
stage=1
server=            # score through a running rescorer-server (local/compute_sentence_scores.sh --server)
write_lattices=true  # stage 8: rescored lattices in <output-decode-dir>/lat.JOB.gz (needs Kaldi)
scoring=kaldi      # kaldi: local/score.sh on the lattices; rescorer: `rescorer rescore` + `rescorer wer`; none
weights=           # with --scoring rescorer: JSON weights (an eval job's report.json); default: the rescorer's
rescorer=${RESCORER:-rescorer}
# End configuration section.

help_message="Usage: $0 [options] <interp-weight> <old-lang-dir> <lm-dir> <data-dir> <input-decode-dir> <output-decode-dir>
Rescores the N-best lists of <input-decode-dir>'s lattices with the LM artifact <lm-dir>.
<interp-weight> is our LM's share against the old LM (Kaldi's rnn-weight).
Options:
  --cmd <run.pl|queue.pl|slurm.pl ...>   # how jobs run (default: $cmd); one job per lattice archive
  --N <n>                                # N-best size (default: $N)
  --inv-acwt <x>                         # inverse acoustic scale for the N-best (default: $inv_acwt)
  --stage <n>                            # start at stage n (default: $stage); 5 starts from existing archives
  --server <url>                         # our LM's costs from a running rescorer-server
  --write-lattices <true|false>          # stage 8, rescored lattices (default: $write_lattices)
  --scoring <kaldi|rescorer|none>        # stage 9 (default: $scoring)
  --weights <report.json>                # weights for --scoring rescorer"

echo "$0 $*"
[ -f ./path.sh ] && . ./path.sh
# shellcheck source=local/parse_options.sh
. "$(dirname "$0")/parse_options.sh"  # beside this script, wherever it is called from

if [ $# -ne 6 ]; then
  echo "$help_message" >&2
  exit 1
fi
interp_weight=$1 oldlang=$2 lm_dir=$3 data=$4 indir=$5 dir=$6
adir=$dir/archives
acwt=$(awk -v x="$inv_acwt" 'BEGIN{print 1.0 / x}')

# Fail early: every Kaldi binary a stage to run needs, before any work.
need=()
[ "$stage" -le 4 ] && need+=(lattice-to-nbest lattice-scale lattice-compose lattice-1best nbest-to-linear fstproject)
[ "$stage" -le 5 ] && need+=(int2sym.pl)
[ "$stage" -le 8 ] && [ "$write_lattices" = true ] && need+=(linear-to-nbest nbest-to-lattice)
[ "$scoring" = rescorer ] && need+=("$rescorer")
need+=("${cmd%% *}")
for tool in "${need[@]}"; do
  command -v "$tool" >/dev/null || {
    echo "$0: $tool not found: source Kaldi's path.sh (KALDI_ROOT in ./path.sh), or start at a later --stage" >&2
    exit 1; }
done
[ -f "$lm_dir/config.json" ] || [ -n "$server" ] || { echo "$0: expected $lm_dir/config.json (an LM artifact)" >&2; exit 1; }
case "$scoring" in kaldi|rescorer|none) ;; *) echo "$0: --scoring must be kaldi, rescorer or none" >&2; exit 1 ;; esac

mkdir -p "$dir/log"
if [ "$stage" -le 1 ]; then
  [ -f "$indir/num_jobs" ] || { echo "$0: expected $indir/num_jobs (a Kaldi decode directory)" >&2; exit 1; }
  cp "$indir/num_jobs" "$dir/num_jobs"
fi
[ -f "$dir/num_jobs" ] || { echo "$0: expected $dir/num_jobs (written at stage 1)" >&2; exit 1; }
nj=$(cat "$dir/num_jobs")

if [ "$stage" -le 1 ]; then
  echo "$0: lattices to ${N}-best lists"
  $cmd "JOB=1:$nj" "$dir/log/lat2nbest.JOB.log" \
    lattice-to-nbest --acoustic-scale="$acwt" --n="$N" "ark:gunzip -c $indir/lat.JOB.gz|" \
    "ark:|gzip -c >$dir/nbest1.JOB.gz"
fi

if [ "$stage" -le 2 ]; then
  echo "$0: taking the old LM's scores out of the graph scores"
  oldlm=$oldlang/G.fst
  [ -f "$oldlm" ] || { echo "$0: expected $oldlm (lattices rescored with G.carpa: use Kaldi's own script)" >&2; exit 1; }
  $cmd "JOB=1:$nj" "$dir/log/remove_old.JOB.log" \
    lattice-scale --acoustic-scale=-1 --lm-scale=-1 "ark:gunzip -c $dir/nbest1.JOB.gz|" ark:- \| \
    lattice-compose ark:- "fstproject --project_output=true $oldlm |" ark:- \| \
    lattice-1best ark:- ark:- \| \
    lattice-scale --acoustic-scale=-1 --lm-scale=-1 ark:- "ark:|gzip -c >$dir/nbest2.JOB.gz"
fi

if [ "$stage" -le 3 ]; then
  echo "$0: N-best lists as linear archives"
  $cmd "JOB=1:$nj" "$dir/log/make_new_archives.JOB.log" \
    mkdir -p "$adir.JOB" '&&' \
    nbest-to-linear "ark:gunzip -c $dir/nbest2.JOB.gz|" "ark,t:$adir.JOB/ali" "ark,t:$adir.JOB/words" \
    "ark,t:$adir.JOB/lmwt.nolm" "ark,t:$adir.JOB/acwt"
fi

if [ "$stage" -le 4 ]; then
  echo "$0: the graph scores with the old LM"
  $cmd "JOB=1:$nj" "$dir/log/make_old_archives.JOB.log" \
    nbest-to-linear "ark:gunzip -c $dir/nbest1.JOB.gz|" ark:/dev/null ark:/dev/null \
    "ark,t:$adir.JOB/lmwt.withlm" ark:/dev/null
fi

if [ "$stage" -le 5 ]; then
  echo "$0: words as text; the old LM's own cost (with LM - without)"
  for n in $(seq "$nj"); do
    for f in words lmwt.nolm lmwt.withlm acwt; do
      [ -f "$adir.$n/$f" ] || { echo "$0: expected $adir.$n/$f" >&2; exit 1; }
    done
    int2sym.pl -f 2- "$oldlang/words.txt" < "$adir.$n/words" > "$adir.$n/words_text"
    paste "$adir.$n/lmwt.nolm" "$adir.$n/lmwt.withlm" | awk '{printf "%s %.6f\n", $1, $4 - $2}' > "$adir.$n/lmwt.lmonly"
  done
fi

if [ "$stage" -le 6 ]; then
  echo "$0: our LM's costs, $nj job(s)"
  $cmd "JOB=1:$nj" "$dir/log/nnlm_scores.JOB.log" \
    "$(dirname "$0")/compute_sentence_scores.sh" ${server:+--server "$server"} "$lm_dir" "$adir.JOB/temp" \
    "$adir.JOB/words_text" "$adir.JOB/lmwt.nnlm"
fi

if [ "$stage" -le 7 ]; then
  echo "$0: interpolating: graph + $interp_weight * ours + (1 - $interp_weight) * old LM"
  for n in $(seq "$nj"); do
    paste "$adir.$n/lmwt.nolm" "$adir.$n/lmwt.lmonly" "$adir.$n/lmwt.nnlm" \
      | awk -v w="$interp_weight" '{
          if ($1 != $3 || $1 != $5) { print "key mismatch: " $1 " " $3 " " $5 > "/dev/stderr"; exit 1 }
          printf "%s %.6f\n", $1, $2 + w * $6 + (1 - w) * $4 }' > "$adir.$n/lmwt.interp"
  done
fi

if [ "$stage" -le 8 ] && [ "$write_lattices" = true ]; then
  echo "$0: rescored N-best lists back into lattices"
  $cmd "JOB=1:$nj" "$dir/log/reconstruct_lattice.JOB.log" \
    linear-to-nbest "ark:$adir.JOB/ali" "ark:$adir.JOB/words" "ark:$adir.JOB/lmwt.interp" "ark:$adir.JOB/acwt" ark:- \| \
    nbest-to-lattice ark:- "ark:|gzip -c >$dir/lat.JOB.gz"
fi

if [ "$stage" -le 9 ]; then
  echo "$0: merging the $nj jobs' lists into $dir/merged (the input of rescorer eval)"
  mkdir -p "$dir/merged"
  for f in words_text acwt lmwt.withlm lmwt.nnlm lmwt.interp; do
    for n in $(seq "$nj"); do cat "$adir.$n/$f"; done > "$dir/merged/$f"
  done
  case "$scoring" in
    kaldi)
      [ -x local/score.sh ] || { echo "$0: local/score.sh not found (link your recipe's; or --scoring rescorer)" >&2; exit 1; }
      local/score.sh --cmd "$cmd" "$data" "$oldlang" "$dir" ;;
    rescorer)
      ref_args=()
      [ -f "$data/text" ] && ref_args=(--ref "$data/text")
      "$rescorer" rescore "$lm_dir" "$dir/merged" --format kaldi --nnlm-costs "$dir/merged/lmwt.nnlm" \
        ${weights:+--weights "$weights"} "${ref_args[@]}" --out-text "$dir/text" --out-jsonl "$dir/nbest_rescored.jsonl"
      if [ -f "$data/text" ]; then
        "$rescorer" wer "$data/text" "$dir/text" | tee "$dir/wer"
      fi ;;
    none) ;;
  esac
fi
echo "$0: done: $dir"
