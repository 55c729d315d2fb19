"""A local HTTP fake of the Hugging Face Hub, served on 127.0.0.1 in a thread, so huggingface_hub
(and transformers through it) run for real against it. One server, two route sets:

- **Push** (auth required, `Authorization: Bearer <token>`; else 401): whoami (GET /api/whoami-v2:
  the token's user is `hub.user`), create_repo / create_branch /
  create_commit (validate-yaml, preupload, NDJSON commit) and model_info of pushed repos. Every file
  is answered with uploadMode "regular", so contents arrive base64-encoded in the commit body and
  the fake keeps them: `hub.repos[repo_id]["branches"][rev][path] = bytes`.
- **Files** (public, read-only): `datasets[repo][path] = bytes` and `models[repo][path] = bytes`
  (or `models[repo] = {"revisions": {rev: {path: bytes}}, "commits": {rev: sha}}` for several
  revisions, "commits" optional) are served for
  hf_hub_download (HEAD/GET …/resolve/REV/PATH), list_repo_files / list_repo_tree
  (GET /api/{datasets,models}/REPO/tree/REV) and repo_info / model_info
  (GET /api/{datasets,models}/REPO[/revision/REV]), which is what snapshot_download uses.
  A file repo's commit for a revision is its "commits" entry, else a hash of repo, revision and
  content (`hub.commit(kind, repo, rev)` tells it; a 40-hex revision is its own commit).

`hub.requests` records (method, path) of every request except huggingface_hub's best-effort
user-agent registry.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlparse

COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")


def file_commit(repo: str, rev: str, files: dict[str, bytes]) -> str:
    """The default commit of a file repo at `rev`: the revision itself when it is a 40-hex commit,
    else a hash of repo, revision and content (new content, new commit, as on the Hub; the HF cache
    trusts a commit it has seen)."""
    if COMMIT_RE.match(rev):
        return rev
    h = hashlib.sha1(f"{repo}@{rev}".encode())
    for path, body in sorted(files.items()):
        h.update(path.encode() + b"\0" + hashlib.sha256(body).digest())
    return h.hexdigest()


class FakeHub:
    def __init__(self, token: str = "hf_good_token_123", *, datasets: dict[str, dict[str, bytes]] | None = None,
                 models: dict[str, dict] | None = None, user: str = "fake-user"):
        self.token = token
        self.user = user
        self.repos: dict[str, dict] = {}  # pushed repos
        self.datasets = datasets or {}
        self.models = models or {}
        self.requests: list[tuple[str, str]] = []  # (method, path)
        self.auth_headers: list[str] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):  # keep pytest output clean
                pass

            # ---- replies ----------------------------------------------------------------------
            def _reply(self, code: int, body: bytes, headers: dict[str, str], head: bool = False):
                self.send_response(code)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if not head:
                    self.wfile.write(body)

            def _send(self, code: int, doc, headers: dict | None = None, head: bool = False):
                self._reply(code, json.dumps(doc).encode(), {"Content-Type": "application/json", **(headers or {})}, head)

            def _body(self) -> bytes:
                n = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(n) if n else b""

            def _authorised(self) -> bool:
                auth = self.headers.get("Authorization", "")
                hub.auth_headers.append(auth)
                return auth == f"Bearer {hub.token}"

            # ---- file routes (public) -----------------------------------------------------------
            def _files_or_404(self, kind, repo, rev, head):
                """The repo's files at rev; False after answering 404 for an unknown revision."""
                try:
                    return self._files(kind, repo, rev)
                except KeyError:
                    self._not_found("rev", head)
                    return False

            def _files(self, kind: str, repo: str, rev: str) -> dict[str, bytes] | None:
                """Files of a file repo at `rev` (None: unknown repo; raises KeyError: unknown rev)."""
                table = hub.datasets if kind == "datasets" else hub.models
                if repo not in table:
                    return None
                entry = table[repo]
                if "revisions" in entry and isinstance(entry["revisions"], dict):
                    revs = entry["revisions"]
                    for name, files in revs.items():
                        if rev in (name, hub.commit(kind, repo, name)):
                            return files
                    raise KeyError(rev)
                return entry

            def _not_found(self, what: str, head: bool = False):
                code = {"repo": "RepoNotFound", "rev": "RevisionNotFound", "entry": "EntryNotFound"}[what]
                msg = {"repo": "Repository not found", "rev": "Invalid rev id", "entry": "Entry not found"}[what]
                return self._send(404, {"error": msg}, {"X-Error-Code": code}, head)

            def _file_route(self, path: str, head: bool) -> bool:
                """Serve a file-repo route; False when `path` is not one (or the repo is not a file repo)."""
                parts = path.strip("/").split("/")
                # /api/{datasets,models}/ORG/NAME[/revision/REV | /tree/REV[/SUB]]
                if parts[:1] == ["api"] and len(parts) >= 4 and parts[1] in ("datasets", "models"):
                    kind, repo = parts[1], "/".join(parts[2:4])
                    table = hub.datasets if kind == "datasets" else hub.models
                    if repo not in table:
                        if kind == "datasets":  # datasets are never pushed: unknown means not found
                            self._not_found("repo", head)
                            return True
                        return False
                    rest = parts[4:]
                    rev = unquote(rest[1]) if len(rest) >= 2 and rest[0] in ("revision", "tree") else "main"
                    if rest and rest[0] not in ("revision", "tree"):
                        return False
                    files = self._files_or_404(kind, repo, rev, head)
                    if files is False:
                        return True
                    if rest and rest[0] == "tree":
                        sub = "/".join(rest[2:])
                        tree = [{"type": "file", "path": p, "size": len(b), "oid": hashlib.sha1(b).hexdigest()}
                                for p, b in sorted(files.items()) if not sub or p.startswith(sub + "/")]
                        self._send(200, tree, head=head)
                        return True
                    sha = hub.commit(kind, repo, rev)
                    self._send(200, {"id": repo, "modelId": repo, "sha": sha, "private": False,
                                     "siblings": [{"rfilename": p, "size": len(b)} for p, b in sorted(files.items())]},
                               head=head)
                    return True
                # /datasets/ORG/NAME/resolve/REV/PATH and /ORG/NAME/resolve/REV/PATH (models)
                if parts[:1] == ["datasets"] and len(parts) >= 6 and parts[3] == "resolve":
                    kind, repo, rev, fname = "datasets", "/".join(parts[1:3]), parts[4], "/".join(parts[5:])
                elif len(parts) >= 5 and parts[2] == "resolve" and "/".join(parts[:2]) in hub.models:
                    kind, repo, rev, fname = "models", "/".join(parts[:2]), parts[3], "/".join(parts[4:])
                else:
                    return False
                files = self._files_or_404(kind, repo, rev, head)
                if files is False:
                    return True
                if files is None:
                    self._not_found("repo", head)
                    return True
                if fname not in files:
                    self._not_found("entry", head)
                    return True
                body = files[fname]
                etag = '"' + hashlib.sha256(body).hexdigest() + '"'
                self._reply(200, body, {"ETag": etag, "X-Repo-Commit": hub.commit(kind, repo, rev),
                                        "Content-Type": "application/octet-stream"}, head)
                return True

            # ---- verbs --------------------------------------------------------------------------
            def do_HEAD(self):  # noqa: N802
                path = unquote(urlparse(self.path).path)
                hub.requests.append(("HEAD", path))
                if not self._file_route(path, head=True):
                    self._send(404, {"error": "not found"}, head=True)

            def do_GET(self):  # noqa: N802
                path = unquote(urlparse(self.path).path)
                self._body()
                if path == "/api/agent-harnesses":  # huggingface_hub's best-effort user-agent registry
                    return self._send(404, {"error": "not served by the fake"})
                hub.requests.append(("GET", path))
                if self._file_route(path, head=False):
                    return None
                m = re.match(r"^/api/models/([^/]+/[^/]+)(?:/revision/([^/]+))?$", path)
                if not self._authorised():
                    if m and m.group(1) not in hub.repos:  # like the Hub: anonymous + unknown repo
                        return self._send(401, {"error": "Repository Not Found"}, {"X-Error-Code": "RepoNotFound"})
                    return self._send(401, {"error": "Invalid credentials in Authorization header"})
                if path == "/api/whoami-v2":  # the shape of the Hub's answer, trimmed
                    return self._send(200, {"type": "user", "id": "0" * 24, "name": hub.user, "fullname": hub.user,
                                            "orgs": [], "auth": {"type": "access_token",
                                                                 "accessToken": {"displayName": "itictl-test",
                                                                                 "role": "write"}}})
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

    def commit(self, kind: str, repo: str, rev: str) -> str:
        """The commit this fake reports for file repo `repo` ('datasets' or 'models') at `rev`."""
        entry = (self.datasets if kind == "datasets" else self.models).get(repo) or {}
        commits = entry.get("commits") if isinstance(entry.get("commits"), dict) else {}
        if rev in commits:
            return commits[rev]
        if isinstance(entry.get("revisions"), dict):
            return file_commit(repo, rev, entry["revisions"].get(rev, {}))
        return file_commit(repo, rev, entry)

    def __enter__(self) -> "FakeHub":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
