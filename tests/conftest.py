"""Shared pytest fixtures."""
import os

# Tests never talk to the W&B service; offline mode still runs the real client.
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
