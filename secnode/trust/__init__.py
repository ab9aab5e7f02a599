"""Trust at run time: TLS between nodes, which signers are trusted, the node's own certificates
and their OCSP staples, own-status checks and auth-certificate renewal."""
