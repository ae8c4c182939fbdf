"""Refuse oversized uploads from their Content-Length, before any byte of the body is read."""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Receive, Scope, Send

from service.errors import LengthRequired, ServiceError, TooLarge

# Multipart framing around the file: boundaries, part headers, a long file name.
MULTIPART_OVERHEAD = 64 * 1024


class UploadSizeLimit:
    def __init__(self, app: ASGIApp, *, max_bytes: int, path_suffix: str = "/submissions") -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.path_suffix = path_suffix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"].endswith(self.path_suffix):
            error = self._check(dict(scope["headers"]).get(b"content-length"))
            if error is not None:
                await _send_error(send, error)
                return
        await self.app(scope, receive, send)

    def _check(self, content_length: bytes | None) -> ServiceError | None:
        if content_length is None:
            return LengthRequired(
                "Send a Content-Length header with the upload.", "上传请求需要带 Content-Length 头。"
            )
        try:
            length = int(content_length)
        except ValueError:
            return LengthRequired("Invalid Content-Length header.", "Content-Length 头无效。")
        if length > self.max_bytes + MULTIPART_OVERHEAD:
            limit_mb = f"{self.max_bytes / 1024 / 1024:g}"
            return TooLarge(
                f"The upload is larger than the {limit_mb} MB limit. Leave datasets, checkpoints you do not need "
                "and virtual environments out of the zip, then upload it again.",
                f"上传的文件超过 {limit_mb} MB 的上限。请去掉数据集、不需要的检查点和虚拟环境后重新打包上传。",
            )
        return None


async def _send_error(send: Send, error: ServiceError) -> None:
    body = json.dumps(error.body(), ensure_ascii=False).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    # The client is still sending its body; tell it we will not read it.
    headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": error.status_code, "headers": headers})
    await send({"type": "http.response.body", "body": body})
