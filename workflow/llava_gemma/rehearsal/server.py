"""A loopback Hugging Face Hub and URL mirror: the stdlib HTTP server the rehearsal downloads from.

What it answers is what the unchanged ``huggingface_hub`` (0.36, read from its source) and the
pipeline's own URL downloader ask for; nothing else:

- ``GET /api/{models,datasets}/<owner>/<name>[/revision/<rev>]``: repo info (``id``, ``sha``,
  ``siblings``), as ``repo_info``/``model_info``/``snapshot_download`` read it;
- ``POST /api/<type>s/<owner>/<name>/paths-info/<rev>``: ``get_paths_info`` (size, blob id, and the
  ``lfs`` sha256 the pipeline checks downloads against);
- ``HEAD|GET /[datasets/]<owner>/<name>/resolve/<rev>/<path>``: a small ("git") file answers with
  its bytes, ``ETag`` (git blob sha1) and ``X-Repo-Commit``; an LFS file (weights, archives, images,
  parquet, anything over 10 MB) answers ``302`` to an absolute ``/lfs/<sha256>`` URL with
  ``X-Linked-Etag``/``X-Linked-Size``, as the hub redirects to its CDN (so the client's
  "different host drops the token" and size checks run);
- ``GET|HEAD /lfs/<sha256>`` and ``/urls/<host>/<path>``: bytes with ``Range`` support (206 and
  ``Content-Range``; 416 past the end), which both resumable downloaders use;
- ``POST /judge/v1/chat/completions``: a stand-in MM-Vet judge (OpenAI-compatible, constant score).

Gated repos (``<root>/gated.json``, the Gemma stand-ins, as on the hub) list ``gated: "manual"`` and
answer ``401 GatedRepo`` to any request without an ``Authorization`` header but their info, as the hub
does; ``GET /api/<type>s/<owner>/<name>/auth-check`` answers whether the request carries one. A repo
pinned in the config (``<root>/revisions.json``) answers under that commit id, so a pinned config
rehearses unchanged.

Errors carry ``X-Error-Code`` (``RepoNotFound``, ``RevisionNotFound``, ``EntryNotFound``) as the hub
sends them, so the client raises its own typed errors. Repos live on disk under
``<root>/hub/{model,dataset}/<owner>/<name>/`` and URL files under ``<root>/urls/<host>/<path>``.
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass
from functools import cached_property
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

LFS_SUFFIXES = {".safetensors", ".bin", ".h5", ".msgpack", ".gguf", ".zip", ".parquet", ".model", ".jpg", ".png"}
LFS_MIN_SIZE = 10 << 20  # the hub stores anything larger through LFS
CHUNK = 1 << 20
JUDGE_SCORE = "0.5"
REHEARSAL_TOKEN = "hf_rehearsal_loopback_only"  # any token opens the gated stand-ins; the hub never sees it


@dataclass(frozen=True)
class HubFile:
    path: Path

    @cached_property
    def size(self) -> int:
        return self.path.stat().st_size

    @cached_property
    def sha256(self) -> str:
        return hashlib.sha256(self.path.read_bytes()).hexdigest()

    @cached_property
    def git_sha1(self) -> str:  # what git calls the blob: sha1 of "blob <size>\0" + bytes
        return hashlib.sha1(b"blob %d\0" % self.size + self.path.read_bytes()).hexdigest()

    @property
    def is_lfs(self) -> bool:
        return self.path.suffix.lower() in LFS_SUFFIXES or self.size > LFS_MIN_SIZE


class HubRepo:
    """One repo: its files (read once) and a commit hash derived from their contents."""

    def __init__(self, repo_id: str, kind: str, folder: Path, *, gated: bool = False, pinned: str | None = None):
        self.repo_id, self.kind, self.folder, self.gated = repo_id, kind, folder, gated
        self.files = {p.relative_to(folder).as_posix(): HubFile(p) for p in sorted(folder.rglob("*")) if p.is_file()}
        listing = "\n".join(f"{name} {f.sha256}" for name, f in self.files.items())
        self.sha = pinned or hashlib.sha1(f"{kind}/{repo_id}\n{listing}".encode()).hexdigest()

    def info(self) -> dict:
        return {"_id": self.sha[:24], "id": self.repo_id, "sha": self.sha, "private": False, "disabled": False,
                "gated": "manual" if self.gated else False,
                "lastModified": "2024-01-01T00:00:00.000Z", "tags": [], "downloads": 0, "likes": 0,
                "siblings": [{"rfilename": name} for name in self.files]}

    def path_info(self, name: str) -> dict:
        f = self.files[name]
        entry = {"type": "file", "path": name, "size": f.size, "oid": f.git_sha1}
        if f.is_lfs:
            entry["lfs"] = {"oid": f.sha256, "size": f.size, "pointerSize": 134}
        return entry


class MirrorStore:
    """Everything the server answers from, indexed once at start (the stand-ins do not change while served)."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.repos: dict[tuple[str, str], HubRepo] = {}
        gated = set(_read_json(self.root / "gated.json", []))
        pinned = _read_json(self.root / "revisions.json", {})
        for kind in ("model", "dataset"):
            base = self.root / "hub" / kind
            for folder in sorted(p for p in base.glob("*/*") if p.is_dir()) if base.is_dir() else []:
                repo_id = folder.relative_to(base).as_posix()
                self.repos[kind, repo_id] = HubRepo(repo_id, kind, folder, gated=f"{kind}/{repo_id}" in gated,
                                                    pinned=pinned.get(f"{kind}/{repo_id}"))
        self.blobs = {f.sha256: f for repo in self.repos.values() for f in repo.files.values() if f.is_lfs}


