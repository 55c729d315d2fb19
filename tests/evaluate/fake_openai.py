"""A local HTTP fake of the OpenAI endpoints itictl uses (/v1/completions, /v1/files,
/v1/fine_tuning/jobs), served by http.server on 127.0.0.1 in a thread. The real `openai` client
talks to it over HTTP; nothing in the client is mocked."""

from __future__ import annotations

import json
import math
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeOpenAI:
    def __init__(self, key: str = "sk-test-SECRET-1234", yes_prob=None, job_steps: int = 2, fail_job: bool = False):
        self.key = key
        # yes_prob(prompt) -> P(" yes"); default: truthful when the answer contains "no"
        self.yes_prob = yes_prob or (lambda p: 0.9 if " no" in p.lower() else 0.2)
        self.job_steps = job_steps
        self.fail_job = fail_job
        self.requests: list[tuple[str, str, dict | None]] = []
        self.files: dict[str, bytes] = {}
        self.jobs: dict[str, dict] = {}
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *a):
        self._server.shutdown()
        self._server.server_close()

    def _handler(self):
        fake = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def _send(self, code, doc):
                body = json.dumps(doc).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _auth(self) -> bool:
                if self.headers.get("Authorization") != f"Bearer {fake.key}":
                    self._send(401, {"error": {"message": "Incorrect API key provided", "type": "invalid_request_error",
                                               "code": "invalid_api_key"}})
                    return False
                return True

            def do_GET(self):
                fake.requests.append(("GET", self.path, None))
                if not self._auth():
                    return
                m = re.fullmatch(r"/v1/fine_tuning/jobs/([\w-]+)", self.path)
                if m and m.group(1) in fake.jobs:
                    job = fake.jobs[m.group(1)]
                    job["_polls"] += 1
                    if job["_polls"] >= fake.job_steps:
                        if fake.fail_job:
                            job.update(status="failed", error={"message": "bad data", "code": "invalid", "param": None})
                        else:
                            job.update(status="succeeded", fine_tuned_model=f"ft:{job['model']}:org:{job['suffix']}:abc123",
                                       trained_tokens=1234)
                    else:
                        job["status"] = "running"
                    return self._send(200, {k: v for k, v in job.items() if not k.startswith("_")})
                self._send(404, {"error": {"message": "not found", "type": "invalid_request_error"}})

            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(n)
                ctype = self.headers.get("Content-Type", "")
                doc = json.loads(raw) if "json" in ctype else None
                fake.requests.append(("POST", self.path, doc))
                if not self._auth():
                    return
                if self.path == "/v1/completions":
                    prompts = doc["prompt"] if isinstance(doc["prompt"], list) else [doc["prompt"]]
                    choices = []
                    for i, p in enumerate(prompts):
                        py = fake.yes_prob(p)
                        top = {" yes": math.log(py), " no": math.log(max(1e-9, 1 - py))}
                        best = max(top, key=top.get)
                        choices.append({"index": i, "text": best, "finish_reason": "length",
                                        "logprobs": {"tokens": [best], "token_logprobs": [top[best]],
                                                     "top_logprobs": [top], "text_offset": [len(p)]}})
                    return self._send(200, {"id": "cmpl-1", "object": "text_completion", "created": 0,
                                            "model": doc["model"], "choices": choices})
                if self.path == "/v1/files":
                    fid = f"file-{len(fake.files) + 1}"
                    fake.files[fid] = raw
                    return self._send(200, {"id": fid, "object": "file", "bytes": len(raw), "created_at": 0,
                                            "filename": "train.jsonl", "purpose": "fine-tune", "status": "processed"})
                if self.path == "/v1/fine_tuning/jobs":
                    jid = f"ftjob-{len(fake.jobs) + 1}"
                    job = {"id": jid, "object": "fine_tuning.job", "created_at": 0, "model": doc["model"],
                           "training_file": doc["training_file"], "hyperparameters": doc.get("hyperparameters", {}),
                           "status": "validating_files", "fine_tuned_model": None, "organization_id": "org",
                           "result_files": [], "seed": 0, "validation_file": None, "finished_at": None,
                           "error": None, "trained_tokens": None, "suffix": doc.get("suffix"), "_polls": 0}
                    fake.jobs[jid] = job
                    return self._send(200, {k: v for k, v in job.items() if not k.startswith("_")})
                self._send(404, {"error": {"message": "not found", "type": "invalid_request_error"}})

        return H
