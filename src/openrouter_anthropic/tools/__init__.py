"""Tools the gateway runs itself: Anthropic server tools (web_search, web_fetch,
code_execution), MCP servers (the connector and managed servers) and the workspace toolset.

`base.py` holds the shapes every implementation shares; `loop.py` runs them between model
calls. Client-declared tools are never run here.
"""
