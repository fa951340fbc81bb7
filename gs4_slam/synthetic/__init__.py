"""Procedural semantic indoor scenes rendered into RGB-D sequences (the project's own data).

Modules: ``scene`` (parametric parts and materials), ``layout`` (random rooms
from a seed), ``trajectory`` (smooth camera paths), ``render`` (open3d ray
casting, procedural shading, sensor noise), ``generator`` (sequences in memory
or written in the ScanNet layout) and ``command`` (``gs4-slam generate``).
Importing this package is cheap; open3d loads with ``render``/``generator``.
"""
