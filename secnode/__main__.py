from secnode.cli import main

main()
