"""A local HTTP fake of the Hugging Face Hub API, enough for huggingface_hub 2.4's
create_repo / create_branch / create_commit (validate-yaml, preupload, commit) to run for real.

Every file is answered with uploadMode "regular", so contents arrive base64-encoded in the commit's
NDJSON body and the fake keeps them: `hub.repos[repo_id]["branches"][rev][path] = bytes`.
Requests without `Authorization: Bearer <token>` for the accepted token get 401.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlparse


class FakeHub:
    def __init__(self, token: str = "hf_good_token_123"):
        self.token = token
        self.repos: dict[str, dict] = {}
        self.requests: list[tuple[str, str]] = []  # (method, path)
        self.auth_headers: list[str] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):  # keep pytest output clean
                pass

            def _send(self, code: int, doc: dict, headers: dict | None = None):
                body = json.dumps(doc).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

            def _body(self) -> bytes:
                n = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(n) if n else b""

            def _authorised(self) -> bool:
                auth = self.headers.get("Authorization", "")
                hub.auth_headers.append(auth)
                return auth == f"Bearer {hub.token}"

            def do_GET(self):  # noqa: N802
                path = urlparse(self.path).path
                self._body()
                if path == "/api/agent-harnesses":  # huggingface_hub's best-effort user-agent registry
                    return self._send(404, {"error": "not served by the fake"})
                hub.requests.append(("GET", path))
                if not self._authorised():
                    return self._send(401, {"error": "Invalid credentials in Authorization header"})
                m = re.match(r"^/api/models/([^/]+/[^/]+)(?:/revision/([^/]+))?$", path)
                if m and m.group(1) in hub.repos:
                    return self._send(200, {"id": m.group(1), "sha": "0" * 40, "siblings": []})
                return self._send(404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"})

            def do_POST(self):  # noqa: N802
                path = urlparse(self.path).path
                hub.requests.append(("POST", path))
                body = self._body()
                if not self._authorised():
                    return self._send(401, {"error": "Invalid credentials in Authorization header"})
                if path == "/api/repos/create":
                    doc = json.loads(body)
                    repo_id = f"{doc['organization']}/{doc['name']}"
                    if repo_id in hub.repos:
                        return self._send(409, {"error": "You already created this model repo",
                                               "url": f"http://{self.headers['Host']}/{repo_id}"})
                    hub.repos[repo_id] = {"private": doc.get("visibility") == "private", "type": doc.get("type"),
                                          "branches": {"main": {}}, "commits": []}
                    return self._send(200, {"url": f"http://{self.headers['Host']}/{repo_id}"})
                if path == "/api/validate-yaml":
                    doc = json.loads(body)
                    content = doc.get("content", "")
                    if not content.startswith("---\n") or "\n---\n" not in content[4:]:
                        return self._send(400, {"errors": [{"message": "no YAML front matter"}]})
                    return self._send(200, {"errors": [], "warnings": []})
                m = re.match(r"^/api/models/([^/]+/[^/]+)/(preupload|commit|branch)/(.+)$", path)
                if not m or m.group(1) not in hub.repos:
                    return self._send(404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"})
                repo_id, op, rev = m.group(1), m.group(2), unquote(m.group(3))
                repo = hub.repos[repo_id]
                if op == "branch":
                    repo["branches"].setdefault(rev, dict(repo["branches"]["main"]))
                    return self._send(200, {})
                if rev not in repo["branches"]:
                    return self._send(404, {"error": f"Invalid rev id: {rev}"}, {"X-Error-Code": "RevisionNotFound"})
                if op == "preupload":
                    files = json.loads(body)["files"]
                    return self._send(200, {"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False,
                                                       "oid": None} for f in files]})
                # commit: NDJSON, a header line then one line per file
                lines = [json.loads(x) for x in body.decode().splitlines() if x.strip()]
                header, files = lines[0], lines[1:]
                tree = repo["branches"][rev]
                for item in files:
                    if item["key"] != "file" or item["value"].get("encoding") != "base64":
                        return self._send(400, {"error": f"fake hub only takes regular files, got {item['key']}"})
                    tree[item["value"]["path"]] = base64.b64decode(item["value"]["content"])
                oid = hashlib.sha1(body).hexdigest()
                repo["commits"].append({"rev": rev, "summary": header["value"]["summary"], "oid": oid,
                                        "paths": [i["value"]["path"] for i in files]})
                return self._send(200, {"commitUrl": f"http://{self.headers['Host']}/{repo_id}/commit/{oid}",
                                        "commitOid": oid, "success": True})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "FakeHub":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
