#!/usr/bin/env python3
"""Writes the invocation events of scripts/coldstart into a folder:

  webhook-single.json, webhook-batch50.json   API Gateway v2 POSTs carrying the
                                              reference bodies of
                                              functions/webhook/benches/data
  processor-NNN.json                          SQS events of 10 text messages each
                                              (1,000 in all), timestamped now, one
                                              thread per message
Usage: make_events.py OUT_DIR
"""
import json
import pathlib
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
DATA = ROOT / "functions/webhook/benches/data"
PAGE = "100000000000001"


def post(name):
    template = json.loads((ROOT / "events/webhook-post.json").read_text())
    headers = json.loads((DATA / f"{name}.headers.json").read_text())
    template["headers"] = {k: v for k, v in template["headers"].items() if not k.startswith("x-hub-signature")}
    template["headers"].update(headers)
    template["body"] = (DATA / f"{name}.body").read_text()
    return template


def sqs_batch(first, now_ms):
    records = []
    for i in range(first, first + 10):
        psid = str(2000000000000000 + i)
        mid = f"m_bench_{now_ms}_{i}"
        event = {"sender": {"id": psid}, "recipient": {"id": PAGE}, "timestamp": now_ms,
                 "message": {"mid": mid, "text": f"hello {i}"}}
        body = {"type": "event", "page_id": PAGE, "source": "messaging", "key": f"message:{mid}", "event": event}
        records.append({
            "messageId": f"bench-{now_ms}-{i}", "receiptHandle": f"rh-{i}",
            "body": json.dumps(body, separators=(",", ":")),
            "attributes": {"MessageGroupId": f"{PAGE}:{psid}", "MessageDeduplicationId": mid,
                           "ApproximateReceiveCount": "1", "SentTimestamp": str(now_ms)},
            "messageAttributes": {}, "eventSource": "aws:sqs",
            "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:events.fifo", "awsRegion": "us-east-1",
        })
    return {"Records": records}


def main():
    out = pathlib.Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    for name in ("single", "batch50"):
        (out / f"webhook-{name}.json").write_text(json.dumps(post(name)))
    now_ms = int(time.time() * 1000)
    for n in range(105):  # 100 for the 1,000-event run, 5 for cold starts
        (out / f"processor-{n:03}.json").write_text(json.dumps(sqs_batch(n * 10, now_ms)))


if __name__ == "__main__":
    main()
