"""Repository contents: `GET /repos/{owner}/{repo}/contents/{path}` — a file of the default
branch: `type: file`, `encoding: base64` (wrapped at 60 characters, as GitHub sends it), `sha`
(the git blob sha), `size`; 404 without an ETag when the file does not exist (GitHub sends none
on a 404). A test writes files with `set_file` and removes them with `delete_file`."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

from aiohttp import web

from tests.fakes.github.server import DOCS, RecordedRequest, Server


def blob_sha(data: bytes) -> str:
    """The git blob sha of a file's content, as the contents API reports it."""
    return hashlib.sha1(b"blob %d\x00" % len(data) + data).hexdigest()


class Contents(Server):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.files: dict[tuple[str, str], bytes] = {}  # (repo lower-cased, path) → content

    def _add_routes(self, app: web.Application) -> None:
        super()._add_routes(app)
        app.router.add_get("/repos/{owner}/{repo}/contents/{path:.+}", self._get_contents)

    def set_file(self, repo: str, path: str, content: str | bytes) -> str:
        """Create or replace a file on the default branch; returns its blob sha."""
        data = content.encode() if isinstance(content, str) else content
        self.files[(repo.lower(), path)] = data
        return blob_sha(data)

    def delete_file(self, repo: str, path: str) -> None:
        self.files.pop((repo.lower(), path), None)

    def contents_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if "/contents/" in r.path]

    async def _get_contents(self, request: web.Request) -> web.Response:
        repo = f"{request.match_info['owner']}/{request.match_info['repo']}"
        path = request.match_info["path"]
        data = self.files.get((repo.lower(), path))
        if data is None:
            return self._json(
                {"message": "Not Found", "documentation_url": f"{DOCS}/repos/contents"}, 404
            )
        encoded = base64.b64encode(data).decode()
        wrapped = "\n".join(encoded[i : i + 60] for i in range(0, len(encoded), 60)) + "\n"
        sha = blob_sha(data)
        url = f"{self.url}/repos/{repo}/contents/{path}"
        return self._json(
            {
                "type": "file",
                "encoding": "base64",
                "size": len(data),
                "name": path.rsplit("/", 1)[-1],
                "path": path,
                "content": wrapped,
                "sha": sha,
                "url": f"{url}?ref=main",
                "git_url": f"{self.url}/repos/{repo}/git/blobs/{sha}",
                "html_url": f"https://github.com/{repo}/blob/main/{path}",
                "download_url": f"https://raw.githubusercontent.com/{repo}/main/{path}",
                "_links": {
                    "self": f"{url}?ref=main",
                    "git": f"{self.url}/repos/{repo}/git/blobs/{sha}",
                    "html": f"https://github.com/{repo}/blob/main/{path}",
                },
            }
        )
