"""`python -m rewardlab ...` runs the console script (same commands, options and exit codes)."""

from rewardlab.cli import main

if __name__ == "__main__":
    main()
