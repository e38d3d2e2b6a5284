# Shared by the scripts: installs what they need into folders git ignores, and
# starts the local AWS emulator. Source it; do not run it.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
LOCAL="$ROOT/.local"
mkdir -p "$LOCAL"

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

ensure_rust() {
  command -v cargo >/dev/null 2>&1 ||
    die "cargo not found: install Rust with rustup (https://rustup.rs), then run this again"
  if command -v rustup >/dev/null 2>&1; then
    for component in clippy rustfmt; do
      rustup component list --installed 2>/dev/null | grep -q "^$component" ||
        { say "installing rustup component $component"; rustup component add "$component"; }
    done
  fi
}

ensure_nextest() {
  if ! cargo nextest --version >/dev/null 2>&1; then
    say "installing cargo-nextest (once)"
    cargo install cargo-nextest --locked
  fi
}

# The Python tools pinned in scripts/requirements.txt, in .venv. Reinstalled when
# that file changes.
ensure_venv() {
  command -v python3 >/dev/null 2>&1 || die "python3 not found: install Python 3.9 or later"
  local stamp="$VENV/.requirements.sha256"
  local want
  want="$(sha256sum "$ROOT/scripts/requirements.txt" | cut -d' ' -f1)"
  if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    say "installing the Python tools into .venv (moto, cfn-lint, cargo-lambda, AWS SAM CLI)"
    python3 -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --upgrade pip
    "$VENV/bin/python" -m pip install --quiet -r "$ROOT/scripts/requirements.txt"
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
