#!/usr/bin/env bash
# The daily job (docs/operations.md), for cron, systemd or any scheduler:
#
#   mips-loader sync-forms only with MIPS_SYNC_FORMS_SCHEMA: the forms from Athena first
#   dbt source freshness   did today's appointments and forms arrive?
#   dbt build              builds and tests; publishes the marts only if every node passed
#   mips-loader export     delivers the published build if the gate lets it (else records refusals)
#   mips-loader status     --verify: every delivery in S3 and on the server, every year configured
#
#   deploy/run-daily.sh            every step, then one summary line
#   deploy/run-daily.sh STEP       one step only (sync-forms, freshness, build, export, status),
#                                  exiting with its code: what an Airflow task runs
#
# Every step runs even when one before it failed: a failed build must not stop `export`,
# whose publish gate refuses by itself and records the refusal for `status` to report, and
# `status` runs last whatever happened. The exit code says how the day went: 0 when every step
# exited 0, otherwise the highest step exit code (1 something failed or needs attention, 2 a
# usage or configuration error, 126/127 a step could not run, 128+N a signal). Alert on it.
#
# Settings come from the environment file $MIPS_ENV_FILE (default /etc/mips-loader/mips.env;
# deploy/mips.env.example lists every variable), sourced with every variable exported.
set -u

readonly STEPS=(sync-forms freshness build export status)
project_default="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
env_file="${MIPS_ENV_FILE:-/etc/mips-loader/mips.env}"
started=$SECONDS
declare -A codes=()
child=""
signal=""

summary() {
    # ONE line, last: which step failed first, every step's exit code, the day's exit code
    local code=0 first="" step parts=()
    for step in "${STEPS[@]}"; do
        [[ -v "codes[$step]" ]] || continue
        parts+=("$step=${codes[$step]}")
        if [[ ${codes[$step]} =~ ^[0-9]+$ ]] && ((codes[$step] != 0)); then
            first="${first:-$step}"
            ((codes[$step] > code)) && code=${codes[$step]}
        fi
    done
    local verdict="ok"
    if [[ -n $signal ]]; then
        verdict="INTERRUPTED by SIG$signal"
        code=$((128 + $(kill -l "$signal")))
    elif ((code != 0)); then
        verdict="FAILED at $first"
    fi
    echo "mips-daily: $verdict; ${parts[*]:-no step ran}; $((SECONDS - started))s; exit $code"
    exit "$code"
}

fail_setup() {
    echo "mips-daily: FAILED at setup: $1; exit 2"
    exit 2
}

forward() {
    # a scheduler's stop (SIGTERM, or Ctrl-C / hang-up by hand): the running step gets a
    # SIGTERM, which mips-loader handles like Ctrl-C (the run is recorded as interrupted);
    # no later step starts. Background children ignore SIGINT, so TERM is what is forwarded.
    signal="$1"
    [[ -n $child ]] && kill -TERM "$child" 2>/dev/null
}
trap 'forward TERM' TERM
trap 'forward INT' INT
trap 'forward HUP' HUP

if (($# > 1)) || { (($# == 1)) && [[ " ${STEPS[*]} " != *" $1 "* ]]; }; then
    echo "usage: $0 [STEP]; STEP is one of: ${STEPS[*]}" >&2
    exit 2
fi

[[ $env_file == */* ]] || env_file="./$env_file" # `.` would look a bare name up in PATH
[[ -r $env_file ]] || fail_setup "cannot read the environment file $env_file (MIPS_ENV_FILE)"
set -a
# shellcheck disable=SC1090  # the path is the operator's
. "$env_file" || fail_setup "the environment file $env_file did not load"
set +a

project="${MIPS_PROJECT_DIR:-$project_default}"
bin="${MIPS_BIN_DIR:-$project/.venv/bin}"
target="${MIPS_TARGET:-postgres}"
dbt_vars="${MIPS_DBT_VARS:-}"
forms_schema="${MIPS_SYNC_FORMS_SCHEMA:-}"
for program in dbt mips-loader; do
    [[ -x $bin/$program ]] || fail_setup "$bin/$program is not executable (MIPS_BIN_DIR)"
done
cd "$project" || fail_setup "cannot enter the project directory $project (MIPS_PROJECT_DIR)"

vars=()
[[ -n $dbt_vars ]] && vars=(--vars "$dbt_vars")

set_command() {
    # the step's command line, in `command`; false for an unknown step
    case "$1" in
    freshness) command=(dbt source freshness --target "$target" "${vars[@]}") ;;
    sync-forms) command=(mips-loader sync-forms --target "$target" --forms-schema "$forms_schema") ;;
    build) command=(dbt build --target "$target" --selector daily "${vars[@]}") ;;
    export) command=(mips-loader export --target "$target") ;;
    status) command=(mips-loader status --target "$target" --verify) ;;
    *) return 1 ;;
    esac
}

run_step() {
    local step="$1" command=() code
    if [[ -n $signal ]]; then
        codes[$step]="not-run"
        return
    fi
    if [[ $step == sync-forms && -z $forms_schema ]]; then
        echo "mips-daily: sync-forms: skipped (MIPS_SYNC_FORMS_SCHEMA is not set)"
        return
    fi
    set_command "$step"
    echo "mips-daily: $step: ${command[*]}"
    "$bin/${command[0]}" "${command[@]:1}" --project-dir "$project" </dev/null &
    child=$!
    wait "$child"
    code=$?
    # a trapped signal ends `wait` early: wait again for the step's own exit
    while kill -0 "$child" 2>/dev/null; do
        wait "$child"
        code=$?
    done
    child=""
    codes[$step]=$code
}

if (($# > 0)); then
    run_step "$1"
    exit "${codes[$1]:-0}"
fi

for step in "${STEPS[@]}"; do
    run_step "$step"
done
summary
