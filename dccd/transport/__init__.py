"""I/O to exchanges: httpx client, rate limiters, WebSocket connections."""
