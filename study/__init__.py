"""study: performance studies of multi-node LLM inference on GPU supercomputers.

This package init stays standard-library only: `study.results` is imported by the engine and the
collectives on compute nodes that have nothing but torch.
"""

__version__ = "0.1.0"
