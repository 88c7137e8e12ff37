"""Command-line interface: ``main(argv) -> int``, one small module per command, heavy imports inside ``run()``."""
