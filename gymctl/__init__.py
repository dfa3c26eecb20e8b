"""gymctl: deploy the servers of an RL environment and collect rollouts through them."""

__version__ = "0.1.0"
