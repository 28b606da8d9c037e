"""``python -m fcnkit`` (and ``torchrun -m fcnkit``) runs the command-line interface."""

from fcnkit.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
