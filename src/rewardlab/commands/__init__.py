"""CLI command modules. Each registers its commands on the shared apps in ``apps.py``; cli.py imports them.

Heavy libraries (torch, transformers, trl) are imported inside command bodies so ``--help`` stays fast.
"""
