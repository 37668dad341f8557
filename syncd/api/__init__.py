"""The HTTP side: app factory, routers, error mapping."""
