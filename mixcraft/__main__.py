from mixcraft.cli import entry

entry()
