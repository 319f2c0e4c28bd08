"""edge-fer: video facial-expression recognition, trained on a workstation, run on the edge.

Importing this package is cheap and never imports torch: the edge runtime
(``edge_fer.runtime``) needs only numpy, OpenCV and one inference backend.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
