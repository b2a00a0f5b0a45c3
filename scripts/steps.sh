# shellcheck shell=bash
# Shared by ./scripts/test and ./scripts/demo (sourced, not run): numbered, timed steps and
# the one build of the workspace both of them use.
#
# The one build: `cargo test --workspace --no-run` compiles every crate of the workspace once,
# in one feature set (the workspace's, dev-dependencies included), and leaves both the test
# binaries and the `meridian` CLI in the target directory. Running that CLI directly, rather
# than `cargo run -p meridian-cli` (which resolves the CLI's own, different feature set and
# so recompiles crates whose features differ), is what keeps every crate compiled once.

STEPS_STARTED=$SECONDS
STEP_NUMBER=0
STEP_TIMES=()

# step DESCRIPTION COMMAND [ARG...]: prints what it does, runs it, prints how long it took.
step() {
  local description=$1 started=$SECONDS
  shift
  STEP_NUMBER=$((STEP_NUMBER + 1))
  printf '\n==> [%d] %s\n' "$STEP_NUMBER" "$description"
  "$@"
  local took=$((SECONDS - started))
  printf '<== [%d] %s: done in %s\n' "$STEP_NUMBER" "$description" "$(duration "$took")"
  STEP_TIMES+=("$(printf '%8s  [%d] %s' "$(duration "$took")" "$STEP_NUMBER" "$description")")
}

# steps_summary: every step's time, and the total.
steps_summary() {
  printf '\n==> times\n'
  printf '%s\n' "${STEP_TIMES[@]}"
  printf '%8s  total\n' "$(duration $((SECONDS - STEPS_STARTED)))"
}

duration() {
  if [ "$1" -ge 60 ]; then printf '%dm%02ds' $(($1 / 60)) $(($1 % 60)); else printf '%ds' "$1"; fi
}

# The target directory cargo builds into.
target_dir() {
  printf '%s\n' "${CARGO_TARGET_DIR:-target}"
}

# build_workspace: the one debug build (see above). Cargo's own progress shows: a "Compiling"
# line per crate, or a progress bar on a terminal. Nothing to do when nothing changed.
build_workspace() {
  cargo test --workspace --locked --no-run
}

# The CLI binary that build_workspace leaves behind.
meridian_bin() {
  printf '%s/debug/meridian\n' "$(target_dir)"
}
