"""The Animus3D lab: what trains, evaluates and benchmarks the product, kept out of it.

Imports ``animus3d_worker`` and ``animus3d_shared``; nothing in those packages imports this one.
"""
