#!/usr/bin/env bash
# The main job, end to end on the local Slurm cluster:
#   a small dataset -> slurm-schedule (input + output) -> wait -> slurm-finish
#   -> show the commit and its run record -> slurm-reschedule -> finish again
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
venv=${HPCDATA_VENV:-$here/.venv}
bash "$here/tools/install.sh"
export PATH="$venv/bin:$PATH"
# commits need an identity; use a demo one unless git already has one
git config --global user.name >/dev/null 2>&1 || export GIT_AUTHOR_NAME="hpcdata demo" GIT_COMMITTER_NAME="hpcdata demo"
git config --global user.email >/dev/null 2>&1 || export GIT_AUTHOR_EMAIL="demo@localhost" GIT_COMMITTER_EMAIL="demo@localhost"

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
wait_finished() {   # finish until the job is committed (bounded: 120 s)
    local jid=$1 i
    for i in $(seq 1 240); do
        if datalad -f json slurm-finish "$jid" | grep -q '"commit"'; then
            datalad slurm-finish -l >/dev/null; return 0
        fi
        sleep 0.5
    done
    echo "job $jid did not finish within 120 s" >&2; return 1
}

work=$(mktemp -d /tmp/hpcdata-demo.XXXXXX)
step "create a dataset in $work/demo"
cd "$work"
datalad create -c text2git demo >/dev/null
cd demo
mkdir -p code data
cat > code/count.sh <<'JOB'
#!/bin/sh
#SBATCH --job-name=count-words
#SBATCH --output=logs/count-%j.out
set -e
mkdir -p results
wc -w "$1" > results/wordcount.txt
echo "counted on $(hostname) in job $SLURM_JOB_ID"
JOB
chmod +x code/count.sh
mkdir -p logs
printf 'the quick brown fox\njumps over the lazy dog\n' > data/words.txt
datalad save -m "demo input and job script" >/dev/null

step "datalad slurm-schedule -i data/words.txt -o results sbatch code/count.sh {inputs}"
datalad slurm-schedule -m "count words" -i data/words.txt -o results sbatch code/count.sh '{inputs}'
jid=$(datalad -f json slurm-finish -l | python3 -c 'import json,sys; print(json.loads(sys.stdin.readline())["slurm_job_id"])')

step "datalad slurm-finish --list-open-jobs"
datalad slurm-finish --list-open-jobs

step "wait for job $jid, then datalad slurm-finish"
wait_finished "$jid"
git log -1 --stat

step "datalad slurm-reschedule HEAD"
datalad slurm-reschedule
jid2=$(datalad -f json slurm-finish -l | python3 -c 'import json,sys; print(json.loads(sys.stdin.readline())["slurm_job_id"])')
wait_finished "$jid2"
git log -1 --format=%B | sed -n '1,4p;/chain/,/\]/p'

step "history"
git log --oneline -4
echo
echo "demo dataset left in $work/demo"
