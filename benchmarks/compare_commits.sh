#!/usr/bin/env bash
# Training throughput of two commits, back to back on this machine: each commit's own
# benchmarks/throughput.py (default: --configs s4) run against that commit's own grokjax.
#
#   bash benchmarks/compare_commits.sh                      # 25e871e (before the engine refactor) vs HEAD
#   bash benchmarks/compare_commits.sh OLD NEW [ARGS...]    # ARGS replace the default benchmark arguments
#   bash benchmarks/compare_commits.sh 25e871e .             # '.': this checkout as it is, uncommitted edits too
#
# Each commit is checked out as a temporary detached `git worktree` under /tmp, and its benchmark runs with
# PYTHONPATH=<worktree>, so that the worktree's grokjax is imported rather than the installed (editable) one;
# the script checks this before each run. Both outputs are printed, then the worktrees are removed.
# No persistent compile cache is involved: both benchmarks time a real compile.
set -euo pipefail

old=${1:-25e871e}
new=${2:-HEAD}
shift $(( $# < 2 ? $# : 2 ))
args=("$@")
[ ${#args[@]} -gt 0 ] || args=(--configs s4)

repo=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)
tmp=$(mktemp -d /tmp/grokjax-compare.XXXXXX)
trees=()

cleanup() {
    for wt in "${trees[@]}"; do
        git -C "$repo" worktree remove --force "$wt" 2>/dev/null || true
    done
    git -C "$repo" worktree prune
    rm -rf "$tmp"
}
trap cleanup EXIT

run_commit() {
    local commit=$1 sha wt found
    if [ "$commit" = . ]; then
        wt=$repo
        sha=$(git -C "$repo" rev-parse HEAD)
    else
        sha=$(git -C "$repo" rev-parse --verify "$commit^{commit}")
        wt="$tmp/${sha:0:12}"
        git -C "$repo" worktree add --detach --quiet "$wt" "$sha"
        trees+=("$wt")
    fi
    # the worktree's package, not the installed one (an editable install's finder comes after PYTHONPATH)
    found=$(cd "$wt" && PYTHONPATH="$wt" python -c "import grokjax, os; print(os.path.realpath(grokjax.__file__))")
    if [ "$found" != "$(realpath "$wt")/grokjax/__init__.py" ]; then
        echo "error: at $commit, python imports grokjax from $found, not from the worktree $wt" >&2
        exit 1
    fi
    local note=""
    [ "$commit" != . ] || note=", with the working tree as it is"
    echo "=== $commit ($(git -C "$repo" log -1 --format='%h %s' "$sha" | cut -c1-100))$note"
    echo "=== grokjax from $found"
    echo "=== python benchmarks/throughput.py ${args[*]}"
    (cd "$wt" && PYTHONPATH="$wt" python benchmarks/throughput.py "${args[@]}")
    echo
}

run_commit "$old"
run_commit "$new"
