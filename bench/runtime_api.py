#!/usr/bin/env python3
"""A minimal Lambda Runtime API, to measure a function binary as Lambda runs it.

Starts the binary with AWS_LAMBDA_RUNTIME_API pointing here, hands it the given
events one after another, and prints one JSON line of figures:

  ready_ms        process start -> its first GET /runtime/invocation/next
                  (init done: configuration read, SDK clients built)
  first_ms        latency of the first invocation (event handed out -> response)
  warm_p50_ms     median latency of the other invocations
  peak_rss_kib    the process's peak resident set (VmHWM) after the last invocation
  invocations, errors

Usage: runtime_api.py --binary PATH --events FILE [--events FILE ...] [--repeat N]
The environment of this script is passed to the function.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Runtime:
    def __init__(self, events):
        self.events = list(events)
        self.lock = threading.Condition()
        self.ready_at = None
        self.handed = {}
        self.latencies = []
        self.errors = []
        self.responses = []
        self.done = threading.Event()


def handler_for(rt: Runtime):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            if not self.path.endswith("/runtime/invocation/next"):
                self.send_error(404)
                return
            now = time.perf_counter()
            with rt.lock:
                if rt.ready_at is None:
                    rt.ready_at = now
                if not rt.events:
                    rt.done.set()
                    # Lambda would freeze the process here; keep it waiting.
                    rt.lock.wait(timeout=60)
                    self.send_error(503)
                    return
                event = rt.events.pop(0)
                request_id = str(uuid.uuid4())
                rt.handed[request_id] = time.perf_counter()
            body = event.encode()
            self.send_response(200)
            self.send_header("Lambda-Runtime-Aws-Request-Id", request_id)
            deadline = int(time.time() * 1000) + 60_000
            self.send_header("Lambda-Runtime-Deadline-Ms", str(deadline))
            self.send_header(
                "Lambda-Runtime-Invoked-Function-Arn",
                "arn:aws:lambda:us-east-1:123456789012:function:bench",
            )
            self.send_header("Lambda-Runtime-Trace-Id", "Root=1-00000000-000000000000000000000000")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self):
            length = int(self.headers.get("Content-Length") or 0)
            payload = self.rfile.read(length)
            parts = self.path.split("/")
            now = time.perf_counter()
            if "/runtime/invocation/" in self.path and parts[-1] in ("response", "error"):
                request_id = parts[-2]
                with rt.lock:
                    started = rt.handed.pop(request_id, None)
                    if started is not None:
                        rt.latencies.append((now - started) * 1000)
                    if parts[-1] == "error":
                        rt.errors.append(payload.decode(errors="replace")[:300])
                    else:
                        rt.responses.append(payload.decode(errors="replace")[:300])
            elif self.path.endswith("/runtime/init/error"):
                rt.errors.append("init: " + payload.decode(errors="replace")[:300])
                rt.done.set()
            self.send_response(202)
            self.send_header("Content-Length", "0")
            self.end_headers()

    return Handler


def peak_rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except FileNotFoundError:
        return None
    return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", required=True)
    ap.add_argument("--events", action="append", required=True)
    ap.add_argument("--repeat", type=int, default=1, help="hand the events this many times")
    ap.add_argument("--label", default="")
    args = ap.parse_args()

    events = [open(p).read() for p in args.events] * args.repeat
    rt = Runtime(events)
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler_for(rt))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    env = dict(os.environ)
    env["AWS_LAMBDA_RUNTIME_API"] = f"127.0.0.1:{server.server_address[1]}"
    env.setdefault("AWS_LAMBDA_FUNCTION_NAME", "bench")
    env.setdefault("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
    env.setdefault("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
    env.setdefault("RUST_LOG", "warn")

    started = time.perf_counter()
    proc = subprocess.Popen([args.binary], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    finished = rt.done.wait(timeout=600)
    rss = peak_rss_kib(proc.pid)
    proc.kill()
    _, stderr = proc.communicate()
    server.shutdown()
    if not finished or rt.ready_at is None:
        sys.exit(f"the function did not finish: {stderr.decode(errors='replace')[-2000:]}")
    warm = rt.latencies[1:]
    print(json.dumps({
        "label": args.label,
        "ready_ms": round((rt.ready_at - started) * 1000, 2),
        "first_ms": round(rt.latencies[0], 2) if rt.latencies else None,
        "warm_p50_ms": round(statistics.median(warm), 2) if warm else None,
        "peak_rss_kib": rss,
        "invocations": len(rt.latencies),
        "errors": len(rt.errors),
        "first_error": rt.errors[0] if rt.errors else None,
        "last_response": rt.responses[-1] if rt.responses else None,
    }))


if __name__ == "__main__":
    main()
