"""The node's message path: client interface, node-to-node transport, provider side."""
