# Options as Kaldi's utils/parse_options.sh reads them, for the recipes' scripts: that script
# when utils/ links to Kaldi, else this minimal equivalent (`--name value` and `--name=value`
# set the shell variable `name`, dashes read as underscores; the variable must exist, so a
# misspelt option is an error; `--help` prints $help_message).
# shellcheck shell=bash
if [ -f utils/parse_options.sh ]; then
  # shellcheck source=/dev/null  # Kaldi's, linked by path.sh
  . utils/parse_options.sh
else
  while [ $# -gt 0 ]; do
    case "$1" in
      --help|-h) echo "${help_message:-}" >&2; exit 0 ;;
      --*=*) name=${1%%=*}; value=${1#*=}; shift ;;
      --*) [ $# -ge 2 ] || { echo "$0: option $1 needs a value" >&2; exit 1; }
           name=$1; value=$2; shift 2 ;;
      *) break ;;
    esac
    name=${name#--}
    name=${name//-/_}
    if ! declare -p "$name" >/dev/null 2>&1; then
      echo "$0: invalid option --${name//_/-}" >&2
      exit 1
    fi
    printf -v "$name" '%s' "$value"
  done
  unset name value
fi
