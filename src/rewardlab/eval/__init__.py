"""Evaluation of reward models (rm.py) and policies (policy.py)."""
