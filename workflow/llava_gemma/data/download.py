"""Fetch raw files: hub files through huggingface_hub, plain URLs with HTTP Range resume.

A file appears at its final path only when complete and verified (size, and sha256 when the
config or the hub gives one): bytes go to ``<path>.part`` and are renamed at the end, so nothing
partial ever looks finished. An interrupted download resumes from the ``.part`` file; a failed
attempt is retried with exponential backoff, and an attempt that made progress resets the count,
so a flaky link that drops every few hundred MB still finishes a 20 GB archive.

URLs can be redirected to a mirror without editing the config: with ``LLAVA_GEMMA_URL_MIRROR`` set
to a base URL, ``scheme://host/path`` is fetched from ``<base>/host/path`` (a site's internal
mirror, or the rehearsal's loopback server). Hub files follow ``HF_ENDPOINT`` the same way.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import re
import shutil
import socket
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from tqdm import tqdm

from llava_gemma.errors import UserError

CHUNK = 1 << 20
URL_MIRROR_ENV = "LLAVA_GEMMA_URL_MIRROR"
# Answers that will not change by retrying: fail at once, naming the URL.
FATAL_STATUS = {400, 401, 403, 404, 405, 410, 451}


class DownloadError(UserError, RuntimeError):
    pass


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def mirrored(url: str) -> str:
    """``url`` as fetched: under ``$LLAVA_GEMMA_URL_MIRROR/<host>/<path>`` when that is set, else unchanged."""
    base = os.environ.get(URL_MIRROR_ENV, "").rstrip("/")
    if not base:
        return url
    parsed = urllib.parse.urlsplit(url)
    return f"{base}/{parsed.netloc}{parsed.path}" + (f"?{parsed.query}" if parsed.query else "")


def download_url(url: str, dest: Path, *, sha256: str | None = None, size: int | None = None, retries: int = 5,
                 timeout: float = 60.0, backoff: float = 2.0, max_backoff: float = 120.0,
                 progress: bool = True) -> Path:
    """Download ``url`` to ``dest`` resuming from ``dest.part``; verified before it is renamed into place.

    ``timeout`` bounds every socket operation, so a server that stalls mid-transfer is retried
    (and resumed) rather than waited on forever. ``retries`` counts consecutive attempts that
    fetched nothing new.
    """
    dest = Path(dest)
    if dest.exists() and _verified(dest, sha256, size):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    url = mirrored(url)
    part = dest.with_name(dest.name + ".part")
    failures = 0
    last: Exception | None = None
    while True:
        before = part.stat().st_size if part.exists() else 0
        try:
            total = _fetch_resuming(url, part, timeout, progress, expected=size)
            break
        except urllib.error.HTTPError as err:
            if err.code in FATAL_STATUS:
                raise DownloadError(f"{url} answered HTTP {err.code}; check the URL in config.yaml downloads."
                                    ) from None
            last = err
        except (urllib.error.URLError, http.client.HTTPException, OSError) as err:  # OSError: timeouts, resets
            last = err
        failures = 0 if (part.exists() and part.stat().st_size > before) else failures + 1
        if failures >= retries:
            raise DownloadError(f"{url} failed {retries} times in a row ({_describe(last)}); "
                                f"rerun to resume from {part}.")
        time.sleep(min(max_backoff, backoff * 2 ** failures))
    got = part.stat().st_size
    expected = size if size is not None else total
    if expected is not None and got != expected:
        part.unlink()
        raise DownloadError(f"{url} gave {got} bytes where {expected} were expected; the partial file was removed, "
                            "rerun to download it again.")
    if sha256 and sha256_of(part) != sha256.lower():
        part.unlink()
        raise DownloadError(f"{url} does not match its sha256 in config.yaml; the partial file was removed, "
                            "rerun to download it again (or correct the sha256).")
    os.replace(part, dest)
    return dest


def _fetch_resuming(url: str, part: Path, timeout: float, progress: bool, expected: int | None) -> int | None:
    """Append the rest of ``url`` to ``part``; returns the full size when the server states it."""
    have = part.stat().st_size if part.exists() else 0
    if expected is not None and have == expected:
        return expected
    if expected is not None and have > expected:  # a stale .part from another file: start over
        part.unlink()
        have = 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as err:
        if err.code == 416 and have:  # the range starts at or past the end: complete, or a stale .part
            total = _total_from_content_range(err.headers.get("Content-Range"))
            if total == have:
                return total
            part.unlink()  # longer than the file: cannot be ours; the next attempt starts over
        raise
    with response:
        resumed = bool(have) and response.status == 206
        if have and not resumed:  # the server ignored Range: start again from byte 0
            have = 0
        total = _total_from_content_range(response.headers.get("Content-Range")) if resumed else None
        if total is None and response.headers.get("Content-Length") is not None:
            total = have + int(response.headers["Content-Length"])
        bar = tqdm(total=total, initial=have, unit="B", unit_scale=True, unit_divisor=1024, desc=part.name[:-5],
                   disable=not progress, mininterval=1 if sys.stderr.isatty() else 30, file=sys.stderr)
        with bar, part.open("ab" if resumed else "wb") as f:
            # read1 returns what has arrived, so bytes received before a stall are kept for the resume.
            while block := response.read1(CHUNK):
                f.write(block)
                bar.update(len(block))
    # http.client raises IncompleteRead for a short body with a Content-Length; this catches the rest.
    if total is not None and part.stat().st_size < total:
        raise ConnectionError(f"connection closed at {part.stat().st_size} of {total} bytes")
    return total


def _total_from_content_range(value: str | None) -> int | None:
    match = re.search(r"/(\d+)\s*$", value or "")
    return int(match.group(1)) if match else None


def _verified(path: Path, sha256: str | None, size: int | None) -> bool:
    if size is not None and path.stat().st_size != size:
        return False
    return not sha256 or sha256_of(path) == sha256.lower()


def _describe(err: Exception | None) -> str:
    if isinstance(err, (socket.timeout, TimeoutError)):
        return "the server stalled past the timeout"
    return f"{type(err).__name__}: {err}" if err else "no error recorded"


@contextlib.contextmanager
def hub_errors(repo: str, what: str):
    """The hub's refusals as one sentence naming the repo and the fix, not a traceback."""
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        HfHubHTTPError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    try:
        yield
    except GatedRepoError:
        raise DownloadError(f"{repo} is gated: accept its licence on the hub and set HF_TOKEN to a token of that "
                            "account.") from None
    except RepositoryNotFoundError:
        raise DownloadError(f"{repo} is not on the hub at {_endpoint()} (or is private): check the id in the config, "
                            "and HF_TOKEN for a private repo.") from None
    except RevisionNotFoundError:
        raise DownloadError(f"{repo} has no such revision; check the revision in the config.") from None
    except EntryNotFoundError:
        raise DownloadError(f"{repo} has no file {what}; check the file name in the config.") from None
    except HfHubHTTPError as err:
        raise DownloadError(f"{repo}: the hub at {_endpoint()} answered an error for {what} ({err}); rerun, or check "
                            "the config.") from None


