# shellcheck shell=bash
# Kaldi's environment for these recipes, sourced by every script (run them from this directory).
# Set KALDI_ROOT to your Kaldi checkout before sourcing, or edit the default below.
export KALDI_ROOT=${KALDI_ROOT:-/opt/kaldi}

if [ -d "$KALDI_ROOT/egs/wsj/s5" ]; then
  # utils/ and steps/ are links into Kaldi's wsj recipe, as in every egs directory; never copies.
  for d in utils steps; do
    [ -e "$d" ] || ln -s "$KALDI_ROOT/egs/wsj/s5/$d" "$d"
  done
  if [ -f "$KALDI_ROOT/tools/config/common_path.sh" ]; then
    # shellcheck source=/dev/null  # Kaldi's, not in this repository
    . "$KALDI_ROOT/tools/config/common_path.sh"
  fi
  export PATH=$PWD/utils:$KALDI_ROOT/tools/openfst/bin:$PATH
fi
# Without Kaldi, the steps that need its binaries stop with a message naming them; the steps
# after them (our LM's costs, the combination, scoring through the rescorer) still run.
export LC_ALL=C
