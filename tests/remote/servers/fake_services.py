"""One loopback HTTP server implementing the documented parts of three APIs.

* Zenodo (InvenioRDM legacy JSON): ``GET /api/records/{id}`` (a concept id
  answers 301 to its latest version, like zenodo.org),
  ``/api/records/{id}/versions/latest``, file content at
  ``/api/records/{id}/files/{key}/content`` and
  ``/records/{id}/files/{key}?download=1`` (HEAD and ``Range`` supported,
  ``ETag: "md5:..."``).
* DOI handle API: ``GET /api/handles/{doi}`` (``responseCode`` 1 / 100).
* vdi backend: ``GET /views``, ``GET /views/{view}/files``,
  ``GET|HEAD /download/{view}/{file}``.

Fault injection for failure-mode tests (``server.faults``):
``status``: list of (status, headers) popped one per request (e.g. 429 with
Retry-After), ``status_always``: (status, headers) for every request,
``corrupt``: set of file keys whose content is served with flipped bytes,
``truncate``: number of downloads cut off half way, ``cut_at``: a byte
offset at which every download stops (a persistent fault no resume gets
past).
Everything binds to 127.0.0.1 only; stop with ``server.stop()``.
"""

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, quote, unquote, urlsplit


class FakeServices:
    def __init__(self):
        self.records = {}    # id -> {"concept": cid, "files": {key: bytes}, "checksums": {}}
        self.concepts = {}   # concept id -> [version ids], latest last
        self.dois = {}       # doi -> landing URL
        self.views = {}      # vdi view name -> {file name: bytes}
        self.faults = {"status": [], "status_always": None, "corrupt": set(), "truncate": 0,
                       "cut_at": None}
        self.hits = []
        self.lock = threading.Lock()
        handler = type("Handler", (_Handler,), {"services": self})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = "http://127.0.0.1:{}".format(self.port)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=10)

    # -- content set-up ---------------------------------------------------
    def add_record(self, recid, files, concept=None, checksums=None):
        recid = str(recid)
        self.records[recid] = {"concept": str(concept) if concept else None,
                               "files": dict(files), "checksums": dict(checksums or {})}
        if concept:
            self.concepts.setdefault(str(concept), []).append(recid)

    def reset_faults(self):
        self.faults = {"status": [], "status_always": None, "corrupt": set(), "truncate": 0,
                       "cut_at": None}

    def record_json(self, recid):
        rec = self.records[recid]
        files = []
        for key, data in rec["files"].items():
            checksum = rec["checksums"].get(key) or "md5:" + hashlib.md5(data).hexdigest()
            files.append({
                "id": hashlib.sha1(key.encode()).hexdigest(), "key": key, "size": len(data),
                "checksum": checksum,
                "links": {"self": "{}/api/records/{}/files/{}/content".format(
                    self.url, recid, quote(key))}})
        concept = rec["concept"] or recid
        return {"id": int(recid), "recid": recid, "conceptrecid": concept,
                "doi": "10.5281/zenodo.{}".format(recid),
                "conceptdoi": "10.5281/zenodo.{}".format(concept),
                "title": "record {}".format(recid), "metadata": {"version": recid},
                "links": {"self": "{}/api/records/{}".format(self.url, recid)},
                "files": files, "state": "done"}


