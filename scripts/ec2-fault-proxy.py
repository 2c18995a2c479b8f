#!/usr/bin/env python3
"""A stand-in for EC2's misbehaviour, in front of moto's EC2 server, for the faults benchmark
(docs/benchmarks.md, scripts/bench-aws-faults.sh). moto answers every call at once, never
throttles and makes volumes `available` immediately; real EC2 does none of that. This proxy:

  * adds --latency-ms to every call (throttled and lost ones too);
  * throttles --throttle-percent of all calls: HTTP 503 with EC2's XML error
    RequestLimitExceeded, without forwarding (EC2 did nothing);
  * loses --lose-create-percent of the CreateVolume calls it forwards: moto makes the volume,
    then the proxy drops the connection without answering;
  * keeps each new volume `creating` for --creating-seconds after moto made it: in CreateVolume
    and DescribeVolumes answers, the volume's own <status>available</status> becomes
    <status>creating</status> while it is younger than that.

The draws come from one seeded generator, in order of arrival. GET /_proxy/stats answers what
it did, as JSON: calls, throttles and losses by action, answers rewritten, and the wall-clock
time (seconds since the epoch) at which moto made each volume; --log FILE appends one line per
call (time, action, fate). Standard library only.

Usage: ec2-fault-proxy.py --upstream http://127.0.0.1:PORT [--port 0] [--port-file FILE] ...
"""

import argparse
import http.client
import http.server
import json
import os
import random
import re
import socket
import sys
import threading
import time
import urllib.parse

# The volume's own status: the first <status> after its <volumeId>, before any nested item
# (attachmentSet and tagSet items carry statuses of their own).
VOLUME_STATUS = re.compile(
    rb"(<volumeId>(vol-[0-9a-zA-Z]+)</volumeId>(?:(?!<volumeId>|<item>|<attachmentSet>).)*?<status>)"
    rb"available(</status>)",
    re.S,
)
NEW_VOLUME = re.compile(rb"<volumeId>(vol-[0-9a-zA-Z]+)</volumeId>")
HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade"}

THROTTLE_BODY = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n'
    b"<Response><Errors><Error><Code>RequestLimitExceeded</Code>"
    b"<Message>Request limit exceeded.</Message></Error></Errors>"
    b"<RequestID>fault-proxy-throttle</RequestID></Response>"
)


class State:
    def __init__(self, args):
        self.args = args
        self.lock = threading.Lock()
        self.rng = random.Random(args.seed)
        self.calls = {}
        self.throttled = {}
        self.lost = {}
        self.rewritten = 0
        # volume id -> (monotonic, wall-clock) time moto answered its CreateVolume
        self.created = {}
        self.log = open(args.log, "a") if args.log else None

    def bump(self, table, action):
        table[action] = table.get(action, 0) + 1

    def draw(self, action):
        """Counts the call and decides its fate: 'throttle', 'lose' or None."""
        with self.lock:
            self.bump(self.calls, action)
            fate = None
            if self.rng.random() * 100 < self.args.throttle_percent:
                self.bump(self.throttled, action)
                fate = "throttle"
            elif action == "CreateVolume" and self.rng.random() * 100 < self.args.lose_create_percent:
                self.bump(self.lost, action)
                fate = "lose"
            if self.log:
                self.log.write(f"{time.time():.6f} {action} {fate or 'forward'}\n")
                self.log.flush()
            return fate

    def note_created(self, body):
        now = (time.monotonic(), time.time())
        with self.lock:
            for m in NEW_VOLUME.finditer(body):
                self.created.setdefault(m.group(1).decode(), now)

    def still_creating(self, body):
        """Rewrites the status of volumes younger than --creating-seconds."""
        now = time.monotonic()
        with self.lock:
            created = dict(self.created)

        def young(m):
            made = created.get(m.group(2).decode())
            if made is not None and now - made[0] < self.args.creating_seconds:
                return m.group(1) + b"creating" + m.group(3)
            return m.group(0)

        out = VOLUME_STATUS.sub(young, body)
        if out != body:
            with self.lock:
                self.rewritten += 1
        return out

    def stats(self):
        with self.lock:
            return {
                "settings": {
                    "latency_ms": self.args.latency_ms,
                    "throttle_percent": self.args.throttle_percent,
                    "lose_create_percent": self.args.lose_create_percent,
                    "creating_seconds": self.args.creating_seconds,
                    "seed": self.args.seed,
                },
                "calls": dict(self.calls),
                "throttled": dict(self.throttled),
                "lost": dict(self.lost),
                "answers_rewritten": self.rewritten,
                "volumes_created_at": {v: t[1] for v, t in self.created.items()},
            }


def action_of(path, body):
    query = urllib.parse.urlsplit(path).query
    for source in (body.decode("utf-8", "replace"), query):
        values = urllib.parse.parse_qs(source).get("Action")
        if values:
            return values[0]
    return ""


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the SDK's pooled connections expect
    state = None  # set by main

    def log_message(self, *args):
        pass

    def answer(self, status, body, content_type="text/xml;charset=UTF-8"):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == "/_proxy/stats":
            self.answer(200, json.dumps(self.state.stats()).encode(), "application/json")
        else:
            self.forward(b"")

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        self.forward(self.rfile.read(length) if length else b"")

    def forward(self, body):
        s = self.state
        action = action_of(self.path, body)
        time.sleep(s.args.latency_ms / 1000.0)
        fate = s.draw(action)
        if fate == "throttle":
            self.answer(503, THROTTLE_BODY)
            return
        up = http.client.HTTPConnection(s.args.upstream_host, s.args.upstream_port, timeout=60)
        try:
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
            up.request(self.command, self.path, body=body, headers=headers)
            r = up.getresponse()
            status, reply = r.status, r.read()
            content_type = r.getheader("Content-Type", "text/xml")
        except OSError as e:
            self.answer(502, f"fault proxy: upstream failed: {e}".encode(), "text/plain")
            return
        finally:
            up.close()
        if action == "CreateVolume" and status == 200:
            s.note_created(reply)
        if fate == "lose":
            # moto made the volume; the caller never hears of it.
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        if action in ("CreateVolume", "DescribeVolumes") and status == 200:
            reply = s.still_creating(reply)
        self.answer(status, reply, content_type)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--upstream", required=True, help="moto's URL, http://HOST:PORT")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0: a free port")
    p.add_argument("--port-file", help="write the port here once listening")
    p.add_argument("--latency-ms", type=float, default=40)
    p.add_argument("--throttle-percent", type=float, default=20)
    p.add_argument("--lose-create-percent", type=float, default=10)
    p.add_argument("--creating-seconds", type=float, default=1.5)
    p.add_argument("--seed", type=int, default=14)
    p.add_argument("--log", help="append one line per call here: wall-clock time, action, fate")
    args = p.parse_args()
    up = urllib.parse.urlsplit(args.upstream)
    args.upstream_host, args.upstream_port = up.hostname, up.port or 80

    Handler.state = State(args)
    server = http.server.ThreadingHTTPServer((args.host, args.port), Handler)
    server.daemon_threads = True
    port = server.server_address[1]
    if args.port_file:
        with open(args.port_file + ".tmp", "w") as f:
            f.write(f"{port}\n")
        # Renamed into place, so a reader never sees a half-written file.
        os.replace(args.port_file + ".tmp", args.port_file)
    print(f"ec2-fault-proxy on http://{args.host}:{port} -> {args.upstream}", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
