from tenfold.core.cli import main

main()
