"""moto's server with DynamoDB's atomicity.

DynamoDB applies each request to an item atomically: of two conditional writes
racing on one item, one wins. moto's server handles requests on threads and its
DynamoDB backend has no lock, so both can win (seen here: 1 round in 200 of 16
racing conditional updates let two through). The processor's guarantees (one
reply per event, one send per notification token) rest on that atomicity, so
the tests serialise DynamoDB requests here; every other service (SQS long
polls, S3) stays concurrent.

    python scripts/moto_server.py <host> <port>
"""

import os
import signal
import sys
import threading

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import run_simple


def main() -> None:
    host, port = sys.argv[1], int(sys.argv[2])
    os.environ.setdefault("MOTO_PORT", str(port))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    app = DomainDispatcherApplication(create_backend_app)
    dynamodb = threading.Lock()

    def serve(environ, start_response):
        if environ.get("HTTP_X_AMZ_TARGET", "").startswith("DynamoDB_"):
            with dynamodb:
                # The whole response is produced under the lock.
                return list(app(environ, start_response))
        return app(environ, start_response)

    run_simple(host, port, serve, threaded=True, request_handler=MotoRequestHandler)


if __name__ == "__main__":
    main()
