#!/usr/bin/env python3
"""TLS benchmark client (BENCHMARKS.md, "TLS"): the same Python ssl client
against any SIP server listening on TLS.

  reuse      C connections (one process each), N REGISTERs on each with a
             window of W outstanding: REGISTER/s with connection reuse.
  handshake  H new connections (full handshakes, no session resumption),
             one OPTIONS each: handshakes/s.

With --pgid, the server's CPU time (utime+stime of every process of that
process group, from /proc) is measured across the run and printed per
REGISTER / per handshake. Talks to 127.0.0.1 only.
"""
import argparse
import multiprocessing
import os
import socket
import ssl
import sys
import time


def group_cpu_seconds(pgid):
    """utime+stime of every process in process group pgid, in seconds."""
    ticks = 0
    hz = os.sysconf("SC_CLK_TCK")
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        # fields after the ")" of the command name: state is field 3
        rest = stat[stat.rindex(")") + 2 :].split()
        if int(rest[2]) != pgid:  # field 5: pgrp
            continue
        ticks += int(rest[11]) + int(rest[12])  # fields 14, 15
    return ticks / hz


def context():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def register(i, n, lport):
    return (
        f"REGISTER sip:127.0.0.1 SIP/2.0\r\n"
        f"Via: SIP/2.0/TLS 127.0.0.1:{lport};branch=z9hG4bK-b{i}-{n}\r\n"
        f"Max-Forwards: 70\r\n"
        f"From: <sip:u{i}@127.0.0.1>;tag=t{i}\r\n"
        f"To: <sip:u{i}@127.0.0.1>\r\n"
        f"Call-ID: bench-{i}@127.0.0.1\r\n"
        f"CSeq: {n + 1} REGISTER\r\n"
        f"Contact: <sip:u{i}@127.0.0.1:{lport};transport=tls>\r\n"
        f"Expires: 3600\r\n"
        f"Content-Length: 0\r\n\r\n"
    ).encode()


def options(i, lport):
    return (
        f"OPTIONS sip:127.0.0.1 SIP/2.0\r\n"
        f"Via: SIP/2.0/TLS 127.0.0.1:{lport};branch=z9hG4bK-h{i}\r\n"
        f"Max-Forwards: 70\r\n"
        f"From: <sip:h@127.0.0.1>;tag=h{i}\r\n"
        f"To: <sip:h@127.0.0.1>\r\n"
        f"Call-ID: hs-{i}@127.0.0.1\r\n"
        f"CSeq: 1 OPTIONS\r\n"
        f"Content-Length: 0\r\n\r\n"
    ).encode()


def reuse_worker(args):
    """One connection, n REGISTERs, window w. Returns (ok, non-200)."""
    i, port, n, w = args
    t = context().wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10))
    lport = t.getsockname()[1]
    sent = got = bad = 0
    buf = b""
    while sent < min(w, n):
        t.sendall(register(i, sent, lport))
        sent += 1
    while got < n:
        d = t.recv(65536)
        if not d:
            raise RuntimeError("connection closed")
        buf += d
        while True:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                break
            head, buf = buf[:end], buf[end + 4 :]
            got += 1
            if not head.startswith(b"SIP/2.0 200"):
                bad += 1
            if sent < n:
                t.sendall(register(i, sent, lport))
                sent += 1
    t.close()
    return got - bad, bad


def handshake_worker(args):
    """h new connections, one OPTIONS each. Returns (ok, failed)."""
    i, port, h = args
    ctx = context()
    ok = failed = 0
    for k in range(h):
        try:
            t = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10))
            t.sendall(options(i * 1000000 + k, t.getsockname()[1]))
            buf = b""
            while b"\r\n\r\n" not in buf:
                d = t.recv(4096)
                if not d:
                    break
                buf += d
            ok += buf.startswith(b"SIP/2.0 200")
            failed += not buf.startswith(b"SIP/2.0 200")
            t.close()
        except OSError:
            failed += 1
    return ok, failed


def main():
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["reuse", "handshake"])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--conns", type=int, default=4)
    p.add_argument("--count", type=int, default=20000, help="per connection (reuse) / total (handshake)")
    p.add_argument("--window", type=int, default=8)
    p.add_argument("--pgid", type=int, default=0)
    a = p.parse_args()
    cpu0 = group_cpu_seconds(a.pgid) if a.pgid else 0.0
    start = time.monotonic()
    with multiprocessing.Pool(a.conns) as pool:
        if a.mode == "reuse":
            jobs = [(i, a.port, a.count, a.window) for i in range(a.conns)]
            res = pool.map(reuse_worker, jobs)
        else:
            per = max(1, a.count // a.conns)
            res = pool.map(handshake_worker, [(i, a.port, per) for i in range(a.conns)])
    secs = time.monotonic() - start
    cpu = (group_cpu_seconds(a.pgid) - cpu0) if a.pgid else 0.0
    ok = sum(r[0] for r in res)
    bad = sum(r[1] for r in res)
    unit = "REGISTER" if a.mode == "reuse" else "handshake"
    line = f"{a.mode}: {ok} {unit}s ok, {bad} failed, {secs:.2f} s, {ok / secs:.0f}/s"
    if a.pgid and ok:
        line += f", server cpu {cpu:.2f} s = {cpu / ok * 1e6:.0f} us per {unit}"
    print(line, flush=True)
    return 0 if bad == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
