#!/usr/bin/env python3
"""A small Herald integrator, standard library only.

It links a WhatsApp number (a WuzAPI user token; with the simulator any token works), starts a
campaign to the people of a CSV file, and follows Herald's live events (`GET /api/v1/events`,
Server-Sent Events) until the campaign completes, printing its progress.

    python3 examples/integrator/integrator.py --csv examples/integrator/recipients.csv

See README.md next to this file for every option.
"""

import argparse
import csv
import json
import os
import sys
import time
import urllib.error
import urllib.request
import uuid


class HeraldError(Exception):
    """Herald answered with its error envelope, or not at all."""


class Herald:
    """Just enough of Herald's REST API: JSON in, JSON out, the error envelope turned into an exception."""

    def __init__(self, base_url, timeout=30):
        self.api = base_url.rstrip("/") + "/api/v1"
        self.timeout = timeout
        self.headers = {}

    def call(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.api + path, data=data, method=method)
        request.add_header("content-type", "application/json")
        for name, value in self.headers.items():
            request.add_header(name, value)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as answer:
                text = answer.read()
        except urllib.error.HTTPError as e:
            raise HeraldError(f"{method} {path}: {e.code} {describe(e.read())}") from None
        except (urllib.error.URLError, OSError) as e:
            raise HeraldError(f"{method} {path}: Herald does not answer at {self.api} ({e})") from None
        return json.loads(text) if text else None

    def events(self, kinds, read_timeout):
        """Opens the live event stream; yields (kind, data) for every notification."""
        request = urllib.request.Request(f"{self.api}/events?kinds={','.join(kinds)}")
        for name, value in self.headers.items():
            request.add_header(name, value)
        request.add_header("accept", "text/event-stream")
        try:
            stream = urllib.request.urlopen(request, timeout=read_timeout)
        except urllib.error.HTTPError as e:
            raise HeraldError(f"GET /events: {e.code} {describe(e.read())}") from None
        return stream


def describe(body):
    """The message of Herald's error envelope, or the body as it came."""
    try:
        error = json.loads(body)["error"]
        return f"{error['code']}: {error['message']}"
    except (ValueError, KeyError, TypeError):
        return body.decode(errors="replace")[:500]


def sse_notifications(stream):
    """Parses a text/event-stream: yields (event name, JSON data) per event; ignores comments."""
    event, data = None, []
    for raw in stream:
        line = raw.decode().rstrip("\r\n")
        if line == "":
            if data:
                yield event, json.loads("\n".join(data))
            event, data = None, []
        elif line.startswith(":"):
            continue
        elif line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].lstrip())


def recipients_from_csv(path):
    """Every row of the CSV as a recipient: the `phone` column, and all columns as template variables."""
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if not rows or "phone" not in rows[0]:
        raise SystemExit(f"{path}: needs a header row with a `phone` column")
    return [{"phone": row["phone"], "vars": {k: v for k, v in row.items() if k != "phone"}} for row in rows]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base-url", default=os.environ.get("HERALD_URL", "http://127.0.0.1:8080"),
                        help="Herald's base URL (env HERALD_URL; default %(default)s)")
    parser.add_argument("--api-key", default=os.environ.get("HERALD_API_KEY"),
                        help="an API key (env HERALD_API_KEY); without one, a demo account is registered and given a key")
    parser.add_argument("--gateway-token", default=f"integrator-{uuid.uuid4().hex[:12]}",
                        help="the WuzAPI user token of the number to link (default: a new simulator user)")
    parser.add_argument("--csv", required=True, help="recipients: a `phone` column, other columns become template variables")
    parser.add_argument("--body", default="Hi {{ name }}, your code is {{ code }}", help="the template's text")
    parser.add_argument("--paced", action="store_true",
                        help="keep Herald's default pacing (do this for a real number); default: unpaced, for the simulator")
    parser.add_argument("--timeout", type=float, default=120, help="seconds to wait for the campaign to complete")
    args = parser.parse_args()

    herald = Herald(args.base_url)
    recipients = recipients_from_csv(args.csv)

    if args.api_key:
        herald.headers["x-api-key"] = args.api_key
    else:
        email = f"integrator-{uuid.uuid4().hex[:12]}@example.com"
        account = herald.call("POST", "/auth/register", {"email": email, "password": "a long demo password"})
        herald.headers["authorization"] = f"Bearer {account['access_token']}"
        key = herald.call("POST", "/api-keys", {"name": "integrator example"})
        herald.headers = {"x-api-key": key["key"]}
        print(f"registered {email}; API key {key['prefix']}... (shown once: keep it to reuse the account)")

    session_body = {"name": "Integrator number", "gateway_token": args.gateway_token}
    if not args.paced:
        session_body["pacing"] = {"min_interval_ms": 0, "max_interval_ms": 0}
    session = herald.call("POST", "/sessions", session_body)
    print(f"linked session {session['id']} ({session.get('status', '?')})")

    template = herald.call("POST", "/templates", {"name": "Integrator template", "type": "text", "body": args.body})

    # Subscribe before starting the campaign: the stream replays nothing.
    stream = herald.events(["campaign.progress", "campaign.status"], read_timeout=args.timeout)
    campaign = herald.call("POST", "/campaigns", {
        "name": f"From {os.path.basename(args.csv)}",
        "template_id": template["id"],
        "session_id": session["id"],
        "recipients": recipients,
    })
    print(f"campaign {campaign['id']}: {campaign.get('total_recipients', len(recipients))} recipients, {campaign['status']}")

    deadline = time.monotonic() + args.timeout
    # `completed` may come just before or just after the progress with the final counts: stop
    # when both have been seen.
    finished = settled = False
    try:
        for kind, note in sse_notifications(stream):
            data = note.get("data", {})
            if data.get("campaign_id") != campaign["id"]:
                continue
            if kind == "campaign.progress":
                counts = data["counts"]
                shown = ", ".join(f"{k} {v}" for k, v in counts.items() if v)
                print(f"progress: {shown or 'nothing yet'}")
                settled = counts["queued"] == 0 and counts["sending"] == 0 and counts["waiting_quota"] == 0
            elif kind == "campaign.status":
                # the creation is published as `scheduled`, with the campaign's name
                status = "created" if "name" in data else data["status"]
                print(f"status: {status}")
                finished = data["status"] in ("completed", "cancelled")
            if (finished and settled) or time.monotonic() > deadline:
                break
    except (TimeoutError, OSError) as e:
        print(f"the event stream went quiet ({e}); reading the campaign instead", file=sys.stderr)
    finally:
        stream.close()

    # The final counts may come just after `completed`, and a stream that ended early says
    # nothing: the REST API has the truth.
    while True:
        final = herald.call("GET", f"/campaigns/{campaign['id']}")
        if final["status"] in ("completed", "cancelled") or time.monotonic() > deadline:
            break
        time.sleep(1)
    print(f"final: {final['status']}, counts {json.dumps(final['counts'])}")
    if final["status"] != "completed":
        print("the campaign did not complete in time", file=sys.stderr)
        return 1
    return 0

if __name__ == "__main__":
    try:
        sys.exit(main())
    except HeraldError as e:
        print(f"integrator: {e}", file=sys.stderr)
        sys.exit(1)
