"""rewardlab: from human rankings to reward models and tuned policies."""

__version__ = "0.1.0"
