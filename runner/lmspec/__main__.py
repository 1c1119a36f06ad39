"""``python -m lmspec`` is the ``lmspec`` command."""

from lmspec.cli import main

if __name__ == "__main__":
    main()
