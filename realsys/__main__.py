from realsys.cli import main

main()