def _endpoint() -> str:
    from huggingface_hub import constants

    return constants.ENDPOINT


def download_hub_file(repo: str, filename: str, dest: Path, repo_type: str = "dataset", *,
                      revision: str | None = None, sha256: str | None = None) -> Path:
    """A file of a hub repo to ``dest`` (token from HF_TOKEN in the environment, never from config).

    huggingface_hub resumes its own ``.incomplete`` file; the result is checked against the
    sha256 the config gives, else the one the hub publishes for LFS files, before it is renamed.
    """
    from huggingface_hub import HfApi, hf_hub_download

    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = dest.with_name(dest.name + ".hub")  # hub's own resumable download folder, beside dest
    with hub_errors(repo, filename):
        fetched = Path(hf_hub_download(repo_id=repo, filename=filename, repo_type=repo_type, revision=revision,
                                       local_dir=staging))
    if sha256 is None:
        with hub_errors(repo, filename):
            info = HfApi().get_paths_info(repo, [filename], repo_type=repo_type, revision=revision)
        lfs = getattr(info[0], "lfs", None) if info else None
        sha256 = getattr(lfs, "sha256", None)
    if sha256 and sha256_of(fetched) != sha256.lower():
        fetched.unlink()
        raise DownloadError(f"{repo}/{filename} does not match its sha256; the file was removed, "
                            "rerun to fetch it again.")
    os.replace(fetched, dest)
    shutil.rmtree(staging, ignore_errors=True)
    return dest


def download_hub_folder(repo: str, folder: str, dest: Path, repo_type: str = "dataset", *,
                        revision: str | None = None) -> Path:
    """Every file below ``folder`` of a hub repo into ``dest`` (their paths below ``folder`` kept), in one snapshot.

    The files arrive in a staging folder beside ``dest`` (huggingface_hub resumes there and checks each
    file's size) and ``dest`` appears only when all are there.
    """
    from huggingface_hub import snapshot_download

    dest = Path(dest)
    staging = dest.with_name(dest.name + ".hub")
    with hub_errors(repo, f"folder {folder!r}"):
        snapshot_download(repo_id=repo, repo_type=repo_type, revision=revision, local_dir=staging,
                          allow_patterns=[f"{folder.rstrip('/')}/*"])
    fetched = staging / folder
    if not fetched.is_dir() or not any(fetched.iterdir()):
        raise DownloadError(f"{repo} has no files under {folder!r}; check the folder name in the config.")
    shutil.rmtree(dest, ignore_errors=True)
    os.replace(fetched, dest)
    shutil.rmtree(staging, ignore_errors=True)
    return dest


MODEL_FILES = ["*.json", "*.safetensors", "tokenizer.model", "*.txt", "*.jinja"]
BIN_FILES = ["pytorch_model.bin", "pytorch_model-*.bin"]  # fetched only when a repo has no safetensors


def download_model(repo: str, dest: Path, *, revision: str | None = None) -> Path:
    """A hub checkpoint into ``dest``: weights as safetensors, configs, tokenizer, processor.

    A repo that publishes only ``pytorch_model*.bin`` (OpenAI's CLIP) is fetched as such and
    converted once to safetensors on disk (``weights.convert_bin_checkpoint``), so every later
    reader sees safetensors; a repo with both never downloads the ``.bin`` files.
    """
    from huggingface_hub import HfApi, snapshot_download

    from llava_gemma.data.weights import convert_bin_checkpoint

    with hub_errors(repo, "its checkpoint"):
        info = HfApi().model_info(repo, revision=revision or "main")
        files = [s.rfilename for s in info.siblings or []]
        bin_only = not any(f.endswith(".safetensors") for f in files) and any(
            f.startswith("pytorch_model") and f.endswith(".bin") for f in files)
        snapshot_download(repo_id=repo, local_dir=dest, revision=info.sha,
                          allow_patterns=MODEL_FILES + (BIN_FILES if bin_only else []))
    if bin_only:  # also on a rerun that fetched the .bin again
        convert_bin_checkpoint(Path(dest))
    return dest
