from eaglelab.cli import main

main()
