#!/usr/bin/env bash
# Lattice rescoring of a Kaldi decode with our LSTM LM artifact, with the arguments and options
# of Kaldi's scripts/rnnlm/lmrescore_pruned.sh: one job per lattice archive through $cmd, each
# `rescorer lattice rescore` (lattices expanded by word history, histories merged on their last
# max-ngram-order - 1 words), writing <output-decode-dir>/lat.JOB.gz, which Kaldi's scoring
# scripts (local/score.sh, lattice-best-path, MBR) read. The graph cost of every arc becomes
#   (1 - weight) * graph cost + weight * our LM's cost
# (the interpolation of Kaldi's steps/pytorchnn lattice rescoring; the first-pass LM is not
# subtracted as lmrescore_pruned.sh does, since its score is not kept apart in the lattice).
set -euo pipefail

# Begin configuration section.
cmd=run.pl
weight=0.5            # our LM's share of the graph cost
max_ngram_order=4     # histories merged on their last N-1 words; 0: exact (no merging)
acwt=0.1              # acoustic scale, for the cheapest path into a merged history
beam=6                # histories at a lattice state kept within this cost of the cheapest (inf: all)
skip_words='!SIL'     # comma-separated words not scored (silence, noise)
max_arcs=2000000      # refuse a lattice whose expansion passes this many arcs
skip_scoring=false    # true: no local/score.sh at the end (it needs Kaldi)
rescorer=${RESCORER:-rescorer}
# End configuration section.

help_message="Usage: $0 [options] <old-lang-dir> <lm-dir> <data-dir> <input-decode-dir> <output-decode-dir>
Rescores the lattices of <input-decode-dir> (lat.*.gz) with the LM artifact <lm-dir>.
Options:
  --cmd <run.pl|queue.pl|slurm.pl ...>   # how jobs run (default: $cmd); one job per lattice archive
  --weight <w>                           # our LM's share of the graph cost (default: $weight)
  --max-ngram-order <n>                  # history merged on the last n-1 words; 0 exact (default: $max_ngram_order)
  --acwt <a>                             # acoustic scale (default: $acwt)
  --beam <b>                             # history pruning beam (default: $beam, Kaldi's compose beam)
  --skip-words <w1,w2>                   # words not scored (default: $skip_words)
  --max-arcs <m>                         # bound on an expanded lattice (default: $max_arcs)
  --skip-scoring <true|false>            # no local/score.sh at the end (default: $skip_scoring)"

echo "$0 $*"
[ -f ./path.sh ] && . ./path.sh
# shellcheck source=local/parse_options.sh
. "$(dirname "$0")/parse_options.sh"  # beside this script, wherever it is called from

if [ $# -ne 5 ]; then
  echo "$help_message" >&2
  exit 1
fi
oldlang=$1 lm_dir=$2 data=$3 indir=$4 dir=$5

need=("$rescorer" "${cmd%% *}")
for tool in "${need[@]}"; do
  command -v "$tool" >/dev/null || { echo "$0: $tool not found (source ./path.sh, or pass --rescorer)" >&2; exit 1; }
done
for f in "$oldlang/words.txt" "$lm_dir/config.json" "$indir/num_jobs"; do
  [ -f "$f" ] || { echo "$0: expected $f" >&2; exit 1; }
done
nj=$(cat "$indir/num_jobs")
for ((n = 1; n <= nj; n++)); do
  [ -f "$indir/lat.$n.gz" ] || { echo "$0: expected $indir/lat.$n.gz ($nj jobs in $indir/num_jobs)" >&2; exit 1; }
done
mkdir -p "$dir/log"
cp "$indir/num_jobs" "$dir/num_jobs"

$cmd JOB=1:"$nj" "$dir/log/rescorelm.JOB.log" \
  "$rescorer" lattice rescore "$lm_dir" "$indir/lat.JOB.gz" "$dir/lat.JOB.gz" --symbols "$oldlang/words.txt" \
    --weight "$weight" --ngram-order "$max_ngram_order" --acoustic-scale "$acwt" --skip-words "$skip_words" \
    --beam "$beam" --max-arcs "$max_arcs" \
  || { echo "$0: rescoring failed; see $dir/log/rescorelm.*.log" >&2; exit 1; }

if [ "$skip_scoring" != true ]; then
  [ -x local/score.sh ] || { echo "$0: local/score.sh not found (pass --skip-scoring true)" >&2; exit 1; }
  local/score.sh --cmd "$cmd" "$data" "$oldlang" "$dir"
fi
echo "$0: rescored lattices in $dir/lat.*.gz"
