# shellcheck shell=bash
# How jobs run: `$cmd JOB=1:$nj LOG COMMAND` (Kaldi's parallelization wrappers, from utils/).
# On one machine:
export cmd="run.pl"
# On a Grid Engine cluster (set the queue options in conf/queue.conf):
#   export cmd="queue.pl --mem 4G"
# On Slurm (conf/slurm.conf):
#   export cmd="slurm.pl --mem 4G"