def _read_json(path: Path, default):
    return json.loads(path.read_text()) if path.is_file() else default


class _Handler(BaseHTTPRequestHandler):
    server: MirrorServer
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # quiet: the tests read the request log instead
        self.server.requests.append(f"{self.command} {self.path}")

    # --- routing -------------------------------------------------------------------------------
    def do_HEAD(self):
        self._route(head=True)

    def do_GET(self):
        self._route(head=False)

    def do_POST(self):
        parts = self._parts()
        if parts == ["judge", "v1", "chat", "completions"]:
            # A stand-in of the MM-Vet grader (an OpenAI-compatible endpoint): it proves the request path,
            # not the grading. Every answer gets the score JUDGE_SCORE.
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            return self._json({"object": "chat.completion", "model": "rehearsal-judge",
                               "choices": [{"index": 0, "message": {"role": "assistant", "content": JUDGE_SCORE},
                                            "finish_reason": "stop"}]})
        # /api/<type>s/<owner>/<name>/paths-info/<rev>
        if len(parts) == 6 and parts[0] == "api" and parts[4] == "paths-info":
            repo = self._repo(parts[1][:-1], f"{parts[2]}/{parts[3]}", parts[5])
            if repo is None:
                return
            length = int(self.headers.get("Content-Length") or 0)
            form = parse_qs(self.rfile.read(length).decode())
            return self._json([repo.path_info(p) for p in form.get("paths", []) if p in repo.files])
        self._error(404, "EntryNotFound", "no such route")

    def _parts(self) -> list[str]:
        return [unquote(p) for p in urlparse(self.path).path.split("/") if p]

    def _route(self, head: bool) -> None:
        parts = self._parts()
        if parts[:1] == ["api"] and len(parts) == 5 and parts[4] == "auth-check":
            repo = self._repo(parts[1][:-1], f"{parts[2]}/{parts[3]}", "main", check_token=True)
            return None if repo is None else self._json({"ok": True}, head=head)
        if parts[:1] == ["api"] and len(parts) >= 4 and parts[1] in ("models", "datasets"):
            rev = parts[5] if len(parts) >= 6 and parts[4] == "revision" else "main"
            repo = self._repo(parts[1][:-1], f"{parts[2]}/{parts[3]}", rev, check_token=False)
            return None if repo is None else self._json(repo.info(), head=head)
        if parts[:1] == ["lfs"] and len(parts) == 2 and parts[1] in self.server.store.blobs:
            return self._send_file(self.server.store.blobs[parts[1]].path, head)
        if parts[:1] == ["urls"] and len(parts) >= 3:
            target = (self.server.store.root / "urls").joinpath(*parts[1:])
            if ".." in parts or not target.is_file():
                return self._error(404, "EntryNotFound", "not mirrored")
            return self._send_file(target, head)
        kind = "dataset" if parts[:1] == ["datasets"] else "model"
        rest = parts[1:] if kind == "dataset" else parts
        if len(rest) >= 5 and rest[2] == "resolve":
            return self._resolve(kind, f"{rest[0]}/{rest[1]}", rest[3], "/".join(rest[4:]), head)
        self._error(404, "EntryNotFound", "no such route")

    # --- answers ---------------------------------------------------------------------------------
    def _repo(self, kind: str, repo_id: str, rev: str, check_token: bool = True) -> HubRepo | None:
        repo = self.server.store.repos.get((kind, repo_id))
        if repo is None:
            self._error(404, "RepoNotFound", f"Repository {repo_id} not found")
        elif repo.gated and check_token and not self.headers.get("Authorization"):
            self._error(401, "GatedRepo", f"Access to model {repo_id} is restricted. You must have access to it and "
                                          "be authenticated to access it. Please log in.")
            repo = None
        elif rev not in ("main", repo.sha):
            self._error(404, "RevisionNotFound", f"Invalid rev id: {rev}")
            repo = None
        return repo

    def _resolve(self, kind: str, repo_id: str, rev: str, name: str, head: bool) -> None:
        repo = self._repo(kind, repo_id, rev)
        if repo is None:
            return
        f = repo.files.get(name)
        if f is None:
            return self._error(404, "EntryNotFound", f"{name} does not exist on {rev}", commit=repo.sha)
        if f.is_lfs:
            host = self.headers.get("Host") or self.server.base_url.removeprefix("http://")
            self.send_response(302)
            for key, value in (("Location", f"http://{host}/lfs/{f.sha256}"), ("X-Repo-Commit", repo.sha),
                               ("ETag", f'"{f.git_sha1}"'), ("X-Linked-Etag", f'"{f.sha256}"'),
                               ("X-Linked-Size", str(f.size)), ("Content-Length", "0")):
                self.send_header(key, value)
            self.end_headers()
            return
        self._send_file(f.path, head, extra={"X-Repo-Commit": repo.sha, "ETag": f'"{f.git_sha1}"'})

    def _send_file(self, path: Path, head: bool, extra: dict | None = None) -> None:
        size = path.stat().st_size
        start, end, status = 0, size - 1, 200
        wanted = self.headers.get("Range", "")
        if wanted.startswith("bytes="):
            first, _, last = wanted[6:].partition("-")
            start = int(first or 0)
            end = min(int(last), size - 1) if last else size - 1
            if start >= size:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            status = 206
        self.send_response(status)
        headers = {"Content-Length": str(end - start + 1), "Accept-Ranges": "bytes",
                   "Content-Type": "application/octet-stream", **(extra or {})}
        if status == 206:
            headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        if head:
            return
        with path.open("rb") as f:
            f.seek(start)
            left = end - start + 1
            while left > 0 and (block := f.read(min(CHUNK, left))):
                self.wfile.write(block)
                left -= len(block)

    def _json(self, obj, head: bool = False) -> None:
        body = json.dumps(obj).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _error(self, status: int, code: str, message: str, commit: str | None = None) -> None:
        body = json.dumps({"error": message}).encode()
        self.send_response(status)
        self.send_header("X-Error-Code", code)
        self.send_header("X-Error-Message", message)
        if commit:
            self.send_header("X-Repo-Commit", commit)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


class MirrorServer(ThreadingHTTPServer):
    """``MirrorServer(root).start()`` serves ``root`` on 127.0.0.1 (a free port unless ``port``) in a thread."""

    daemon_threads = True

    def __init__(self, root: Path, port: int = 0):
        self.store = MirrorStore(root)
        self.requests: list[str] = []
        super().__init__(("127.0.0.1", port), _Handler)
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def environment(self) -> dict[str, str]:
        """The settings that point the pipeline here: the hub endpoint and a token (the gated stand-ins), the URL
        mirror and the MM-Vet judge."""
        return {"HF_ENDPOINT": self.base_url, "HF_TOKEN": REHEARSAL_TOKEN,
                "LLAVA_GEMMA_URL_MIRROR": f"{self.base_url}/urls",
                "LLAVA_GEMMA_JUDGE_BASE_URL": f"{self.base_url}/judge/v1"}

    def start(self) -> MirrorServer:
        self._thread = threading.Thread(target=self.serve_forever, name="rehearsal-mirror", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()

