"""A TCP proxy on 127.0.0.1 that puts network faults in front of a real server.

The remote talks to the proxy as if it were the S3 server; the proxy
forwards every byte to the real server (SeaweedFS) and back, and can

* ``rate``: limit the client-to-server direction to this many bytes per
  second (an upload slow enough to be interrupted half way);
* ``cut_after``: close a connection once this many bytes of one response
  went back to the client (a download that breaks in the middle of a
  body), for ``cuts`` responses that get that far, after the first
  ``cut_skip`` of them;
* ``flip_at``: flip the byte at this offset of the server-to-client stream
  of the next ``flips`` connections that get that far (corrupt data);

and counts the connections it accepted (``connections``) and the request
lines it saw (``requests``, e.g. ``"GET /bucket/key"`` with ``Range``).
Stopped with ``stop()``; every socket it opened is closed.
"""

import re
import socket
import threading
import time

STATUS = re.compile(rb"HTTP/1\.[01] \d{3} ")
REQUEST = re.compile(rb"(GET|PUT|POST|HEAD|DELETE) (/[^ \r\n]*) HTTP/1\.[01]\r\n")
RANGE = re.compile(rb"\r\n[Rr]ange: *bytes=([0-9-]+)")


class FaultProxy:
    def __init__(self, upstream_host, upstream_port):
        self.upstream = (upstream_host, upstream_port)
        self.rate = None
        self.cut_after = None
        self.cuts = 0
        self.cut_skip = 0
        self.reached = 0
        self.flip_at = None
        self.flips = 0
        self.connections = 0
        self.requests = []
        self.lock = threading.Lock()
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self.url = "http://127.0.0.1:{}".format(self.port)
        self.sockets = set()
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self.stopped.set()
        try:
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes accept()
        except OSError:
            pass
        self.listener.close()
        with self.lock:
            sockets = list(self.sockets)
        for sock in sockets:
            try:
                sock.close()
            except OSError:
                pass
        self.thread.join(timeout=10)

    def _accept(self):
        while not self.stopped.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.upstream, timeout=30)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.connections += 1
                self.sockets.update((client, server))
            pair = _Pair(self, client, server)
            threading.Thread(target=pair.upstream_loop, daemon=True).start()
            threading.Thread(target=pair.downstream_loop, daemon=True).start()

    def open_connections(self):
        with self.lock:
            return len(self.sockets) // 2

    def take(self, name):
        """Use up one of ``cuts``/``flips``; True if one was left."""
        with self.lock:
            left = getattr(self, name)
            if left > 0:
                setattr(self, name, left - 1)
                return True
            return False


class _Pair:
    def __init__(self, proxy, client, server):
        self.proxy = proxy
        self.client = client
        self.server = server
        self.tail = b""

    def close(self):
        for sock in (self.client, self.server):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                sock.close()
            except OSError:
                pass
        with self.proxy.lock:
            self.proxy.sockets.discard(self.client)
            self.proxy.sockets.discard(self.server)

    def upstream_loop(self):
        sent = 0
        started = time.monotonic()
        try:
            while True:
                data = self.client.recv(65536)
                if not data:
                    break
                self._note_requests(data)
                rate = self.proxy.rate
                if rate:
                    # bounded: one sleep per 64 KiB received
                    due = started + (sent + len(data)) / rate
                    delay = due - time.monotonic()
                    if delay > 0:
                        time.sleep(min(delay, 5.0))
                self.server.sendall(data)
                sent += len(data)
        except OSError:
            pass
        self.close()

    def _note_requests(self, data):
        """Record the request lines (and Range headers) in the client's
        stream; a window of the previous data catches split headers."""
        window = self.tail + data
        for match in REQUEST.finditer(window):
            if match.end() <= len(self.tail):
                continue  # seen with the previous chunk
            head = window[match.start():match.start() + 8192].split(b"\r\n\r\n", 1)[0]
            rng = RANGE.search(head)
            with self.proxy.lock:
                self.proxy.requests.append(
                    ("%s %s" % (match.group(1).decode(), match.group(2).decode("latin-1")),
                     rng.group(1).decode() if rng else None))
        self.tail = window[-8192:]

    def downstream_loop(self):
        seen = 0  # bytes of this connection so far
        since = 0  # bytes of the current response so far
        counted = False  # whether it reached cut_after already
        flip = None
        try:
            while True:
                data = self.server.recv(65536)
                if not data:
                    break
                proxy = self.proxy
                end = seen + len(data)
                if (flip is None and proxy.flip_at is not None and end > proxy.flip_at
                        and proxy.take("flips")):
                    flip = proxy.flip_at
                    i = flip - seen
                    if i >= 0:
                        data = data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1:]
                starts = [m.start() for m in STATUS.finditer(data)]
                base, before = (starts[-1], 0) if starts else (0, since)
                if starts:
                    counted = False
                since = before + len(data) - base
                if proxy.cut_after is not None and since >= proxy.cut_after and not counted:
                    counted = True
                    with proxy.lock:
                        proxy.reached += 1
                        skip = proxy.reached <= proxy.cut_skip
                    if not skip and proxy.take("cuts"):
                        self.client.sendall(data[:base + proxy.cut_after - before])
                        break
                self.client.sendall(data)
                seen = end
        except OSError:
            pass
        self.close()
