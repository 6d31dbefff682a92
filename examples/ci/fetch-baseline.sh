#!/usr/bin/env bash
# The baseline for `scalecheck check --baseline`: the run recorded by the main branch's
# last successful pipeline, kept as an artifact. Prints the run directory on stdout, or
# nothing when there is none (the first run, an expired artifact, no token): the check
# then runs without a baseline. Never fails the job for want of a baseline (exit 0);
# exit 2 only for bad usage.
#
#   fetch-baseline.sh [--to DIR] [--from-dir DIR] [--artifact NAME] [--branch NAME]
#                     [--workflow FILE] [--job NAME]
#
#   --from-dir DIR   an artifact already on disk (actions/download-artifact, a CI cache,
#                    `gh run download`): the run directory is found inside it
#   otherwise, in GitHub Actions: `gh` with GH_TOKEN (or GITHUB_TOKEN) downloads artifact
#                    NAME from the last successful run of --workflow on --branch;
#              in GitLab CI: the jobs/artifacts API with CI_JOB_TOKEN downloads the
#                    artifacts of job --job on --branch.
set -uo pipefail

to="baseline"; from_dir=""; artifact="scalecheck-run"; branch="main"
workflow="scalecheck.yml"; job="${CI_JOB_NAME:-scalecheck}"
while [ $# -gt 0 ]; do
    case "$1" in
        --to) to="$2"; shift 2 ;;
        --from-dir) from_dir="$2"; shift 2 ;;
        --artifact) artifact="$2"; shift 2 ;;
        --branch) branch="$2"; shift 2 ;;
        --workflow) workflow="$2"; shift 2 ;;
        --job) job="$2"; shift 2 ;;
        *) echo "fetch-baseline.sh: unknown option $1" >&2; exit 2 ;;
    esac
done

none() { echo "fetch-baseline.sh: no baseline: $*" >&2; exit 0; }

# The run directory inside a downloaded artifact: the shallowest folder with a run.json
# (and a summary.json or records to analyse).
place() {
    local found
    found=$(find "$1" -maxdepth 3 -name run.json -printf '%d %h\n' 2>/dev/null \
            | sort -n | head -n 1 | cut -d' ' -f2-)
    [ -n "$found" ] || none "no run.json in $1"
    if [ ! -f "$found/summary.json" ] && [ ! -d "$found/requests" ]; then
        none "$found has neither summary.json nor records"
    fi
    rm -rf "$to"
    mkdir -p "$(dirname "$to")"
    cp -rL "$found" "$to" || none "cannot copy $found to $to"
    echo "$to"
    exit 0
}

if [ -n "$from_dir" ]; then
    [ -d "$from_dir" ] || none "$from_dir is not a directory"
    place "$from_dir"
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

if [ -n "${GITHUB_ACTIONS:-}" ]; then
    export GH_TOKEN="${GH_TOKEN:-${GITHUB_TOKEN:-}}"
    [ -n "$GH_TOKEN" ] || none "no GH_TOKEN or GITHUB_TOKEN to read artifacts"
    command -v gh >/dev/null || none "the gh command is not installed"
    id=$(gh run list --workflow "$workflow" --branch "$branch" --status success --limit 1 \
         --json databaseId --jq '.[0].databaseId' 2>/dev/null)
    [ -n "$id" ] || none "no successful run of $workflow on $branch"
    gh run download "$id" --name "$artifact" --dir "$tmp/artifact" >/dev/null 2>&1 \
        || none "run $id has no artifact $artifact (expired?)"
    place "$tmp/artifact"
elif [ -n "${GITLAB_CI:-}" ]; then
    [ -n "${CI_JOB_TOKEN:-}" ] || none "no CI_JOB_TOKEN"
    url="${CI_API_V4_URL}/projects/${CI_PROJECT_ID}/jobs/artifacts/${branch}/download?job=${job}"
    curl --fail --silent --location --header "JOB-TOKEN: ${CI_JOB_TOKEN}" --output \
        "$tmp/artifacts.zip" "$url" || none "no artifacts of job $job on $branch"
    python3 -m zipfile -e "$tmp/artifacts.zip" "$tmp/artifact" \
        || none "the artifacts of job $job do not unzip"
    place "$tmp/artifact"
else
    none "not in GitHub Actions or GitLab CI, and no --from-dir"
fi
