"""An Anthropic Messages API server answered by models on OpenRouter."""

__version__ = "0.1.0"
