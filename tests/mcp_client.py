"""A real MCP client (the official Python SDK, `pip install mcp`, 2.x) driven by tests/it/mcp_server.rs.

    python3 tests/mcp_client.py session URL TOKEN MODE   -> JSON: protocol, tools, system_info result
    python3 tests/mcp_client.py call URL TOKEN MODE TOOL ARGS_JSON -> JSON: the tool result

Exit code 3 when the `mcp` package cannot be imported (the Rust test then skips with a message);
exit code 4 when the server refused the connection (401, ...), with the reason on stdout.
"""

import asyncio
import json
import sys

try:
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client
    from mcp.shared._httpx_utils import create_mcp_http_client
except ImportError as e:  # pragma: no cover
    print(f"mcp package not importable: {e}")
    sys.exit(3)


def client(url, token, mode):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    transport = streamable_http_client(url, http_client=create_mcp_http_client(headers=headers))
    return Client(transport, mode=mode, raise_exceptions=True, cache=None)


def dump_result(result):
    return {
        "is_error": bool(result.is_error),
        "text": [c.text for c in result.content if getattr(c, "type", "") == "text"],
        "structured": result.structured_content,
    }


async def session(url, token, mode):
    async with client(url, token, mode) as c:
        tools = await c.list_tools()
        info = await c.call_tool("system_info", {"topic": "ram"})
        bad = await c.call_tool("system_info", {"topic": "gpu"})
        return {
            "protocol": c.protocol_version,
            "server": c.server_info.name if c.server_info else None,
            "tools": {t.name: {"schema": t.input_schema, "description": t.description} for t in tools.tools},
            "system_info": dump_result(info),
            "bad_args": dump_result(bad),
        }


async def call(url, token, mode, tool, args):
    async with client(url, token, mode) as c:
        return dump_result(await c.call_tool(tool, args))


def unwrap(exc):
    """The first leaf of an exception group: what actually went wrong."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def main():
    cmd, url, token = sys.argv[1], sys.argv[2], sys.argv[3]
    try:
        if cmd == "session":
            out = asyncio.run(session(url, token, sys.argv[4]))
        elif cmd == "call":
            out = asyncio.run(call(url, token, sys.argv[4], sys.argv[5], json.loads(sys.argv[6])))
        else:
            raise SystemExit(f"unknown command {cmd}")
    except BaseException as e:  # noqa: BLE001 - report any refusal as data for the Rust test
        leaf = unwrap(e)
        if isinstance(leaf, SystemExit):
            raise
        print(json.dumps({"refused": f"{type(leaf).__name__}: {leaf}"}))
        sys.exit(4)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
