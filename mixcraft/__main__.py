from mixcraft.cli import main

main()
