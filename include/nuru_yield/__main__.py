"""`python -m nuru_yield` is the `nuru-yield` command."""

from nuru_yield.cli import main

main()
