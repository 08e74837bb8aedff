"""The web server: answers an upload at once and leaves the transcoding to the
transcoder pool. It never imports the transcoding code; it sends tasks by name.

    TASKFLEET_BROKER_URL=redis://... python -m web.app   # serves on :8000
    curl -X POST 'localhost:8000/upload?video=v1'
"""

from __future__ import annotations

import json
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

from taskfleet import App

app = App()  # no tasks registered here
RENDITIONS = (720, 1080)


def enqueue_upload(video_id: str) -> list[str]:
    """What an upload does: one transcode task per rendition, by name."""
    return [app.send_task("video.transcode", args=[video_id, height], queue="transcode").id
            for height in RENDITIONS]


def welcome(user_id: str) -> str:
    return app.send_task("mail.send_welcome", args=[user_id]).id


class Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        url = urlparse(self.path)
        video = parse_qs(url.query).get("video", [""])[0]
        if url.path != "/upload" or not video:
            self._reply(400, {"error": "POST /upload?video=ID"})
            return
        self._reply(202, {"video": video, "tasks": enqueue_upload(video),
                          "message": "your video will be ready shortly"})

    def do_GET(self) -> None:
        url = urlparse(self.path)
        if url.path.startswith("/tasks/"):
            result = app.AsyncResult(url.path.rsplit("/", 1)[1])
            self._reply(200, {"status": result.status, "result": result.result})
        elif url.path == "/healthz":
            self._reply(200, {"ok": True})
        else:
            self._reply(404, {"error": "not found"})

    def _reply(self, code: int, body: dict[str, object]) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def main() -> None:
    host = os.environ.get("HOST", "0.0.0.0")  # a container's address; 127.0.0.1 locally
    port = int(os.environ.get("PORT", "8000"))
    ThreadingHTTPServer((host, port), Handler).serve_forever()


if __name__ == "__main__":
    main()
