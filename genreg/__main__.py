"""``python -m genreg`` is the ``genreg`` command."""

from genreg.cli import main

if __name__ == "__main__":
    main()
