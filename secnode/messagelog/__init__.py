"""The node's message log at its edge: the writer, the time-stamper, the store and the sink
the proxy hands events to (the formats and the verifier are in :mod:`secnode.core.messagelog`)."""
