"""Design B: a monolith per node. Six identical `MonoNode`s, each running the whole queue in-process."""

from realsys.mono.node import MonoNode

__all__ = ["MonoNode"]
