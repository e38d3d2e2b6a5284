"""moto's server with DynamoDB's atomicity.

DynamoDB applies each request to an item atomically: of two conditional writes
racing on one item, one wins. moto's server handles requests on threads and its
DynamoDB backend has no lock, so both can win (seen here: 1 round in 200 of 16
racing conditional updates let two through). The processor's guarantees (one
reply per event, one send per notification token) rest on that atomicity, so
the tests serialise DynamoDB requests here; every other service (SQS long
polls, S3) stays concurrent.

moto's SQS also computes every queue attribute, counting the queue's messages
three times, to read one flag (ContentBasedDeduplication) for each message sent
to a FIFO queue: a thousand queued messages made each send cost seconds of the
server's one interpreter, enough to starve the serialised DynamoDB requests past
the SDK's timeout. Sending reads that flag alone here, and receiving reads the
retention period alone (moto counted every message for it, for each message
received).

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


def cheap_fifo_sends() -> None:
    """While a message is validated and added, a queue's attributes are the one
    flag those steps read."""
    from moto.sqs import models

    full = models.Queue.attributes.fget
    sending = threading.local()

    def attributes(queue):
        if getattr(sending, "depth", 0):
            flag = getattr(queue, "content_based_deduplication", False)
            if isinstance(flag, bool):
                flag = str(flag).lower()
            return {"ContentBasedDeduplication": flag}
        return full(queue)

    def while_sending(method):
        def wrapped(*args, **kwargs):
            sending.depth = getattr(sending, "depth", 0) + 1
            try:
                return method(*args, **kwargs)
            finally:
                sending.depth -= 1

        return wrapped

    from moto.core.utils import unix_time

    def retained(backend, queue_name, message):
        period = int(backend.get_queue(queue_name).message_retention_period)
        return period + message.sent_timestamp / 1000 > unix_time()

    models.SQSBackend.is_message_valid_based_on_retention_period = retained
    models.Queue.attributes = property(attributes)
    models.Queue.add_message = while_sending(models.Queue.add_message)
    models.SQSBackend._validate_message = while_sending(models.SQSBackend._validate_message)
    models.SQSBackend.send_message = while_sending(models.SQSBackend.send_message)


def main() -> None:
    host, port = sys.argv[1], int(sys.argv[2])
    os.environ.setdefault("MOTO_PORT", str(port))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    cheap_fifo_sends()
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
