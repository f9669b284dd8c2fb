"""eaglelab: linear transformers that discover EAGLE, and EAGLE as a solver."""

__version__ = "0.1.0"
