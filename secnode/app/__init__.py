"""The running node: its in-memory runtime, the ``serve`` process with its listeners and
background jobs, the admin interface, and the extensions (message log, policy point)."""
