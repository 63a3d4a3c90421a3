"""One module per endpoint: each turns a validated request into a response or an SSE stream."""
