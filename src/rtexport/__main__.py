from rtexport.cli import main

main()
