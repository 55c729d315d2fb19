"""`python -m itictl` entry point (also what `torchrun -m itictl` runs)."""

from itictl.cli.app import main

if __name__ == "__main__":
    main()
