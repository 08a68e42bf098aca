"""The pure translation core: Anthropic Messages <-> OpenRouter Chat Completions.

Nothing in this package performs I/O or imports a web framework or HTTP client.
"""
