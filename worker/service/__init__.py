"""The long-running ZeroMQ worker service: sockets, job queue, authentication."""