class _Handler(BaseHTTPRequestHandler):
    services = None
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    # -- helpers ----------------------------------------------------------
    def _send(self, status, body=b"", headers=None, ctype="application/json"):
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _fault(self):
        svc = self.services
        with svc.lock:
            if svc.faults["status"]:
                return svc.faults["status"].pop(0)
            return svc.faults["status_always"]

    def _content(self, data, key):
        svc = self.services
        if key in svc.faults["corrupt"]:
            data = bytes(b ^ 0xFF for b in data[:1]) + data[1:]
        total = len(data)
        start = 0
        status = 200
        headers = {"Accept-Ranges": "bytes", "ETag": '"md5:{}"'.format(hashlib.md5(data).hexdigest())}
        rng = self.headers.get("Range")
        if rng and rng.startswith("bytes="):
            first = rng[len("bytes="):].split("-", 1)[0]
            if first.isdigit():
                start = int(first)
                if start >= total:
                    self._send(416, b"", {"Content-Range": "bytes */{}".format(total)})
                    return
                status = 206
                headers["Content-Range"] = "bytes {}-{}/{}".format(start, total - 1, total)
        body = data[start:]
        keep = None
        with svc.lock:
            if svc.faults["truncate"] and self.command == "GET" and len(body) > 1:
                svc.faults["truncate"] -= 1
                keep = len(body) // 2
            if svc.faults["cut_at"] is not None and self.command == "GET":
                keep = max(0, svc.faults["cut_at"] - start)
        if keep is None:
            self._send(status, body, headers, ctype="application/octet-stream")
            return
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body[:keep])
        self.wfile.flush()
        self.close_connection = True

    # -- dispatch ---------------------------------------------------------
    def do_HEAD(self):
        self.do_GET()

    def do_GET(self):
        svc = self.services
        parts = urlsplit(self.path)
        path = parts.path
        query = parse_qs(parts.query)
        with svc.lock:
            svc.hits.append((self.command, self.path))
        fault = self._fault()
        if fault:
            status, headers = fault
            self._send(status, {"message": "injected"}, headers)
            return
        segs = [unquote(s) for s in path.strip("/").split("/")]
        try:
            if segs[:2] == ["api", "records"]:
                return self._zenodo_api(segs[2:])
            if segs[0] in ("records", "record") and len(segs) >= 4 and segs[2] == "files":
                return self._zenodo_file(segs[1], "/".join(segs[3:]))
            if segs[:2] == ["api", "handles"]:
                return self._handle("/".join(segs[2:]))
            if segs[0] == "views" and len(segs) == 3 and segs[2] == "files":
                return self._vdi_files(segs[1])
            if segs == ["views"]:
                return self._send(200, [{"id": i + 1, "name": n} for i, n in enumerate(svc.views)])
            if segs[0] == "download" and len(segs) == 3:
                return self._vdi_download(segs[1], segs[2])
        except KeyError:
            pass
        self._send(404, {"status": 404, "message": "not found"})
        del query

    def _zenodo_api(self, rest):
        svc = self.services
        recid = rest[0]
        if len(rest) == 1 or rest[1:] == ["versions", "latest"]:
            if recid in svc.concepts:
                latest = svc.concepts[recid][-1]
                if len(rest) == 1:
                    return self._send(301, b"", {"Location": "/api/records/{}".format(latest)})
                recid = latest
            if recid not in svc.records:
                return self._send(404, {"status": 404, "message": "PID does not exist."})
            return self._send(200, svc.record_json(recid))
        if rest[1] == "files" and len(rest) >= 4 and rest[-1] == "content":
            return self._zenodo_file(recid, "/".join(rest[2:-1]))
        return self._send(404, {"status": 404})

    def _zenodo_file(self, recid, key):
        files = self.services.records[recid]["files"]
        if key not in files:
            return self._send(404, {"status": 404, "message": "file not found"})
        return self._content(files[key], key)

    def _handle(self, doi):
        svc = self.services
        if doi not in svc.dois:
            return self._send(404, {"responseCode": 100, "handle": doi})
        return self._send(200, {"responseCode": 1, "handle": doi, "values": [
            {"index": 100, "type": "HS_ADMIN", "data": {"format": "admin", "value": {}}},
            {"index": 1, "type": "URL", "data": {"format": "string", "value": svc.dois[doi]},
             "ttl": 86400, "timestamp": "2024-01-01T00:00:00Z"}]})

    def _vdi_files(self, view):
        svc = self.services
        if view not in svc.views:
            return self._send(404, {"error": "View not found"})
        return self._send(200, {"view_name": view, "files": [
            {"id": i + 1, "filename": name} for i, name in enumerate(svc.views[view])]})

    def _vdi_download(self, view, name):
        svc = self.services
        if view not in svc.views:
            return self._send(404, {"error": "View not found"})
        if name not in svc.views[view]:
            return self._send(404, {"error": "File not found"})
        return self._content(svc.views[view][name], name)
