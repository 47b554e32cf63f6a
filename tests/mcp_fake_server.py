"""An external MCP server for the client-manager tests, written with the official Python SDK
(`pip install mcp`, 2.x: MCPServer, formerly FastMCP).

    python3 tests/mcp_fake_server.py stdio
    python3 tests/mcp_fake_server.py http PORT BEARER   (streamable HTTP at /mcp; 401 without the bearer)

Tools: add (read-only), greeting (reads the env var FAKE_GREETING), nap (sleeps), crash (exits).
"""

import os
import sys
import time

from mcp.server.mcpserver import MCPServer
from mcp.types import ToolAnnotations

server = MCPServer("fake")


@server.tool(annotations=ToolAnnotations(readOnlyHint=True))
def add(a: int, b: int) -> int:
    """Adds two integers."""
    return a + b


@server.tool()
def greeting() -> str:
    """Returns the FAKE_GREETING environment variable (set through the manager's secret env)."""
    return os.environ.get("FAKE_GREETING", "<unset>")


@server.tool()
def nap(seconds: float) -> str:
    """Sleeps (a hung server)."""
    time.sleep(seconds)
    return "rested"


@server.tool()
def crash() -> str:
    """Exits the process at once (a crashing server)."""
    os._exit(1)


def serve_http(port: int, bearer: str) -> None:
    import uvicorn

    app = server.streamable_http_app()

    async def guarded(scope, receive, send):
        if scope["type"] == "http":
            headers = dict(scope.get("headers") or [])
            if headers.get(b"authorization", b"").decode() != f"Bearer {bearer}":
                await send({"type": "http.response.start", "status": 401, "headers": [(b"content-type", b"text/plain")]})
                await send({"type": "http.response.body", "body": b"unauthorized"})
                return
        await app(scope, receive, send)

    uvicorn.run(guarded, host="127.0.0.1", port=port, log_level="warning", lifespan="on")


if __name__ == "__main__":
    if sys.argv[1] == "stdio":
        server.run("stdio")
    else:
        serve_http(int(sys.argv[2]), sys.argv[3])
