"""`python -m piaa ...` runs the command line, like the `piaa` console script."""

from piaa.console.cli import main

if __name__ == "__main__":
    main()
