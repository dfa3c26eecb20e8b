"""`python -m gymctl`: the same as the `gymctl` command."""

from gymctl.cli.main import main

main()
