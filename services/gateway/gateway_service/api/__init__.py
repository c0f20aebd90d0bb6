"""The HTTP and WebSocket surface: routes, request and response shapes, errors, middleware."""
