"""A local HTTP fake of the Hub's file-serving API for dataset repos: enough for huggingface_hub's
hf_hub_download (HEAD + GET on /datasets/REPO/resolve/REV/PATH) and list_repo_files
(GET /api/datasets/REPO/tree/REV) to run for real. `files[repo][path] = bytes`."""

from __future__ import annotations

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlparse

COMMIT = "1" * 40


class FakeFileHub:
    def __init__(self, files: dict[str, dict[str, bytes]]):
        self.files = files
        self.requests: list[tuple[str, str]] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def _reply(self, code: int, body: bytes, headers: dict[str, str], head: bool = False):
                self.send_response(code)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if not head:
                    self.wfile.write(body)

            def _json(self, code: int, doc, extra: dict[str, str] | None = None, head: bool = False):
                self._reply(code, json.dumps(doc).encode(), {"Content-Type": "application/json", **(extra or {})}, head)

            def _handle(self, head: bool):
                path = unquote(urlparse(self.path).path)
                hub.requests.append(("HEAD" if head else "GET", path))
                parts = path.strip("/").split("/")
                if parts[:2] == ["api", "datasets"] and len(parts) >= 6 and parts[4] == "tree":
                    repo = "/".join(parts[2:4])
                    if repo not in hub.files:
                        return self._json(404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"})
                    tree = [{"type": "file", "path": p, "size": len(b), "oid": hashlib.sha1(b).hexdigest()}
                            for p, b in sorted(hub.files[repo].items())]
                    return self._json(200, tree)
                if parts[:1] == ["datasets"] and len(parts) >= 6 and parts[3] == "resolve":
                    repo, fname = "/".join(parts[1:3]), "/".join(parts[5:])
                    if repo not in hub.files:
                        return self._json(404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"}, head)
                    if fname not in hub.files[repo]:
                        return self._json(404, {"error": "Entry not found"}, {"X-Error-Code": "EntryNotFound"}, head)
                    body = hub.files[repo][fname]
                    etag = '"' + hashlib.sha256(body).hexdigest() + '"'
                    return self._reply(200, body, {"ETag": etag, "X-Repo-Commit": COMMIT,
                                                   "Content-Type": "application/octet-stream"}, head)
                return self._json(404, {"error": "not found"}, head=head)

            def do_HEAD(self):  # noqa: N802
                self._handle(True)

            def do_GET(self):  # noqa: N802
                self._handle(False)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "FakeFileHub":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
