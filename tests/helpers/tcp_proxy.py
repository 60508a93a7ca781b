#!/usr/bin/env python3
"""tcp_proxy.py -- the TCP proxy of the remote tests (stdlib only).

  tcp_proxy.py --target PORT [--cut-after BYTES [--reset] [--hold FIFO]]
  tcp_proxy.py --connect [--auth USER:PASS] [--cut-after BYTES ...]

Listens on 127.0.0.1 (a free port), prints "READY <port>" on stdout once
it accepts connections (the tests read it from a FIFO: no sleeps), and
logs one line per event on stderr.  Each connection is forwarded to
127.0.0.1:PORT (--target), or, with --connect, it is an HTTP proxy that
only tunnels: it reads a request, logs "METHOD target auth=ok|none|bad",
answers 405 to anything but CONNECT, 407 unless USER:PASS came as Basic
Proxy-Authorization (--auth), and otherwise connects to the target and
answers 200.

--cut-after BYTES breaks the first connection that carries more than BYTES
towards the server, once per proxy: it logs "cut after N bytes" and drops
the data that crossed the limit.  By default both sides get a FIN
(shutdown); --reset makes it a RST, what a broken network gives.  With
--hold FIFO it first logs "holding after N bytes" and waits until a line
can be read from FIFO: the test acts (kills the server, sends a signal)
while the client waits on the network.

Used through start_tcp_proxy in remote-functions.sh.
"""
import argparse
import base64
import socket
import struct
import sys
import threading


def log(msg):
    print(msg, file=sys.stderr, flush=True)


class Cutter:
    """Decides and performs the one cut of --cut-after."""

    def __init__(self, limit, reset, hold):
        self.limit, self.reset, self.hold = limit, reset, hold
        self.lock = threading.Lock()
        self.done = False

    def claim(self, n):
        """True for the first connection whose upload passed the limit."""
        if self.limit is None or n <= self.limit:
            return False
        with self.lock:
            first, self.done = not self.done, True
        return first

    def cut(self, a, b, n):
        if self.hold:
            log("holding after %d bytes" % n)
            with open(self.hold) as f:
                f.readline()
        log("cut after %d bytes" % n)
        if not self.reset:
            shut(a, b)          # FIN both ways: the peers see an orderly end
            return
        for s in (a, b):
            # RST, not FIN: a broken connection.  SHUT_RD wakes the other
            # pump's recv without a FIN, so that close() really releases
            # the socket (and resets).
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                         struct.pack("ii", 1, 0))
            s.shutdown(socket.SHUT_RD)
            s.close()


def shut(*socks):
    for s in socks:
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def pump(src, dst, cutter):
    """Copy src to dst until either side ends; cutter is None for the
    direction towards the client (only uploads are counted)."""
    n = 0
    try:
        while True:
            d = src.recv(65536)
            if not d:
                break
            n += len(d)
            if cutter and cutter.claim(n):
                cutter.cut(src, dst, n)
                return
            dst.sendall(d)
    except OSError:
        pass
    # One side ended: end both (no half-closed tunnels), which also wakes
    # the other direction's pump.
    shut(src, dst)


def connect_request(c, need):
    """Read an HTTP proxy request from c byte by byte (nothing after the
    head is consumed: it belongs to the tunnel) and answer refusals.
    Returns (host, port) to tunnel to, or None."""
    head = b""
    while b"\r\n\r\n" not in head:
        d = c.recv(1)
        if not d:
            return None
        head += d
    lines = head.decode().split("\r\n")
    method, target, _ = lines[0].split(" ")
    auth = "none"
    for l in lines[1:]:
        if l.lower().startswith("proxy-authorization: basic "):
            got = base64.b64decode(l.split(" ", 2)[2]).decode()
            auth = "ok" if got == need else "bad"
    log("%s %s auth=%s" % (method, target, auth))
    if method != "CONNECT":
        c.sendall(b"HTTP/1.1 405 Method Not Allowed\r\n"
                  b"Content-Length: 0\r\n\r\n")
        return None
    if need and auth != "ok":
        c.sendall(b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                  b"Proxy-Authenticate: Basic realm=\"t\"\r\n"
                  b"Content-Length: 0\r\n\r\n")
        return None
    host, port = target.rsplit(":", 1)
    return host.strip("[]"), int(port)


def serve(c, opt, cutter):
    try:
        if opt.connect:
            dest = connect_request(c, opt.auth)
            if dest is None:
                c.close()
                return
        else:
            dest = ("127.0.0.1", opt.target)
        s = socket.create_connection(dest)
    except (OSError, ValueError) as e:
        log("no connection: %s" % e)
        c.close()
        return
    if opt.connect:
        c.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
    threading.Thread(target=pump, args=(s, c, None), daemon=True).start()
    pump(c, s, cutter)


def main():
    p = argparse.ArgumentParser(description="TCP proxy for the tests")
    p.add_argument("--target", type=int, metavar="PORT",
                   help="forward to 127.0.0.1:PORT")
    p.add_argument("--connect", action="store_true",
                   help="be an HTTP CONNECT proxy instead")
    p.add_argument("--auth", default="", metavar="USER:PASS",
                   help="with --connect: require Basic authorization")
    p.add_argument("--cut-after", type=int, metavar="BYTES",
                   help="break the first connection whose upload passes BYTES")
    p.add_argument("--reset", action="store_true",
                   help="break it with a RST instead of a FIN")
    p.add_argument("--hold", metavar="FIFO",
                   help="before breaking it, wait for a line from FIFO")
    opt = p.parse_args()
    if (opt.target is None) == (not opt.connect):
        p.error("give exactly one of --target and --connect")
    if opt.auth and not opt.connect:
        p.error("--auth needs --connect")
    if (opt.reset or opt.hold) and opt.cut_after is None:
        p.error("--reset and --hold need --cut-after")
    cutter = Cutter(opt.cut_after, opt.reset, opt.hold)
    lst = socket.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen(16)
    print("READY %d" % lst.getsockname()[1], flush=True)
    while True:
        c, _ = lst.accept()
        threading.Thread(target=serve, args=(c, opt, cutter),
                         daemon=True).start()


if __name__ == "__main__":
    main()
