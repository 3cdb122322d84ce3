"""`python -m bramble`: the same as the `bramble` command."""

from bramble.cli import main

main()
