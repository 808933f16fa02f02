#!/usr/bin/env bash
# flywheel's one setup command, for a fresh Debian machine with Rust, Python 3 and access to the
# package registries (crates.io, PyPI). Safe to run again: it only does what is missing.
#
#   1. a Python virtualenv with chdb-core (the local ClickHouse engine) in $FLYWHEEL_HOME/venv
#   2. a release build of flywheel, installed as ~/.cargo/bin/flywheel
#
# FLYWHEEL_HOME defaults to ~/.local/share/flywheel; CARGO_TARGET_DIR is honoured.
set -euo pipefail
cd "$(dirname "$0")"

FLYWHEEL_HOME=${FLYWHEEL_HOME:-${XDG_DATA_HOME:-$HOME/.local/share}/flywheel}
venv="$FLYWHEEL_HOME/venv"
requirements=schemas/engine/requirements.txt

step() { printf '\n==> %s\n' "$*"; }

step "local ClickHouse engine (chdb-core) in $venv"
if [ -x "$venv/bin/python" ] && "$venv/bin/python" - "$requirements" <<'PY' 2>/dev/null
import sys
from importlib.metadata import version
wanted = [l.split("#")[0].strip() for l in open(sys.argv[1])]
for req in filter(None, wanted):
    name, _, ver = req.partition("==")
    assert version(name) == ver, req
PY
then
  echo "already installed"
else
  mkdir -p "$FLYWHEEL_HOME"
  if ! python3 -m venv "$venv" 2>/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      apt-get install -y -q python3-venv >/dev/null
      python3 -m venv "$venv"
    else
      echo "error: python3 cannot create a virtualenv; install it with: sudo apt-get install python3-venv" >&2
      exit 1
    fi
  fi
  "$venv/bin/pip" install --quiet --disable-pip-version-check --no-deps -r "$requirements"
fi
"$venv/bin/python" -c "import chdb; print('chdb-core', chdb.__version__)"

# The TUI's end-to-end test drives the real binary in tmux.
if ! command -v tmux >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get install -y -q tmux >/dev/null || { apt-get update -q >/dev/null && apt-get install -y -q tmux >/dev/null; }
  else
    echo "warning: tmux is missing (the TUI end-to-end test needs it): sudo apt-get install tmux" >&2
  fi
fi

step "release build"
cargo build --release --locked --bin flywheel
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c "import json,sys; print(json.load(sys.stdin)['target_directory'])")
bin_dir=${CARGO_HOME:-$HOME/.cargo}/bin
mkdir -p "$bin_dir"
install -m 755 "$target_dir/release/flywheel" "$bin_dir/flywheel"
echo "installed $bin_dir/flywheel"
case ":$PATH:" in *":$bin_dir:"*) ;; *) echo "note: add $bin_dir to your PATH" ;; esac

step "done — next: flywheel clickhouse start && flywheel migrate"
