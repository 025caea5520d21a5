"""Animus3D shared code: splat data, PLY, settings, deformation maths and the wire protocol.

Used by both the worker and the Blender add-on (which carries a copy of this package), so it
depends only on numpy, msgpack and pyzmq, and imports its own modules relatively.
"""

__version__ = "0.1.0"
