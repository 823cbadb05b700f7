"""`python -m hhforecast` runs the CLI."""

from hhforecast.cli import main

if __name__ == "__main__":
    main()
