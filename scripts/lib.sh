# Shared by the scripts: installs what they need into folders git ignores, and
# starts the local AWS emulator. Source it; do not run it.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
LOCAL="$ROOT/.local"
mkdir -p "$LOCAL"

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# Versions of the tools the scripts install, pinned so that a run today and a run
# next year use the same ones. The Rust toolchain itself is pinned in
# rust-toolchain.toml (channel, clippy, rustfmt, the aarch64 target).
NEXTEST_VERSION=0.9.143
CARGO_FUZZ_VERSION=0.13.2
# Where the pinned cargo tools are installed when the machine lacks that version:
# outside the checkout, one folder per version, so that every clone (CI's fresh
# one included) reuses the same build of a tool.
TOOLS="${MESSENGER_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/messenger-backend/tools}"

# The toolchain of rust-toolchain.toml with its components and targets: rustup
# installs whatever of it is missing (`rustup toolchain install` with no name
# reads the file), and nothing when all of it is there.
ensure_rust() {
  command -v cargo >/dev/null 2>&1 ||
    die "cargo not found: install Rust with rustup (https://rustup.rs), then run this again"
  if command -v rustup >/dev/null 2>&1; then
    (cd "$ROOT" && rustup toolchain install >/dev/null 2>&1) ||
      (cd "$ROOT" && rustup toolchain install) ||
      die "could not install the toolchain rust-toolchain.toml names"
  fi
}

# ensure_cargo_tool <crate> <version> <version-command...>: puts the pinned version
# of a cargo subcommand first on PATH, installing it once into $TOOLS if the one on
# the machine is another version (or none).
ensure_cargo_tool() {
  local crate="$1" version="$2"; shift 2
  local root="$TOOLS/$crate-$version"
  if [ -x "$root/bin/$crate" ]; then
    export PATH="$root/bin:$PATH"
  elif ! "$@" 2>/dev/null | grep -qF "$version"; then
    say "installing $crate $version into $root (once)"
    cargo install "$crate" --version "$version" --locked --root "$root" --quiet
    export PATH="$root/bin:$PATH"
  fi
}

ensure_nextest() { ensure_cargo_tool cargo-nextest "$NEXTEST_VERSION" cargo nextest --version; }
ensure_cargo_fuzz() { ensure_cargo_tool cargo-fuzz "$CARGO_FUZZ_VERSION" cargo fuzz --version; }

# The one debug build every script shares: all crates, all targets, the feature set
# of the whole workspace with its tests. A `cargo build -p <one package>` resolves
# features for that package alone and rebuilds the AWS SDK crates with another
# feature set; this command never does, so after scripts/test's first build the
# binaries the real-binary tier, the local stack and the CLI run are already there.
# With MESSENGER_EXPECT_FRESH=1 (scripts/test sets it after its build) a
# dependency compiled here is an error: a script has drifted from the shared build.
build_workspace() {
  if [ "${MESSENGER_EXPECT_FRESH:-0}" = 1 ]; then
    local compiled
    compiled="$(cargo build --workspace --all-targets --locked --message-format=json-render-diagnostics |
      python3 -c '
import json, sys
names = set()
for line in sys.stdin:
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") == "compiler-artifact" and not m.get("fresh", True) and not m["package_id"].startswith("path+"):
        names.add(m["target"]["name"])
print(" ".join(sorted(names)))
')"
    [ -z "$compiled" ] ||
      die "the shared build compiled dependencies again ($compiled): a script built with other features than scripts/test's build"
    say "shared build: fresh, no dependency compiled"
  else
    cargo build --workspace --all-targets --locked --quiet
  fi
}

# The binaries of the shared build.
bin_dir() {
  printf '%s/debug\n' "$(target_dir)"
}

# The Python tools pinned in scripts/requirements.txt, with every package they pull
# in pinned by scripts/constraints.txt (`pip freeze` of a working .venv), in .venv.
# Reinstalled when either file changes.
ensure_venv() {
  command -v python3 >/dev/null 2>&1 || die "python3 not found: install Python 3.9 or later"
  local stamp="$VENV/.requirements.sha256"
  local want
  want="$(cat "$ROOT/scripts/requirements.txt" "$ROOT/scripts/constraints.txt" | sha256sum | cut -d' ' -f1)"
  if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    say "installing the Python tools into .venv (moto, cfn-lint, cargo-lambda, AWS SAM CLI)"
    python3 -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --upgrade pip -c "$ROOT/scripts/constraints.txt"
    "$VENV/bin/python" -m pip install --quiet -r "$ROOT/scripts/requirements.txt" \
      -c "$ROOT/scripts/constraints.txt"
    echo "$want" >"$stamp"
  fi
}

free_port() {
  "$VENV/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Starts moto's server on a free loopback port, waits until it answers, and exports
# the AWS SDK's own variables so every client talks to it and never to AWS.
# Stopped by stop_moto (the callers trap it on EXIT). scripts/moto_server.py is
# moto's own server with DynamoDB requests serialised: moto's DynamoDB lets two
# racing conditional writes on one item both succeed, which DynamoDB never does.
start_moto() {
  local port
  port="$(free_port)"
  say "starting the AWS emulator (moto) on 127.0.0.1:$port"
  "$VENV/bin/python" "$ROOT/scripts/moto_server.py" 127.0.0.1 "$port" >"$LOCAL/moto.log" 2>&1 &
  MOTO_PID=$!
  export AWS_ENDPOINT_URL="http://127.0.0.1:$port"
  export AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
  export AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local
  unset AWS_PROFILE AWS_SESSION_TOKEN AWS_SECURITY_TOKEN
  for _ in $(seq 1 100); do
    if "$VENV/bin/python" -c "import urllib.request,sys; urllib.request.urlopen('$AWS_ENDPOINT_URL/moto-api/', timeout=1)" 2>/dev/null; then
      return 0
    fi
    kill -0 "$MOTO_PID" 2>/dev/null || { cat "$LOCAL/moto.log" >&2; die "moto exited at start"; }
    sleep 0.2
  done
  die "moto did not answer on $AWS_ENDPOINT_URL within 20 s (see .local/moto.log)"
}

stop_moto() {
  if [ -n "${MOTO_PID:-}" ]; then
    kill "$MOTO_PID" 2>/dev/null || true
    wait "$MOTO_PID" 2>/dev/null || true
    MOTO_PID=
  fi
}

# Where cargo puts what it builds.
target_dir() {
  printf '%s\n' "${CARGO_TARGET_DIR:-$ROOT/target}"
}
