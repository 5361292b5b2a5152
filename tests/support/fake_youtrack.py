"""A loopback YouTrack: ``GET /api/issues`` with ``query`` (``project: {X} #Unresolved`` and
``Field: Value`` terms), ``fields``, ``$top`` and ``$skip``, bearer-token auth, answering as
YouTrack's REST API does (only ``id`` and ``$type`` when no ``fields`` are asked for)."""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


def issue(key: str, summary: str, *, priority: str = "Normal", minutes: int | None = 60,
          depends_on: tuple[str, ...] = (), resolved: bool = False) -> dict[str, Any]:
    fields: list[dict[str, Any]] = [
        {"$type": "SingleEnumIssueCustomField", "name": "Priority",
         "value": {"$type": "EnumBundleElement", "name": priority}}]
    if minutes is not None:
        fields.append({"$type": "PeriodIssueCustomField", "name": "Estimation",
                       "value": {"$type": "PeriodValue", "minutes": minutes,
                                 "presentation": f"{minutes}m"}})
    links = [{"$type": "IssueLink", "direction": "OUTWARD",
              "linkType": {"$type": "IssueLinkType", "name": "Depend",
                           "sourceToTarget": "depends on", "targetToSource": "is required for"},
              "issues": [{"$type": "Issue", "idReadable": d, "resolved": None}
                         for d in depends_on]}] if depends_on else []
    return {"$type": "Issue", "id": f"2-{key.split('-')[-1]}", "idReadable": key,
            "summary": summary, "resolved": 1700000000000 if resolved else None,
            "customFields": fields, "links": links}


class FakeYouTrack:
    def __init__(self, issues: list[dict[str, Any]], token: str = "perm:secret") -> None:
        self.issues, self.token = issues, token
        self.requests: list[dict[str, list[str]]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                status, body = fake.handle(self.path, self.headers.get("Authorization", ""))
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def handle(self, raw: str, auth: str) -> tuple[int, Any]:
        parts = urlsplit(raw)
        if parts.path != "/api/issues":
            return 404, {"error": "Not Found"}
        if auth != f"Bearer {self.token}":
            return 401, {"error": "Unauthorized",
                         "error_description": "You are not logged in."}
        q = parse_qs(parts.query)
        self.requests.append(q)
        search = q.get("query", [""])[0]
        m = re.match(r"project: \{([^}]*)\}", search)
        found = self.issues
        if m:
            found = [i for i in found if i["idReadable"].startswith(m.group(1) + "-")]
            if not any(i["idReadable"].startswith(m.group(1) + "-") for i in self.issues):
                return 400, {"error": "invalid_query",
                             "error_description": f"Unknown project: {m.group(1)}"}
        if "#Unresolved" in search:
            found = [i for i in found if not i["resolved"]]
        for name, value in re.findall(r"(\w+): (\w+)", search[m.end():] if m else search):
            found = [i for i in found if any(
                f["name"] == name and (f["value"] or {}).get("name") == value
                for f in i["customFields"])]
        skip, top = int(q.get("$skip", ["0"])[0]), int(q.get("$top", ["42"])[0])
        page = found[skip:skip + top]
        if "fields" not in q:
            page = [{"$type": "Issue", "id": i["id"]} for i in page]
        return 200, page
