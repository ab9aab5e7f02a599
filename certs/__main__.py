from certs.cli import main

main()
